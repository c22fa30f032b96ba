"""Two-party classical post-processing: Alice and Bob turn detection records into identical,
secret keys over an authenticated channel (sifting, estimation, Cascade, verification, privacy
amplification), counting every disclosed bit for the finite-size key length."""

from qkdnet.postprocess.amplification import (
    PA_FAMILIES,
    privacy_hash,
    toeplitz_direct,
    toeplitz_hash,
)
from qkdnet.postprocess.authentication import AuthenticationError, AuthKeyPool, tag, verify
from qkdnet.postprocess.cascade import CascadeAlice, CascadeBob, Schedule, reconcile_local
from qkdnet.postprocess.channel import (
    ChannelEnd,
    Ledger,
    Message,
    channel_pair,
    local_pair,
    memory_pair,
)
from qkdnet.postprocess.pipeline import Alice, BlockResult, Bob, PostprocessConfig, run_pair
from qkdnet.postprocess.verification import verification_hash

__all__ = [
    "PA_FAMILIES",
    "Alice",
    "AuthKeyPool",
    "AuthenticationError",
    "BlockResult",
    "Bob",
    "CascadeAlice",
    "CascadeBob",
    "ChannelEnd",
    "Ledger",
    "Message",
    "PostprocessConfig",
    "Schedule",
    "channel_pair",
    "local_pair",
    "memory_pair",
    "privacy_hash",
    "reconcile_local",
    "run_pair",
    "tag",
    "toeplitz_direct",
    "toeplitz_hash",
    "verification_hash",
    "verify",
]
