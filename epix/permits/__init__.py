"""The CITES permit: typed model, XML reader/writer, code lists and business rules (pure core)."""
