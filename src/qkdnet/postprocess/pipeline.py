"""Alice and Bob running the post-processing protocol over an authenticated channel.

One block (the records of one simulation block) goes through: sifting → parameter estimation
(Z test bits disclosed; a random sample of the X key disclosed and dropped) → checks (QBER
threshold, decoy consistency, a key-length pre-check) → error correction (Cascade, Bob asking,
Alice answering, all frames batched per round trip; or LDPC, Alice sending syndromes, Bob
decoding and asking for blind-reconciliation reveals, see :mod:`qkdnet.postprocess.ldpc`) →
verification (⌈log2(1/ε_cor)⌉-bit
universal hash) → key length from the counts and the bits disclosed by error correction, as
counted by the channel ledger (Lim et al. 2014) → privacy amplification (Toeplitz seed sent on
the channel) → the authentication pools are refilled from the new key, and the rest is the
block's secret key. Every abort gives no key, a reason, and the authentication key spent.

Alice and Bob are separate objects that hold only their own records and their channel end.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.postprocess import cascade
from qkdnet.postprocess.amplification import seed_length, toeplitz_hash
from qkdnet.postprocess.authentication import AuthenticationError
from qkdnet.postprocess.channel import ChannelClosed, ChannelEnd, Message, PeerAborted
from qkdnet.postprocess.estimation import (
    Counts,
    DecoySettings,
    class_counts,
    decoy_consistency,
    key_length,
    sample_size,
)
from qkdnet.postprocess.ldpc import (
    FRAME_HASH_BITS,
    LdpcAlice,
    LdpcBob,
    LdpcPlan,
    LdpcSyndromes,
    RevealReply,
    RevealRequest,
)
from qkdnet.postprocess.sifting import Sifted, alice_sift, bob_announcement, bob_sift
from qkdnet.postprocess.verification import tag_bits, verification_hash
from qkdnet.simulate.records import AliceRecords, BobRecords

RECONCILIATIONS = ("cascade", "ldpc")
#: Messages of one block, both directions, that carry their own Wegman–Carter tag in the Cascade
#: flow (the Cascade rounds are covered by two deferred transcript tags): each tag spends one
#: pad of ``PAD_BYTES``, so a block costs a fixed ``CASCADE_TAGS_PER_BLOCK · 128`` bits of key
#: whatever its size (tests check it against the ledger); the planner subtracts it.
CASCADE_TAGS_PER_BLOCK = 10
CASCADE_GROUP = 16  # frames corrected together (their requests share round trips)
#: LDPC frames reconciled together under one plan (bounds memory; their reveals share round
#: trips). 32 frames of 29 491 key bits ≈ 0.94 Mbit.
LDPC_GROUP_FRAMES = 32


class ProtocolAbort(Exception):  # noqa: N818
    """This party stops the block, with a reason for the report."""


@dataclass(frozen=True)
class PostprocessConfig:
    """Public protocol parameters both parties agree on in advance.

    ``live``: Alice's private randomness for error correction (LDPC punctured values) comes
    from ``os.urandom``/``secrets`` instead of the seeded generator of a simulation."""

    settings: DecoySettings
    reconciliation: Literal["cascade", "ldpc"] = "cascade"
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    qber_threshold: float = 0.11
    sample_fraction: float = 0.002
    frame_bits: int = 2**18
    live: bool = False

    def __post_init__(self) -> None:
        if self.reconciliation not in RECONCILIATIONS:
            raise ValueError(
                f"reconciliation must be one of {', '.join(RECONCILIATIONS)} "
                f"(got {self.reconciliation!r})"
            )
        for name in ("eps_sec", "eps_cor", "qber_threshold", "sample_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1) (got {value})")
        if self.frame_bits < 64:
            raise ValueError(f"frame_bits must be >= 64 (got {self.frame_bits})")


@dataclass
class BlockResult:
    """What one party reports about one block (``key`` is None when aborted)."""

    aborted: bool = False
    abort_reason: str = ""
    key: np.ndarray | None = None
    detections: int = 0
    sifted_bits: int = 0
    key_bits_before_ec: int = 0
    qber_sample: float = 0.0
    qber_z: float = 0.0
    qber: float = 0.0
    disclosed_bits: int = 0
    efficiency: float = 0.0
    key_length: int = 0
    final_key_bits: int = 0
    auth_key_bits: int = 0
    ledger: dict[str, Any] = field(default_factory=dict)
    reconciliation: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Report fields (no key material)."""
        out = {k: v for k, v in self.__dict__.items() if k != "key"}
        return out


