"""Alice and Bob running the post-processing protocol over an authenticated channel.

One block (the records of one simulation block) goes through: sifting → parameter estimation
(Z test bits disclosed; a random sample of the X key disclosed and dropped) → checks (QBER
threshold, decoy consistency, a key-length pre-check) → error correction (Cascade, Bob asking,
Alice answering, all frames batched per round trip; or LDPC, Alice sending syndromes, Bob
decoding and asking for blind-reconciliation reveals, see :mod:`qkdnet.postprocess.ldpc`) →
verification (⌈log2(1/ε_cor)⌉-bit
universal hash) → key length from the counts and the bits disclosed by error correction, as
counted by the channel ledger (Lim et al. 2014) → privacy amplification (modified Toeplitz
(I | T) by default, or plain Toeplitz; the seed sent on the channel) → the authentication
pools are refilled from the new key, and the rest is the block's secret key. Every abort gives no key, a reason, and the authentication key spent.

Alice and Bob are separate objects that hold only their own records and their channel end.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import greenlet
import numpy as np

from qkdnet.keyrate.entropy import binary_entropy
from qkdnet.postprocess import cascade_group
from qkdnet.postprocess.amplification import PA_FAMILIES, privacy_hash, seed_length
from qkdnet.postprocess.authentication import AuthenticationError
from qkdnet.postprocess.channel import (
    ChannelClosed,
    ChannelEnd,
    Message,
    PeerAborted,
    SwitchTransport,
)
from qkdnet.postprocess.estimation import (
    Counts,
    DecoySettings,
    class_counts,
    decoy_consistency,
    drop_sample,
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
    check_code_set,
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
    ldpc_codes: str = "efficient"
    #: privacy amplification hash family (:data:`qkdnet.postprocess.amplification.PA_FAMILIES`)
    privacy_amplification: str = PA_FAMILIES[0]

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
        check_code_set(self.ldpc_codes)
        if self.privacy_amplification not in PA_FAMILIES:
            raise ValueError(
                f"privacy_amplification must be one of {', '.join(PA_FAMILIES)} "
                f"(got {self.privacy_amplification!r})"
            )
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

    def _stop(self, reason: str) -> NoReturn:
        """Tell the peer (so it stops waiting) and abort the block."""
        self.channel.abort(reason)
        raise ProtocolAbort(reason)

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


def _random_bits(rng: Any, n: int) -> np.ndarray:
    """n uniform bits (uint8 0/1) from ``rng``'s bytes (8 bits per byte drawn, where
    ``integers(0, 2)`` would draw one value per bit)."""
    return np.unpackbits(np.frombuffer(rng.bytes(-(-n // 8)), dtype=np.uint8), count=n)


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
        key, key_class = drop_sample(sifted.x_bits, idx), drop_sample(sifted.x_class, idx)
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
        seed = _random_bits(rng, key.size + t - 1)
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
        family = cfg.privacy_amplification
        pa_seed = _random_bits(rng, seed_length(key.size, length, family))
        ch.send(Message("pa_seed", {"m": length, "family": family, "seed": np.packbits(pa_seed)}))
        result.key = privacy_hash(key, pa_seed, length, family)

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
        size, qber, seed = int(start["group"]), float(start["qber"]), int(start["seed"])
        if size < 1:
            self._stop(f"Cascade group of {size} frames")
        current, party = -1, None
        while True:
            req = ch.recv()
            if req.kind == "cascade_done":
                ch.settle()
                return
            if req.kind != "cascade_req":
                self._stop(f"unexpected {req.kind!r} message during Cascade")
            g = int(req["group"])
            if g != current:
                if not current < g < -(-len(frames) // size):
                    self._stop(f"Cascade request for group {g} after group {current}")
                group = range(g * size, min((g + 1) * size, len(frames)))
                a, b = frames[group[0]][0], frames[group[-1]][1]
                lengths = [frames[i][1] - frames[i][0] for i in group]
                schedule = cascade_group.GroupSchedule.derive(
                    lengths, qber, [seed + i for i in group]
                )
                current, party = g, cascade_group.GroupAlice(key[a:b], schedule)
            assert party is not None
            try:
                bits = party.answer(req["passes"], req["nodes"])
            except ValueError as exc:
                self._stop(f"bad Cascade request: {exc}")
            ch.send(
                Message(
                    "cascade_par",
                    {"parities": np.packbits(bits)},
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
            groups = _ldpc_groups(key.size, qber, cfg.ldpc_codes)
        except ValueError as exc:
            ch.abort(str(exc))
            raise ProtocolAbort(f"LDPC: {exc}") from exc
        private = None if cfg.live else rng
        failed = frames = module_disclosed = 0
        for g, (a, b) in enumerate(groups):
            plan = LdpcPlan.derive(b - a, qber, codes=cfg.ldpc_codes)
            party = LdpcAlice(key[a:b], plan, private)
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
            frames = np.asarray(msg["frames"], dtype=np.int64)
            sizes = np.asarray(msg["sizes"], dtype=np.int64)
            positions = np.asarray(msg["positions"], dtype=np.int64)
            if sizes.shape != frames.shape or sizes.min(initial=1) < 1:
                raise ValueError("one positive position count per frame is needed")
            if int(sizes.sum()) != positions.size:
                raise ValueError(f"{positions.size} positions for counts summing to {sizes.sum()}")
            reply = party.reveal(RevealRequest(frames, _split_runs(positions, sizes)))
        except (ValueError, KeyError) as exc:
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


def _split_runs(flat: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """``flat`` cut into consecutive runs of ``sizes`` (one per frame of an LDPC reveal message,
    sent as one concatenated array)."""
    return list(np.split(flat, np.cumsum(sizes)[:-1])) if sizes.size else []


def _ldpc_groups(n: int, qber: float, codes: str) -> list[tuple[int, int]]:
    """The key cut into groups of ``LDPC_GROUP_FRAMES`` LDPC frames (the last one shorter)."""
    per = LdpcPlan.derive(n, qber, codes=codes).frame_key_bits * LDPC_GROUP_FRAMES
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
        if idx.size and (idx[0] < 0 or idx[-1] >= n_x or np.any(np.diff(idx) <= 0)):
            raise ProtocolAbort("sample positions out of range or not sorted and distinct")
        alice_sample = np.unpackbits(est["sample_bits"], count=idx.size)
        sample_errors = int(np.count_nonzero(alice_sample ^ sifted.x_bits[idx]))
        ch.send(Message("sample_result", {"errors": sample_errors}, category="estimation"))
        key, key_class = drop_sample(sifted.x_bits, idx), drop_sample(sifted.x_class, idx)
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
        family = cfg.privacy_amplification
        theirs = pa.fields.get("family")
        if theirs != family:
            raise ProtocolAbort(
                f"Alice hashes with {theirs!r}, Bob is set up for {family!r}: both ends need "
                "the same privacy_amplification setting"
            )
        pa_seed = np.unpackbits(pa["seed"], count=seed_length(corrected.size, m, family))
        result.key = privacy_hash(corrected, pa_seed, m, family)

    def _cascade(self, key: np.ndarray, qber: float, rng: np.random.Generator) -> np.ndarray:
        """Cascade on groups of ``CASCADE_GROUP`` frames, the requests of a group's frames
        sharing round trips (one message each way per round trip)."""
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
        corrected = []
        for g, first in enumerate(range(0, len(frames), CASCADE_GROUP)):
            group = range(first, min(first + CASCADE_GROUP, len(frames)))
            a, b = frames[group[0]][0], frames[group[-1]][1]
            schedule = cascade_group.GroupSchedule.derive(
                [frames[i][1] - frames[i][0] for i in group], qber, [seed + i for i in group]
            )
            with cascade_group.GroupBob(key[a:b], schedule) as bob:
                corrected.append(self._cascade_group(g, bob))
        ch.send(Message("cascade_done"))
        ch.settle()
        return np.concatenate(corrected)

    def _cascade_group(self, g: int, bob: cascade_group.GroupBob) -> np.ndarray:
        """Run one group to the end: each round trip one request, one answer."""
        ch = self.channel
        while (request := bob.request()) is not None:
            passes, nodes = request
            ch.send(Message("cascade_req", {"group": g, "passes": passes, "nodes": nodes}))
            reply = ch.recv("cascade_par")
            expected = bob.expected()
            packed = reply["parities"]
            if reply.disclosed_bits != expected or packed.size != -(-expected // 8):
                raise ProtocolAbort(
                    f"Cascade answer has {reply.disclosed_bits} parities, expected {expected}"
                )
            bob.deliver(np.unpackbits(packed, count=expected))
        return bob.key

    def _ldpc(self, key: np.ndarray, qber: float, result: BlockResult) -> np.ndarray:
        """Decode each group from Alice's syndromes, asking for blind reveals until every frame
        decodes or has nothing left to reveal; a frame that still fails aborts the block."""
        ch, cfg = self.channel, self.config
        qber = min(qber, 0.49)
        groups = _ldpc_groups(key.size, qber, cfg.ldpc_codes)
        ch.defer()
        ch.send(Message("ldpc_start", {"qber": qber}))
        corrected: list[np.ndarray] = []
        failed = frames = rounds = module_disclosed = 0
        for g, (a, b) in enumerate(groups):
            plan = LdpcPlan.derive(b - a, qber, codes=cfg.ldpc_codes)
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
                sizes = np.array([p.size for p in request.positions], dtype=np.int64)
                ch.send(
                    Message(
                        "ldpc_reveal_req",
                        {
                            "frames": request.frames,
                            "sizes": sizes,
                            "positions": np.concatenate(request.positions).astype(np.int32),
                        },
                    )
                )
                reply = ch.recv("ldpc_reveal")
                got = np.asarray(reply["frames"], dtype=np.int64)
                sizes = np.asarray(reply["sizes"], dtype=np.int64)
                if not np.array_equal(got, request.frames) or sizes.size != got.size:
                    self._stop("LDPC reveal answers other frames than asked")
                values = np.unpackbits(reply["values"], count=int(sizes.sum()))
                request = party.receive_reveal(RevealReply(got, _split_runs(values, sizes)))
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
    """Run one block of both parties in this process: as two greenlets of this thread when
    their channel is a :func:`~qkdnet.postprocess.channel.local_pair`, else with Alice in a
    second thread (:func:`~qkdnet.postprocess.channel.memory_pair`)."""
    ta, tb = alice.channel.transport, bob.channel.transport
    if isinstance(ta, SwitchTransport) and isinstance(tb, SwitchTransport):
        return _run_as_greenlets(alice, bob, alice_records, bob_records, alice_rng, bob_rng)
    box: dict[str, BlockResult] = {}
    errors: list[BaseException] = []  # reported in the caller's thread
    alice_run = _capture(box, errors, "alice", alice, alice_records, alice_rng,
                         on_error=alice.channel.transport.close)  # fmt: skip
    thread = threading.Thread(target=alice_run, name="alice", daemon=True)
    thread.start()
    try:
        bob_result = bob.process(bob_records, bob_rng)
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return box["alice"], bob_result


def _capture(
    box: dict[str, BlockResult],
    errors: list[BaseException],
    name: str,
    party: Alice | Bob,
    records: Any,
    rng: np.random.Generator,
    on_error: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """A no-argument run of ``party.process`` that stores its result in ``box[name]``, or its
    exception in ``errors`` (then calls ``on_error``), for a thread or a greenlet."""

    def run() -> None:
        try:
            box[name] = party.process(records, rng)
        except BaseException as exc:
            errors.append(exc)
            if on_error is not None:
                on_error()

    return run


def _run_as_greenlets(
    alice: Alice,
    bob: Bob,
    alice_records: AliceRecords,
    bob_records: BobRecords,
    alice_rng: np.random.Generator,
    bob_rng: np.random.Generator,
) -> tuple[BlockResult, BlockResult]:
    """Both parties as greenlets of this thread; each runs until it waits for a message that
    is not there, then the other runs (:class:`~qkdnet.postprocess.channel.SwitchTransport`).
    A party that raises ends; the other then finds the channel closed. The first error is
    raised here once both have ended."""
    box: dict[str, BlockResult] = {}
    errors: list[BaseException] = []
    here = greenlet.getcurrent()
    ga = greenlet.greenlet(_capture(box, errors, "alice", alice, alice_records, alice_rng), here)
    gb = greenlet.greenlet(_capture(box, errors, "bob", bob, bob_records, bob_rng), here)
    ta, tb = alice.channel.transport, bob.channel.transport
    ta.party, tb.party = ga, gb  # type: ignore[union-attr]
    try:
        while not (ga.dead and gb.dead):
            (gb if not gb.dead else ga).switch()
    finally:
        ta.party = tb.party = None  # type: ignore[union-attr]
    if errors:
        raise errors[0]
    return box["alice"], box["bob"]
