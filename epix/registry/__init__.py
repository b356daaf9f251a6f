"""The Secretariat's key registry: Parties, authorities, certificates, signed publication."""
