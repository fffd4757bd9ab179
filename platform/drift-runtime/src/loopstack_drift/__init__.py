"""Loopstack drift runtime: alibi-detect detectors served over loopback HTTP."""

__version__ = "0.1.0"