def _frames(n: int, frame_bits: int) -> list[tuple[int, int]]:
    count = max(1, -(-n // frame_bits))
    edges = np.linspace(0, n, count + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


class _Party:
    name = ""

    def __init__(self, channel: ChannelEnd, config: PostprocessConfig) -> None:
        self.channel = channel
        self.config = config

    def process(self, records, rng: np.random.Generator) -> BlockResult:
        """Run the whole protocol for one block; never raises for protocol failures."""
        result = BlockResult()
        ledger = self.channel.ledger
        start_bits = ledger.auth_key_bits
        start_ec = ledger.disclosed("ec")
        pools = (self.channel.send_pool, self.channel.recv_pool)
        before = [p.consumed_bits for p in pools]
        try:
            self._run(records, rng, result)
        except ProtocolAbort as exc:
            result.aborted, result.abort_reason = True, str(exc)
        except AuthenticationError as exc:
            result.aborted = True
            result.abort_reason = f"authentication failure: {exc}"
            self.channel.abort(result.abort_reason)
        except PeerAborted as exc:
            result.aborted, result.abort_reason = True, f"peer aborted: {exc}"
        except ChannelClosed as exc:
            result.aborted, result.abort_reason = True, f"channel closed: {exc}"
        result.auth_key_bits = ledger.auth_key_bits - start_bits
        result.disclosed_bits = ledger.disclosed("ec") - start_ec
        if result.aborted:
            result.key = None
            result.final_key_bits = 0
        else:
            self._replenish(
                result, [p.consumed_bits - b for p, b in zip(pools, before, strict=True)]
            )
        result.ledger = ledger.as_dict()
        return result

    def _replenish(self, result: BlockResult, used: list[int]) -> None:
        """Refill both authentication pools with what this block used, from the new key.
        Alice→Bob first: Alice's send pool, Bob's receive pool."""
        key = result.key
        assert key is not None
        order = [0, 1] if self.name == "alice" else [1, 0]
        need = sum(used)
        if key.size < need:
            result.aborted = True
            result.abort_reason = (
                f"key length <= authentication key consumed ({key.size} < {need} bits)"
            )
            result.key, result.final_key_bits = None, 0
            return
        pools = (self.channel.send_pool, self.channel.recv_pool)
        offset = 0
        for i in order:
            chunk = key[offset : offset + used[i]]
            pools[i].replenish(np.packbits(chunk).tobytes())
            offset += used[i]
        result.key = key[offset:]
        result.final_key_bits = int(result.key.size)

    def _checks(self, result: BlockResult, counts: Counts) -> None:
        cfg = self.config
        result.qber_z = counts.qber_z
        if result.qber_sample > cfg.qber_threshold:
            raise ProtocolAbort(
                f"QBER above threshold: sample QBER {result.qber_sample:.4f} > {cfg.qber_threshold}"
            )
        if sum(counts.n_z) and counts.qber_z > cfg.qber_threshold:
            raise ProtocolAbort(
                f"QBER above threshold: Z-basis QBER {counts.qber_z:.4f} > {cfg.qber_threshold}"
            )
        reason = decoy_consistency(counts, cfg.settings)
        if reason:
            raise ProtocolAbort(reason)
        pre = key_length(counts, cfg.settings, 0.0, cfg.eps_sec, cfg.eps_cor)
        if pre.key_length <= 0:
            raise ProtocolAbort(pre.reason or "key length <= 0 before error correction")


def _disclosed_now(channel: ChannelEnd, start: int) -> int:
    return channel.ledger.disclosed("ec") - start


def _ec_estimate(sample_errors: int, sample: int, counts: Counts) -> float:
    trials = sample + sum(counts.n_z)
    errors = sample_errors + sum(counts.m_z)
    return max(errors / trials if trials else 0.02, 1.0 / max(trials, 1))


class Alice(_Party):
    """Alice: holds her records; answers Bob's error-correction requests; picks the random
    sample, the verification hash and the privacy-amplification seed."""

    name = "alice"

    def _run(self, records: AliceRecords, rng: np.random.Generator, result: BlockResult) -> None:
        ch, cfg = self.channel, self.config
        ec_start = ch.ledger.disclosed("ec")
        announcement = ch.recv("sift_bob")
        try:
            sifted, reply = alice_sift(records, announcement)
        except ValueError as exc:
            ch.abort(str(exc))
            raise ProtocolAbort(str(exc)) from exc
        ch.send(reply)
        self._fill(result, sifted)
        test = ch.recv("test_bits")
        bob_z = np.unpackbits(test["z_bits"], count=sifted.z_bits.size)
        n_classes = len(cfg.settings.intensities)
        z_err = (bob_z ^ sifted.z_bits).astype(bool)
        m_z = class_counts(sifted.z_class[z_err], n_classes)
        n_x = sifted.x_bits.size
        s = sample_size(n_x, cfg.sample_fraction)
        idx = np.sort(rng.choice(n_x, size=s, replace=False)) if s else np.zeros(0, np.int64)
        ch.send(
            Message(
                "estimate",
                {
                    "m_z": np.asarray(m_z, dtype=np.int64),
                    "pulses_per_class": np.asarray(records.pulses_per_class, dtype=np.int64),
                    "sample_idx": idx.astype(np.int64),
                    "sample_bits": np.packbits(sifted.x_bits[idx]),
                },
                category="estimation",
            )
        )
        sample_errors = int(ch.recv("sample_result")["errors"])
        keep = np.ones(n_x, dtype=bool)
        keep[idx] = False
        key, key_class = sifted.x_bits[keep], sifted.x_class[keep]
        counts = Counts(
            class_counts(key_class, n_classes),
            class_counts(sifted.z_class, n_classes),
            m_z,
            tuple(int(v) for v in records.pulses_per_class),
        )
        result.qber_sample = sample_errors / s if s else 0.0
        result.key_bits_before_ec = int(key.size)
        self._checks(result, counts)
        if cfg.reconciliation == "ldpc":
            self._ldpc(key, rng, result)
        else:
            self._cascade(key)
        t = tag_bits(cfg.eps_cor)
        seed = rng.integers(0, 2, key.size + t - 1, dtype=np.uint8)
        digest = verification_hash(key, seed, t)
        ch.send(
            Message(
                "verify",
                {"seed": np.packbits(seed), "hash": np.packbits(digest)},
                disclosed_bits=t,
                category="verification",
            )
        )
        verdict = ch.recv("verify_result")
        if not verdict["ok"]:
            raise ProtocolAbort("verification mismatch: keys differ after error correction")
        result.qber = float(verdict["qber"])
        result.disclosed_bits = _disclosed_now(ch, ec_start)
        length = self._length(result, counts)
        pa_seed = rng.integers(0, 2, seed_length(key.size, length), dtype=np.uint8)
        ch.send(Message("pa_seed", {"m": length, "seed": np.packbits(pa_seed)}))
        result.key = toeplitz_hash(key, pa_seed, length)

    def _fill(self, result: BlockResult, sifted: Sifted) -> None:
        result.detections = sifted.detections
        result.sifted_bits = sifted.sifted_bits

    def _length(self, result: BlockResult, counts: Counts) -> int:
        cfg = self.config
        kl = key_length(counts, cfg.settings, float(result.disclosed_bits), cfg.eps_sec,
                        cfg.eps_cor)  # fmt: skip
        _efficiency(result)
        result.key_length = kl.key_length
        if kl.key_length <= 0:
            raise ProtocolAbort(kl.reason or "key length <= 0")
        return kl.key_length

    def _cascade(self, key: np.ndarray) -> None:
        ch = self.channel
        ch.defer()
        start = ch.recv("cascade_start")
        frames = _frames(key.size, int(start["frame_bits"]))
        parties: dict[int, cascade.CascadeAlice] = {}

        def party(i: int) -> cascade.CascadeAlice:
            if i not in parties:
                for old in [j for j in parties if j < i - i % int(start["group"])]:
                    del parties[old]  # Bob has finished with these frames
                a, b = frames[i]
                schedule = cascade.Schedule.derive(
                    b - a, float(start["qber"]), int(start["seed"]) + i
                )
                parties[i] = cascade.CascadeAlice(key[a:b], schedule)
            return parties[i]

        while True:
            req = ch.recv()
            if req.kind == "cascade_done":
                ch.settle()
                return
            if req.kind != "cascade_req":
                raise ProtocolAbort(f"unexpected {req.kind!r} message during Cascade")
            answers = [
                party(int(f)).pass_parities(int(r))
                for f, r in zip(req["pass_frame"], req["pass_r"], strict=True)
            ]
            rf, rr, rs, re = req["range_frame"], req["range_r"], req["range_s"], req["range_e"]
            if rf.size:
                cuts = np.flatnonzero(np.diff(rf)) + 1
                for seg in np.split(np.arange(rf.size), cuts):
                    alice_frame = party(int(rf[seg[0]]))
                    answers.append(
                        alice_frame.range_parities(
                            rr[seg].astype(np.int64),
                            rs[seg].astype(np.int64),
                            re[seg].astype(np.int64),
                        )
                    )
            bits = np.concatenate(answers) if answers else np.zeros(0, np.uint8)
            ch.send(
                Message(
                    "cascade_par",
                    {"n": int(bits.size), "parities": np.packbits(bits)},
                    disclosed_bits=int(bits.size),
                    category="ec",
                )
            )

    def _ldpc(self, key: np.ndarray, rng: np.random.Generator, result: BlockResult) -> None:
        """Send each group's syndromes, answer Bob's reveal requests (every syndrome bit less
        the private punctured ones, and every revealed value, counted as disclosed)."""
        ch, cfg = self.channel, self.config
        ch.defer()
        qber = float(ch.recv("ldpc_start")["qber"])
        try:
            groups = _ldpc_groups(key.size, qber)
        except ValueError as exc:
            ch.abort(str(exc))
            raise ProtocolAbort(f"LDPC: {exc}") from exc
        private = None if cfg.live else rng
        failed = frames = module_disclosed = 0
        for g, (a, b) in enumerate(groups):
            party = LdpcAlice(key[a:b], LdpcPlan.derive(b - a, qber), private)
            syn = party.syndromes()
            ch.send(
                Message(
                    "ldpc_syndromes",
                    {
                        "seed": syn.public_seed,
                        "syndromes": np.packbits(syn.syndromes),
                        "hashes": np.packbits(syn.hashes),
                    },
                    disclosed_bits=party.disclosed_bits,
                    category="ec",
                )
            )
            last = g == len(groups) - 1
            while True:
                msg = ch.recv()
                if msg.kind == "ldpc_reveal_req":
                    self._ldpc_reveal(party, msg)
                elif msg.kind == "ldpc_next" and not last:
                    break
                elif msg.kind == "ldpc_done" and last:
                    failed = int(msg["failed"])
                    break
                else:
                    ch.abort(f"unexpected {msg.kind!r} message during LDPC")
                    raise ProtocolAbort(f"unexpected {msg.kind!r} message during LDPC")
            frames += party.plan.frames
            module_disclosed += party.disclosed_bits
        ch.settle()
        result.reconciliation = {
            "method": "ldpc",
            "frames": frames,
            "failed_frames": failed,
            "module_disclosed_bits": module_disclosed,
        }
        if failed:
            raise ProtocolAbort(f"LDPC decoding failed on {failed} frames")

    def _ldpc_reveal(self, party: LdpcAlice, msg: Message) -> None:
        ch = self.channel
        before = party.disclosed_bits
        try:
            reply = party.reveal(
                RevealRequest(
                    np.asarray(msg["frames"], dtype=np.int64),
                    np.asarray(msg["shortened"], dtype=np.int64),
                )
            )
        except ValueError as exc:
            ch.abort(f"bad LDPC reveal request: {exc}")
            raise ProtocolAbort(f"bad LDPC reveal request: {exc}") from exc
        values = np.concatenate(reply.values) if reply.values else np.zeros(0, np.uint8)
        ch.send(
            Message(
                "ldpc_reveal",
                {
                    "frames": reply.frames.astype(np.int64),
                    "sizes": np.array([v.size for v in reply.values], dtype=np.int64),
                    "values": np.packbits(values),
                },
                disclosed_bits=party.disclosed_bits - before,
                category="ec",
            )
        )


def _ldpc_groups(n: int, qber: float) -> list[tuple[int, int]]:
    """The key cut into groups of ``LDPC_GROUP_FRAMES`` LDPC frames (the last one shorter)."""
    per = LdpcPlan.derive(1, qber).frame_key_bits * LDPC_GROUP_FRAMES
    return [(a, min(a + per, n)) for a in range(0, n, per)]


def _efficiency(result: BlockResult) -> None:
    n = result.key_bits_before_ec
    h = float(binary_entropy(result.qber)) if 0.0 < result.qber < 1.0 else 0.0
    result.efficiency = result.disclosed_bits / (n * h) if n and h > 0 else float("nan")


class Bob(_Party):
    """Bob: holds his records; drives error correction and checks the verification hash."""

    name = "bob"

    def _run(self, records: BobRecords, rng: np.random.Generator, result: BlockResult) -> None:
        ch, cfg = self.channel, self.config
        ec_start = ch.ledger.disclosed("ec")
        ch.send(bob_announcement(records))
        sifted = bob_sift(records, ch.recv("sift_alice"))
        result.detections = sifted.detections
        result.sifted_bits = sifted.sifted_bits
        ch.send(Message("test_bits", {"z_bits": np.packbits(sifted.z_bits)}, category="estimation"))
        est = ch.recv("estimate")
        n_classes = len(cfg.settings.intensities)
        m_z = tuple(int(v) for v in est["m_z"])
        idx = np.asarray(est["sample_idx"], dtype=np.int64)
        n_x = sifted.x_bits.size
        if idx.size and (idx.min() < 0 or idx.max() >= n_x):
            raise ProtocolAbort("sample positions out of range")
        alice_sample = np.unpackbits(est["sample_bits"], count=idx.size)
        sample_errors = int(np.count_nonzero(alice_sample ^ sifted.x_bits[idx]))
        ch.send(Message("sample_result", {"errors": sample_errors}, category="estimation"))
        keep = np.ones(n_x, dtype=bool)
        keep[idx] = False
        key, key_class = sifted.x_bits[keep], sifted.x_class[keep]
        counts = Counts(
            class_counts(key_class, n_classes),
            class_counts(sifted.z_class, n_classes),
            m_z,
            tuple(int(v) for v in est["pulses_per_class"]),
        )
        result.qber_sample = sample_errors / idx.size if idx.size else 0.0
        result.key_bits_before_ec = int(key.size)
        self._checks(result, counts)
        q_est = _ec_estimate(sample_errors, idx.size, counts)
        if cfg.reconciliation == "ldpc":
            corrected = self._ldpc(key, q_est, result)
        else:
            corrected = self._cascade(key, q_est, rng)
        errors = int(np.count_nonzero(corrected ^ key))
        result.qber = errors / key.size if key.size else 0.0
        ver = ch.recv("verify")
        t = tag_bits(cfg.eps_cor)
        seed = np.unpackbits(ver["seed"], count=corrected.size + t - 1)
        ok = bool(
            np.array_equal(
                verification_hash(corrected, seed, t), np.unpackbits(ver["hash"], count=t)
            )
        )
        ch.send(Message("verify_result", {"ok": ok, "qber": result.qber}))
        if not ok:
            raise ProtocolAbort("verification mismatch: keys differ after error correction")
        result.disclosed_bits = _disclosed_now(ch, ec_start)
        _efficiency(result)
        kl = key_length(counts, cfg.settings, float(result.disclosed_bits), cfg.eps_sec,
                        cfg.eps_cor)  # fmt: skip
        result.key_length = kl.key_length
        if kl.key_length <= 0:
            raise ProtocolAbort(kl.reason or "key length <= 0")
        pa = ch.recv("pa_seed")
        m = int(pa["m"])
        if m != kl.key_length:
            raise ProtocolAbort(f"Alice's key length {m} differs from Bob's {kl.key_length}")
        pa_seed = np.unpackbits(pa["seed"], count=seed_length(corrected.size, m))
        result.key = toeplitz_hash(corrected, pa_seed, m)

    def _cascade(self, key: np.ndarray, qber: float, rng: np.random.Generator) -> np.ndarray:
        ch = self.channel
        seed = int(rng.integers(0, 2**62))
        frame_bits = self.config.frame_bits
        ch.defer()
        ch.send(
            Message(
                "cascade_start",
                {"seed": seed, "qber": qber, "frame_bits": frame_bits, "group": CASCADE_GROUP},
            )
        )
        frames = _frames(key.size, frame_bits)
        corrected = [
            self._cascade_group(
                key, frames, list(range(g, min(g + CASCADE_GROUP, len(frames)))), qber, seed
            )
            for g in range(0, len(frames), CASCADE_GROUP)
        ]
        ch.send(Message("cascade_done"))
        ch.settle()
        return np.concatenate([k for group in corrected for k in group])

    def _cascade_group(
        self,
        key: np.ndarray,
        frames: list[tuple[int, int]],
        group: list[int],
        qber: float,
        seed: int,
    ) -> list[np.ndarray]:
        """Cascade on a group of frames at once (their requests share round trips)."""
        ch = self.channel
        bobs = {
            i: cascade.CascadeBob(key[a:b], cascade.Schedule.derive(b - a, qber, seed + i))
            for i, (a, b) in ((i, frames[i]) for i in group)
        }
        pending: dict[int, Any] = {}
        active = list(group)
        while active:
            pass_frame, pass_r, pass_sizes = [], [], []
            ranges: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
            still = []
            for i in active:
                req = bobs[i].next_request()
                pending[i] = req
                if req is None:
                    continue
                still.append(i)
                r, q_r, q_s, q_e = req
                if r >= 0:
                    pass_frame.append(i)
                    pass_r.append(r)
                    pass_sizes.append(bobs[i].pass_block_count(r))
                else:
                    ranges.append((i, q_r, q_s, q_e))
            active = still
            if not active:
                break
            ch.send(
                Message(
                    "cascade_req",
                    {
                        "pass_frame": np.asarray(pass_frame, dtype=np.int32),
                        "pass_r": np.asarray(pass_r, dtype=np.uint8),
                        "range_frame": np.concatenate(
                            [np.full(q.size, i, np.int32) for i, q, _, _ in ranges]
                        )
                        if ranges
                        else np.zeros(0, np.int32),
                        "range_r": np.concatenate([q for _, q, _, _ in ranges]).astype(np.uint8)
                        if ranges
                        else np.zeros(0, np.uint8),
                        "range_s": np.concatenate([s for _, _, s, _ in ranges]).astype(np.int32)
                        if ranges
                        else np.zeros(0, np.int32),
                        "range_e": np.concatenate([e for _, _, _, e in ranges]).astype(np.int32)
                        if ranges
                        else np.zeros(0, np.int32),
                    },
                )
            )
            reply = ch.recv("cascade_par")
            bits = np.unpackbits(reply["parities"], count=int(reply["n"]))
            expected = sum(pass_sizes) + sum(q.size for _, q, _, _ in ranges)
            if bits.size != expected:
                raise ProtocolAbort(f"Cascade answer has {bits.size} parities, expected {expected}")
            offset = 0
            for i, size in zip(pass_frame, pass_sizes, strict=True):
                bobs[i].deliver(bits[offset : offset + size])
                offset += size
            for i, q, _, _ in ranges:
                bobs[i].deliver(bits[offset : offset + q.size])
                offset += q.size
        return [bobs[i].key for i in group]

    def _stop(self, reason: str) -> None:
        """Tell Alice (so she stops waiting) and abort the block."""
        self.channel.abort(reason)
        raise ProtocolAbort(reason)

    def _ldpc(self, key: np.ndarray, qber: float, result: BlockResult) -> np.ndarray:
        """Decode each group from Alice's syndromes, asking for blind reveals until every frame
        decodes or has nothing left to reveal; a frame that still fails aborts the block."""
        ch = self.channel
        qber = min(qber, 0.49)
        groups = _ldpc_groups(key.size, qber)
        ch.defer()
        ch.send(Message("ldpc_start", {"qber": qber}))
        corrected: list[np.ndarray] = []
        failed = frames = rounds = module_disclosed = 0
        for g, (a, b) in enumerate(groups):
            plan = LdpcPlan.derive(b - a, qber)
            party = LdpcBob(key[a:b], plan)
            msg = ch.recv("ldpc_syndromes")
            size = plan.frames * plan.code.m
            packed = np.asarray(msg["syndromes"], dtype=np.uint8)
            if packed.size != -(-size // 8):
                self._stop(f"LDPC syndromes: {packed.size} bytes for {size} bits")
            syn = np.unpackbits(packed, count=size).reshape(plan.frames, plan.code.m)
            hsize = plan.frames * FRAME_HASH_BITS
            hpacked = np.asarray(msg["hashes"], dtype=np.uint8)
            if hpacked.size != -(-hsize // 8):
                self._stop(f"LDPC frame hashes: {hpacked.size} bytes for {hsize} bits")
            hashes = np.unpackbits(hpacked, count=hsize).reshape(plan.frames, FRAME_HASH_BITS)
            request = party.receive_syndromes(LdpcSyndromes(int(msg["seed"]), syn, hashes))
            while request is not None:
                ch.send(
                    Message(
                        "ldpc_reveal_req",
                        {"frames": request.frames, "shortened": request.shortened},
                    )
                )
                reply = ch.recv("ldpc_reveal")
                got = np.asarray(reply["frames"], dtype=np.int64)
                sizes = np.asarray(reply["sizes"], dtype=np.int64)
                if not np.array_equal(got, request.frames) or sizes.size != got.size:
                    self._stop("LDPC reveal answers other frames than asked")
                values = np.unpackbits(reply["values"], count=int(sizes.sum()))
                parts = np.split(values, np.cumsum(sizes)[:-1]) if sizes.size else []
                request = party.receive_reveal(RevealReply(got, list(parts)))
            out = party.result()
            failed += int(out.failed_frames.size)
            frames += out.frames
            rounds += out.rounds
            module_disclosed += out.disclosed_bits
            corrected.append(out.corrected)
            last = g == len(groups) - 1
            ch.send(Message("ldpc_done", {"failed": failed}) if last else Message("ldpc_next"))
        ch.settle()
        result.reconciliation = {
            "method": "ldpc",
            "frames": frames,
            "failed_frames": failed,
            "rounds": rounds,
            "module_disclosed_bits": module_disclosed,
        }
        if failed:
            raise ProtocolAbort(f"LDPC decoding failed on {failed} frames")
        return np.concatenate(corrected)


def run_pair(
    alice: Alice,
    bob: Bob,
    alice_records: AliceRecords,
    bob_records: BobRecords,
    alice_rng: np.random.Generator,
    bob_rng: np.random.Generator,
) -> tuple[BlockResult, BlockResult]:
    """Run one block with Alice in a second thread of this process (in-memory transport)."""
    box: dict[str, BlockResult] = {}
    errors: list[BaseException] = []

    def _alice() -> None:
        try:
            box["alice"] = alice.process(alice_records, alice_rng)
        except BaseException as exc:  # reported in the caller's thread
            errors.append(exc)
            alice.channel.transport.close()

    thread = threading.Thread(target=_alice, name="alice", daemon=True)
    thread.start()
    try:
        bob_result = bob.process(bob_records, bob_rng)
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return box["alice"], bob_result
