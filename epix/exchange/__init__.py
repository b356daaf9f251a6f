"""The exchange service: submit pipeline, receipts, inboxes, lookup, tracking, status changes."""
