"""API layer: the management API (FastAPI) every CLI management command goes through."""
