"""The audit trail: every management action and loop decision, append-only, queryable."""

from loopstack.core.audit.records import apply_audit, audit_event
from loopstack.core.audit.tables import audit_records, metadata
from loopstack.core.audit.trail import AuditTrail

__all__ = ["AuditTrail", "apply_audit", "audit_event", "audit_records", "metadata"]
