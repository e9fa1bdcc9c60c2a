"""Outbound connections to addresses users give (datasets, webhooks): which addresses are
allowed, and urllib3 pools that connect only there."""
