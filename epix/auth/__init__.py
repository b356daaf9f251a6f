"""People, roles, API keys and web sessions."""
