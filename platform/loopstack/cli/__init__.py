"""CLI layer: `loopstack` (typer + rich), a client of the management API."""
