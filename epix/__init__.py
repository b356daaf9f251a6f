"""EPIX."""
