"""Consensus: the sans-I/O BFT state machine and its deterministic simulator. Imports no asyncio, time or random.

See ``consensus/README.md`` for the driver contract.
"""

from .app import Application
from .events import (
    BlockApplied,
    Broadcast,
    Commit,
    CommittedBlock,
    Effect,
    Event,
    EvidenceFound,
    FetchBlock,
    NeedCatchUp,
    Persist,
    ProposalReceived,
    RecordsAvailable,
    Rejected,
    SendTo,
    SetTimer,
    Start,
    TimerFired,
    VoteReceived,
    received,
)
from .machine import ConsensusMachine
from .messages import (
    Decision,
    Message,
    Proposal,
    SignedVote,
    decode_message,
    encode_message,
    sign_proposal,
    sign_vote,
)
from .params import ConsensusConfig, Step, Timer, proposer_for
from .state import PersistedState, ValidValue, decode_state
from .validation import ValidationContext, validate_block
from .votes import Evidence, decode_evidence, verify_evidence

__all__ = [
    "Application", "BlockApplied", "Broadcast", "Commit", "CommittedBlock", "ConsensusConfig",
    "ConsensusMachine", "Decision", "Effect", "Event", "Evidence", "EvidenceFound", "FetchBlock",
    "Message", "NeedCatchUp", "Persist", "PersistedState", "Proposal", "ProposalReceived",
    "RecordsAvailable", "Rejected", "SendTo", "SetTimer", "SignedVote", "Start", "Step", "Timer",
    "TimerFired", "ValidValue", "ValidationContext", "VoteReceived", "decode_evidence",
    "decode_message", "decode_state", "encode_message", "proposer_for", "received",
    "sign_proposal", "sign_vote", "validate_block", "verify_evidence",
]
