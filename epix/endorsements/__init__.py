"""Endorsements: the signed border record, the quantity ledger and customs reservations."""
