"""Delivery: the outbox, the worker that empties it, peers and webhooks."""
