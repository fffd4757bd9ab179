"""Pipelines layer: pipelines defined once, run by the embedded runner or compiled for Argo."""
