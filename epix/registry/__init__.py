"""The Secretariat's key registry: Parties, authorities, certificates, and its signed publication."""
