"""Core layer: settings, errors, events, audit records, PII masking, process supervision."""
