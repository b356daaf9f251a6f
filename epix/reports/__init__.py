"""Reports the Secretariat and the Management Authorities read: the annual-report trade data."""
