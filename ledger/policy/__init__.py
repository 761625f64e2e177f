"""Policy-as-code: the verdict of every record (PROTOCOL §10, issue 25).

:mod:`.engine` is the seam the chain uses; :mod:`.rules` the policy and its
bytes, :mod:`.cel` the CEL checks, :mod:`.state` the inputs derived from
committed blocks, :mod:`.evaluator` the engine (:func:`load_policy_engine`).
"""

from .cel import ENGINE_VERSION, BadPolicy
from .engine import (
    ALLOW_NO_POLICY,
    BlockInputs,
    Decision,
    Outcome,
    PolicyEngine,
    RecordInput,
)
from .evaluator import CelPolicyEngine, load_policy_engine
from .rules import POLICY_DOMAIN, Policy, decode_policy, policy_from_json
from .state import STATE_DOMAIN, PolicyState, state_from_bytes

__all__ = ["ALLOW_NO_POLICY", "BadPolicy", "BlockInputs", "CelPolicyEngine", "Decision",
           "ENGINE_VERSION", "Outcome", "POLICY_DOMAIN", "Policy", "PolicyEngine", "PolicyState",
           "RecordInput", "STATE_DOMAIN", "decode_policy", "load_policy_engine",
           "policy_from_json", "state_from_bytes"]
