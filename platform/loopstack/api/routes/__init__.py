"""Routers of the management API, one module per area; each only translates HTTP to a service."""
