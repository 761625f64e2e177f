"""Policy-as-code: the verdict of every record (PROTOCOL, issue 25)."""

from .engine import ALLOW_NO_POLICY, Decision, Outcome, PolicyEngine, RecordInput

__all__ = ["ALLOW_NO_POLICY", "Decision", "Outcome", "PolicyEngine", "RecordInput"]
