"""Rate-adaptive LDPC reconciliation: shortening/puncturing plus blind rounds.

The key is cut into frames of n − d bits (n = 32768, d = 0.1 n modulated positions; the codes
of the "efficient" set for QBER 1-4.4 %, rates 0.91 … 0.74, have n = 131072, d = 0.08 n for
0.91). For a QBER estimate Q both parties derive the same :class:`LdpcPlan`: the mother code
(Table I of Elkouss et al. 2009, intermediate rates and codes designed by density evolution,
see :mod:`qkdnet.postprocess.ldpc_codes`; :data:`CODE_SETS`, :data:`CODE_BY_QBER`) and
the number s of modulated positions that start shortened, so that the effective rate
(k − s)/(n − d) is 1 − f₀·h(Q) (Elkouss, Martinez-Mateo, Martin, "Information reconciliation
for QKD", QIC 11, 226 (2011), Eq. 4). The other p = d − s modulated positions are punctured:
Alice fills them with private random bits. Shortened positions and the padding of the last
frame hold public random values (drawn from a seed Alice announces), so they say nothing about
the key.

Alice sends the syndromes; Bob decodes each frame. On failure, blind reconciliation
(Martinez-Mateo, Elkouss, Martin, "Blind reconciliation", QIC 12, 791 (2012)) reveals the values
of ``step`` more bits of the failed frames, and Bob decodes again. Bob picks the bits: the
``step`` punctured or key bits his failed decoding was least sure of (smallest |posterior LLR|,
as in Kiktenko et al.'s symmetric blind reconciliation, :mod:`qkdnet.postprocess.ldpc_reveals`),
up to 2d − s₀ per frame; a frame still failing then is reported failed (Bob's bits there stay
uncorrected). Because those reveals are cheap, the first decoding starts near the Shannon rate
(f₀ ≈ 1, :data:`F_START_LONG`). Blind rounds warm-start the decoder from the messages the
failed attempt left (only the newly revealed bits' LLRs change).

Leakage: the syndrome of a frame with p private punctured bits whose columns of H are linearly
independent (checked when the codes are made) tells at most m − p bits about the key; the
frame's check hash (FRAME_HASH_BITS, which lets Bob reject a decoded word that meets the
syndrome but is not Alice's) and every revealed punctured value or key bit add one each.
``disclosed_bits`` is Σ_frames (m − p₀ + FRAME_HASH_BITS + revealed).
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, field

import numpy as np

from qkdnet.postprocess.ldpc_codes import DEFAULT_N, LdpcCode, load_codes
from qkdnet.postprocess.ldpc_decoder import KNOWN_LLR, STALL_ITERATIONS, decode_frames
from qkdnet.postprocess.ldpc_fixed import SCALE, decode_frames_fixed
from qkdnet.postprocess.ldpc_reveals import least_reliable, posterior_magnitudes

#: Efficiency at which the mother code is chosen (see :meth:`LdpcPlan.derive`).
F_CODE = 1.1
#: Starting efficiency f₀ of the first decoding by QBER (blind rounds lower the rate from there)
#: for the n = 32768 codes. With reveals of the least reliable bits (:mod:`ldpc_reveals`) a start
#: at the Shannon rate pays: at QBER 2 % the rate-0.83 code needs f 1.093 from f₀ = 1 (128
#: frames; 1.10 from f₀ = 1.09 with the fixed reveal order). Before, each reveal of a punctured
#: bit in a fixed order helped little, and the best starts were 1.05-1.14 (docs/benchmarks.md).
F_START_POINTS = ((0.01, 1.0), (0.08, 1.0))
#: The same for the longer codes (n > 32768): f₀ = 1 gives f 1.085 at 1 %, 1.064 at 2 %, 1.068
#: at 3 % (128 frames each; f₀ = 0.97: 1.079 / 1.061 at 30 % more rounds).
F_START_LONG = ((0.01, 1.0), (0.08, 1.0))
#: Stall limit of the decodings after a reveal (warm-started: they either converge within a few
#: iterations or need more revealed bits).
BLIND_STALL = 4
#: Bits of the per-frame check hash (see :func:`frame_hashes`).
FRAME_HASH_BITS = 16
#: Bits revealed per blind round, as a fraction of the modulated positions d: d/64 (51 bits at
#: n = 32768) instead of d/32 lowered f at 5 % from 1.101 to 1.097 with the fixed reveal order
#: (3000 frames, FER ≤ 1e-3) at about twice the rounds.
STEP_FRACTION = 1.0 / 64.0
#: The same for the longer codes: d/128 (≈ 100 bits at n = 131072). Each halving of the step
#: lowers f (half a step less paid beyond each frame's need) at twice the rounds: with the fixed
#: order d/32 → d/64 about 0.008 at 2-3 %, d/64 → d/128 another 0.003-0.004 at 1-3 %; with
#: reveals by reliability d/256 instead of d/128 gained 0.002 at 1 % from f₀ = 1.10 (1.113 → 1.111,
#: 128 frames; docs/benchmarks.md).
STEP_FRACTION_LONG = 1.0 / 128.0
MAX_ITER = 60
#: Bob's sum-product arithmetic: "fixed" (16-bit messages, 16 frames per 256-bit register:
#: about twice the float decoder's speed, docs/benchmarks.md) or "float" (float32). Only Bob
#: decodes, so the two parties need not agree on it.
DECODERS = ("fixed", "float")
#: Mother codes the plan may pick. The rate-0.85 code (half its edges on degree-21 variables)
#: decodes worst at this frame length: measured failing at f ≈ 1.3 at QBER 2 %, so it is skipped.
#: "fast": the n = 32768 codes (Table I's and two intermediate rates).
FAST_RATES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.79, 0.8, 0.83, 0.9)
#: "efficient": from QBER 1 to 4.4 % the codes of n = 131072 designed by density evolution
#: (``ldpc_codes.LONG_RATES``, one every 0.25-0.5 % of QBER) instead of those of n = 32768
#: (f 1.24 → 1.12 at 1 %, 1.14 → 1.09 at 2-3 %; decoding slower per bit, docs/benchmarks.md);
#: which code serves which QBER: :data:`CODE_BY_QBER`.
EFFICIENT_RATES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.74, 0.75, 0.76, 0.77, 0.785, 0.825, 0.845, 0.86,
                   0.875, 0.895, 0.91)  # fmt: skip
#: The code sets a plan may draw from (both parties must use the same one): "efficient", the
#: codes of the lowest measured f at each QBER (longer frames where they help), and "fast", the
#: n = 32768 codes, which decode faster per bit (less memory per frame) at a higher f.
CODE_SETS: dict[str, tuple[float, ...]] = {"efficient": EFFICIENT_RATES, "fast": FAST_RATES}


#: Measured choice of the "efficient" set's code by QBER: (upper QBER bound, rate) rows, the
#: rule of :func:`_pick_code` above the last. Whole-protocol f of every candidate code at QBER
#: steps of 0.25-0.5 % (docs/benchmarks.md, "Session 6"): each long code does best with 10-25 %
#: of its modulated positions punctured at the start and fails with less than 10 % left for the
#: blind rounds, the n = 32768 codes do well with 30-95 % punctured, so no single puncturing
#: target picks well across the set.
CODE_BY_QBER: dict[str, tuple[tuple[float, float], ...]] = {
    "efficient": (
        (0.0102, 0.91),
        (0.0125, 0.895),
        (0.0158, 0.875),
        (0.0188, 0.86),
        (0.0213, 0.845),
        (0.0255, 0.825),
        (0.031, 0.785),
        (0.0335, 0.77),
        (0.038, 0.76),
        (0.044, 0.74),
        (0.0515, 0.7),
        (0.0625, 0.65),
        (0.0725, 0.6),
        (0.085, 0.55),
    )
}


def check_code_set(name: str) -> str:
    """``name`` if it is one of :data:`CODE_SETS`, else a ValueError saying which are."""
    if name not in CODE_SETS:
        raise ValueError(f"LDPC code set must be one of {', '.join(CODE_SETS)} (got {name!r})")
    return name


#: Target fraction of the modulated positions punctured at the start.
PUNCTURE_ROOM = 1.0 / 3.0


def binary_entropy(q: float) -> float:
    """h(q) = −q log2 q − (1 − q) log2(1 − q)."""
    if q <= 0.0 or q >= 1.0:
        return 0.0
    return -q * math.log2(q) - (1.0 - q) * math.log2(1.0 - q)


def start_efficiency(qber: float, n: int = DEFAULT_N) -> float:
    """f₀ for a QBER and a code length n: ``F_START_POINTS`` (n = 32768) or ``F_START_LONG``
    interpolated linearly, constant beyond its ends."""
    return _interp(F_START_POINTS if n <= DEFAULT_N else F_START_LONG, qber)


def _interp(points: tuple[tuple[float, float], ...], q: float) -> float:
    """The (QBER, value) table interpolated linearly at q, constant beyond its ends."""
    xs, ys = zip(*points, strict=True)
    return float(np.interp(q, xs, ys))


#: Whole-protocol f measured per QBER (128-3000 frames, session 7, docs/benchmarks.md), for the
#: n = 32768 codes and the longer ones: only used to choose between them for short keys.
F_MEASURED = ((0.01, 1.15), (0.02, 1.09), (0.03, 1.10), (0.05, 1.06), (0.08, 1.05))
F_MEASURED_LONG = (
    (0.01, 1.084),
    (0.0125, 1.080),
    (0.015, 1.072),
    (0.0175, 1.069),
    (0.02, 1.067),
    (0.0225, 1.065),
    (0.025, 1.064),
    (0.03, 1.068),
    (0.0325, 1.065),
    (0.035, 1.052),
    (0.0375, 1.049),
    (0.04, 1.049),
    (0.0425, 1.049),
)


def _code_by_qber(table: tuple[tuple[float, float], ...], q: float) -> int | None:
    """Index (in load_codes()) of the rate ``table`` gives for q (the first row whose upper
    QBER bound is ≥ q), or None above the last bound."""
    for upper, rate in table:
        if q <= upper:
            return next(i for i, c in enumerate(load_codes()) if c.rate == rate)
    return None


def _pick_code(usable: tuple[float, ...], q: float) -> int:
    """Index (in load_codes()) of the code among ``usable`` whose effective rate 1 − F_CODE·h(Q)
    leaves closest to PUNCTURE_ROOM·d punctured bits (in units of d: the codes differ in n, d)."""
    codes = load_codes()
    target = 1.0 - F_CODE * binary_entropy(q)
    best: tuple[float, int] | None = None
    for i, code in enumerate(codes):
        if code.rate not in usable:
            continue
        s = round(code.k - target * (code.n - code.d))
        if not 0 <= s <= code.d:
            room = (-abs(s) - abs(code.d - s)) / code.d  # out of range: least bad
        else:
            room = -abs((code.d - s) - PUNCTURE_ROOM * code.d) / code.d
        if best is None or room > best[0]:
            best = (room, i)
    assert best is not None
    return best[1]


def _expected_disclosure(index: int, key_bits: int, q: float) -> float:
    """Frames × frame key bits × measured f: the disclosure to expect with this code (the last
    frame is padded, and its syndrome is sent whole)."""
    code = load_codes()[index]
    frame = code.n - code.d
    f = _interp(F_MEASURED if code.n <= DEFAULT_N else F_MEASURED_LONG, q)
    return -(-key_bits // frame) * frame * f


def _check_qber(qber: float) -> float:
    q = float(qber)
    if not (0.0 < q < 0.5) or math.isnan(q):
        raise ValueError(f"qber must be in (0, 0.5) (got {qber}); estimate it before reconciling")
    return q


def _check_key(name: str, bits: np.ndarray) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of bits (got shape {arr.shape})")
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.uint8, copy=False)


@dataclass(frozen=True)
class LdpcPlan:
    """What both parties derive from the key length and the public QBER estimate."""

    code_index: int
    key_bits: int
    frames: int
    shortened: int  # s₀: modulated positions shortened at the start
    step: int  # punctured bits revealed per blind round
    qber: float

    @property
    def code(self) -> LdpcCode:
        return load_codes()[self.code_index]

    @property
    def frame_key_bits(self) -> int:
        return self.code.n - self.code.d

    @classmethod
    def derive(
        cls,
        key_bits: int,
        qber: float,
        f_start: float | None = None,
        step_fraction: float | None = None,
        codes: str = "efficient",
    ) -> LdpcPlan:
        """Pick the code of the set ``codes`` (CODE_SETS) that :data:`CODE_BY_QBER` gives for
        the QBER, or else the one whose effective rate 1 − F_CODE·h(Q) leaves about
        ``PUNCTURE_ROOM``·d punctured bits for blind rounds (puncturing less decodes better;
        some room is needed to adapt) — or, for a key too short to fill the long frames
        of the "efficient" set, the n = 32768 code if it discloses less — then s₀ for the
        starting efficiency f₀ (``f_start``, default :func:`start_efficiency`) on that code."""
        q = _check_qber(qber)
        check_code_set(codes)
        if key_bits < 1:
            raise ValueError(f"key must have at least 1 bit (got {key_bits})")
        index = _code_by_qber(CODE_BY_QBER.get(codes, ()), q)
        if index is None:
            index = _pick_code(CODE_SETS[codes], q)
        if codes != "fast":
            # a short key in long frames pays the padded frame's syndrome: take the n = 32768
            # code instead when its expected disclosure is smaller
            short = _pick_code(CODE_SETS["fast"], q)
            if _expected_disclosure(short, key_bits, q) < _expected_disclosure(index, key_bits, q):
                index = short
        code = load_codes()[index]
        f0 = start_efficiency(q, code.n) if f_start is None else f_start
        s = round(code.k - (1.0 - f0 * binary_entropy(q)) * (code.n - code.d))
        s = min(max(s, 0), code.d)
        frames = -(-key_bits // (code.n - code.d))
        if step_fraction is None:
            step_fraction = STEP_FRACTION if code.n <= DEFAULT_N else STEP_FRACTION_LONG
        fraction = step_fraction
        step = max(1, round(fraction * code.d))
        return cls(index, key_bits, frames, s, step, q)


@dataclass(frozen=True)
class LdpcSyndromes:
    """Alice's first message: the public seed of the known values, every frame's syndrome and
    every frame's check hash (:func:`frame_hashes`)."""

    public_seed: int
    syndromes: np.ndarray  # (frames, m) uint8
    hashes: np.ndarray  # (frames, FRAME_HASH_BITS) uint8


@dataclass(frozen=True)
class RevealRequest:
    """Bob asks for Alice's values at ``positions[i]`` (word positions, 0 … n − 1) of frame
    ``frames[i]``."""

    frames: np.ndarray  # int64
    positions: list[np.ndarray]  # int64 each


@dataclass(frozen=True)
class RevealReply:
    """Alice's answer: per requested frame, her word's values at the requested positions."""

    frames: np.ndarray
    values: list[np.ndarray]


def frame_hashes(seed: int, words: np.ndarray) -> np.ndarray:
    """Per frame, FRAME_HASH_BITS parities of random subsets of the word's n bits (a random
    GF(2)-linear hash drawn from the public seed: two different words collide with probability
    2^−FRAME_HASH_BITS). Decoding can end on a word that meets the syndrome but is not Alice's
    (measured: 2 of 1000 frames at QBER 1 %); the hash turns those into failures that blind
    rounds then repair. Each hash bit is counted as disclosed."""
    n = words.shape[1]
    masks = np.random.Generator(np.random.PCG64([seed, 1])).integers(
        0, 2, (FRAME_HASH_BITS, n), dtype=np.uint8
    )
    return ((words.astype(np.int32) @ masks.T.astype(np.int32)) & 1).astype(np.uint8)


def _public_values(seed: int, frames: int, n: int) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(seed)).integers(0, 2, (frames, n), dtype=np.uint8)


def _key_positions(code: LdpcCode) -> np.ndarray:
    mask = np.ones(code.n, dtype=bool)
    mask[code.modulated] = False
    return np.flatnonzero(mask)


def reveal_limit(plan: LdpcPlan) -> int:
    """Bits one frame may reveal in blind rounds: 2d − s₀ (as many as its punctured positions
    and d key bits, the bound of the fixed-order protocol)."""
    return 2 * plan.code.d - plan.shortened


def _private_bits(rng: np.random.Generator | None, shape: tuple[int, int]) -> np.ndarray:
    """Alice's secret punctured values: from ``rng`` (simulation, seeded) or, when None, from
    ``os.urandom`` (live mode)."""
    if rng is not None:
        return rng.integers(0, 2, shape, dtype=np.uint8)
    count = shape[0] * shape[1]
    raw = np.frombuffer(os.urandom(-(-count // 8)), dtype=np.uint8)
    return np.unpackbits(raw, count=count).reshape(shape)


class LdpcAlice:
    """Alice's part: builds her frames, sends syndromes, reveals punctured values on request.

    ``rng`` draws the public seed and the private punctured values (simulation); ``None`` takes
    them from ``secrets``/``os.urandom`` (live mode)."""

    def __init__(self, key: np.ndarray, plan: LdpcPlan, rng: np.random.Generator | None) -> None:
        key = _check_key("alice_key", key)
        if key.size != plan.key_bits:
            raise ValueError(f"plan is for {plan.key_bits} bits, key has {key.size}")
        self.plan = plan
        code = plan.code
        self._public_seed = (
            int(rng.integers(0, 2**63 - 1)) if rng is not None else secrets.randbits(63)
        )
        words = _public_values(self._public_seed, plan.frames, code.n)
        # punctured positions: private random bits (not key bits)
        punct = code.modulated[plan.shortened :]
        words[:, punct] = _private_bits(rng, (plan.frames, punct.size))
        kpos = _key_positions(code)
        padded = np.concatenate([key, np.zeros(plan.frames * kpos.size - key.size, np.uint8)])
        padded = padded.reshape(plan.frames, kpos.size)
        # padding of the last frame keeps its public values
        tail = plan.frames * kpos.size - key.size
        real = kpos.size - tail
        words[:-1, kpos] = padded[:-1]
        words[-1, kpos[:real]] = padded[-1, :real]
        self._words = words
        # positions Bob knows: the shortened ones, the last frame's padding, and those revealed
        known = np.zeros((plan.frames, code.n), dtype=bool)
        known[:, code.modulated[: plan.shortened]] = True
        known[-1, kpos[real:]] = True
        self._known = known
        self._revealed = np.zeros(plan.frames, dtype=np.int64)
        self.disclosed_bits = plan.frames * (code.m - (code.d - plan.shortened) + FRAME_HASH_BITS)

    def syndromes(self) -> LdpcSyndromes:
        code = self.plan.code
        syn = np.stack([code.syndrome(w) for w in self._words])
        hashes = frame_hashes(self._public_seed, self._words)
        return LdpcSyndromes(self._public_seed, syn, hashes)

    def reveal(self, request: RevealRequest) -> RevealReply:
        """Values at the requested positions; refuses (ValueError, nothing revealed) a frame out
        of range, a position out of range, repeated or already known, or more than
        :func:`reveal_limit` bits of one frame in all."""
        plan, n = self.plan, self.plan.code.n
        limit = reveal_limit(plan)
        frames = np.asarray(request.frames, dtype=np.int64)
        if frames.ndim != 1 or len(request.positions) != frames.size:
            raise ValueError("a reveal request needs one position list per frame")
        if np.unique(frames).size != frames.size:
            raise ValueError("a reveal request names a frame twice")
        checked = []
        for f, pos in zip(frames.tolist(), request.positions, strict=True):
            if not 0 <= f < plan.frames:
                raise ValueError(f"frame {f} out of range (the plan has {plan.frames})")
            pos = np.asarray(pos, dtype=np.int64)
            if pos.ndim != 1 or pos.size == 0:
                raise ValueError(f"frame {f}: no positions to reveal")
            if pos.min() < 0 or pos.max() >= n:
                raise ValueError(f"frame {f}: positions must be in [0, {n})")
            if np.unique(pos).size != pos.size or self._known[f, pos].any():
                raise ValueError(f"frame {f}: cannot reveal a position twice or a known one")
            if self._revealed[f] + pos.size > limit:
                raise ValueError(f"frame {f}: cannot reveal more than {limit} bits")
            checked.append((f, pos))
        values = []
        for f, pos in checked:
            values.append(self._words[f, pos].copy())
            self._known[f, pos] = True
            self._revealed[f] += pos.size
            self.disclosed_bits += pos.size
        return RevealReply(frames.copy(), values)


@dataclass
class LdpcResult:
    """Outcome at Bob's end (``corrected`` keeps Bob's own bits in failed frames)."""

    corrected: np.ndarray
    disclosed_bits: int
    frames: int
    failed_frames: np.ndarray
    rounds: int
    iterations: list[int] = field(default_factory=list)

    def efficiency(self, qber: float) -> float:
        """f = disclosed / (n·h(Q)) over the whole key."""
        return self.disclosed_bits / (self.corrected.size * binary_entropy(qber))


class LdpcBob:
    """Bob's part: decodes with his key, the syndromes and the QBER estimate; asks for more."""

    def __init__(
        self,
        key: np.ndarray,
        plan: LdpcPlan,
        max_iter: int = MAX_ITER,
        min_sum: bool = False,
        alpha: float = 0.8,
        warm_start: bool = True,
        blind_stall: int = BLIND_STALL,
        decoder: str = "fixed",
    ) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"LDPC decoder must be one of {', '.join(DECODERS)} (got {decoder!r})")
        if min_sum and decoder != "float":
            raise ValueError("min-sum is only implemented by the float decoder (decoder='float')")
        key = _check_key("bob_key", key)
        if key.size != plan.key_bits:
            raise ValueError(f"plan is for {plan.key_bits} bits, key has {key.size}")
        self.plan = plan
        self._key = key
        self._max_iter = max_iter
        self._min_sum = min_sum
        self._fixed = decoder == "fixed"
        self._alpha = alpha
        self.rounds = 0
        self.rejected = 0  # decodings that met the syndrome but not the frame hash
        self.iterations: list[int] = []
        self._warm = warm_start
        self._blind_stall = blind_stall
        self._messages: dict[int, np.ndarray] = {}
        self._asked: RevealRequest | None = None  # the reveal request awaiting its reply

    def receive_syndromes(self, msg: LdpcSyndromes) -> RevealRequest | None:
        plan, code = self.plan, self.plan.code
        if msg.syndromes.shape != (plan.frames, code.m):
            raise ValueError(f"syndromes must have shape {(plan.frames, code.m)}")
        if msg.hashes.shape != (plan.frames, FRAME_HASH_BITS):
            raise ValueError(f"hashes must have shape {(plan.frames, FRAME_HASH_BITS)}")
        self._syn = np.ascontiguousarray(msg.syndromes, dtype=np.uint8)
        self._hashes = np.asarray(msg.hashes, dtype=np.uint8)
        self._seed = msg.public_seed
        public = _public_values(msg.public_seed, plan.frames, code.n)
        l0 = math.log((1.0 - plan.qber) / plan.qber)
        llr = (1.0 - 2.0 * public.astype(np.float64)) * KNOWN_LLR  # padding + shortened
        llr[:, code.modulated[plan.shortened :]] = 0.0  # punctured
        kpos = _key_positions(code)
        flat = np.concatenate(
            [self._key, np.zeros(plan.frames * kpos.size - self._key.size, np.uint8)]
        )
        real = kpos.size - (plan.frames * kpos.size - self._key.size)
        noisy = (1.0 - 2.0 * flat.reshape(plan.frames, kpos.size)) * l0
        llr[:-1, kpos] = noisy[:-1]
        llr[-1, kpos[:real]] = noisy[-1, :real]
        self._llr = llr
        self._kpos, self._real_last = kpos, real
        self._revealed = np.zeros(plan.frames, dtype=np.int64)
        self.disclosed_bits = plan.frames * (code.m - (code.d - plan.shortened) + FRAME_HASH_BITS)
        self._decoded = np.zeros((plan.frames, code.n), dtype=np.uint8)
        self._ok = np.zeros(plan.frames, dtype=bool)
        self._failed = np.zeros(plan.frames, dtype=bool)
        return self._decode(np.arange(plan.frames))

    def receive_reveal(self, reply: RevealReply) -> RevealRequest | None:
        asked = self._asked
        if asked is None:
            raise ValueError("a reveal reply came with no request outstanding")
        self._asked = None
        if not np.array_equal(np.asarray(reply.frames), asked.frames):
            raise ValueError("the reveal reply answers other frames than were asked")
        for f, pos, vals in zip(asked.frames.tolist(), asked.positions, reply.values, strict=True):
            vals = np.asarray(vals)
            if vals.shape != pos.shape or (vals.size and vals.max() > 1):
                raise ValueError(f"frame {f}: {vals.size} revealed values for {pos.size} positions")
            self._llr[f, pos] = (1.0 - 2.0 * vals.astype(np.float64)) * KNOWN_LLR
            self._revealed[f] += pos.size
            self.disclosed_bits += pos.size
        return self._decode(asked.frames)

    def _decode(self, frames: np.ndarray) -> RevealRequest | None:
        """Decode ``frames`` together (frame-parallel decoder); ask for more on failures."""
        code = self.plan.code
        self.rounds += 1
        idx = np.asarray(frames, dtype=np.int64)
        # messages in and out: warm starts, and the posteriors that choose the next reveals
        # (all-zero messages are a cold start)
        msgs = np.zeros((idx.size, code.edges), dtype=np.int16 if self._fixed else np.float32)
        for i, f in enumerate(idx.tolist()):
            old = self._messages.pop(f, None)
            if old is not None:
                msgs[i] = old
        stall = STALL_ITERATIONS if self.rounds == 1 else self._blind_stall
        if self._fixed:
            hard, its = decode_frames_fixed(
                code.row_ptr, code.cols, self._syn[idx], self._llr[idx], self._max_iter,
                messages=msgs, stall_limit=stall,
            )  # fmt: skip
        else:
            hard, its = decode_frames(
                code.row_ptr, code.cols, self._syn[idx], self._llr[idx], self._max_iter,
                min_sum=self._min_sum, alpha=self._alpha, messages=msgs, stall_limit=stall,
            )  # fmt: skip
        self.iterations.extend(its.tolist())
        hashes = frame_hashes(self._seed, hard)
        retry, positions = [], []
        limit = reveal_limit(self.plan)
        for i, f in enumerate(idx.tolist()):
            self._decoded[f] = hard[i]
            known = np.abs(self._llr[f]) >= KNOWN_LLR
            converged = its[i] > 0 and np.array_equal(hard[i, known], (self._llr[f, known] < 0))
            wrong_word = converged and not np.array_equal(hashes[i], self._hashes[f])
            self.rejected += int(wrong_word)
            if converged and not wrong_word:
                self._ok[f] = True
                continue
            pos = np.zeros(0, dtype=np.int64)
            if self._revealed[f] < limit:
                scale = SCALE if self._fixed else 1.0
                magnitudes = posterior_magnitudes(self._llr[f], code.cols, msgs[i], scale)
                count = min(self.plan.step, limit - int(self._revealed[f]))
                pos = least_reliable(magnitudes, ~known, count)
            if pos.size == 0:  # the limit reached (or nothing left unknown)
                self._failed[f] = True
                continue
            retry.append(f)
            positions.append(pos)
            # a wrong word is a fixed point of the messages: restart that frame cold
            if self._warm and not wrong_word:
                self._messages[f] = msgs[i]
        if not retry:
            return None
        self._asked = RevealRequest(np.array(retry, dtype=np.int64), positions)
        return self._asked

    def result(self, disclosed_bits: int | None = None) -> LdpcResult:
        """Bob's corrected key (his own bits in failed frames) with the ledger figures; the
        disclosed count is Bob's own tally of what Alice sent unless given."""
        if disclosed_bits is None:
            disclosed_bits = self.disclosed_bits
        plan = self.plan
        kpos = self._kpos
        words = np.where(self._ok[:, None], self._decoded[:, kpos], 0).astype(np.uint8)
        out = self._key.copy()
        frame_bits = kpos.size
        for f in np.flatnonzero(self._ok).tolist():
            lo = f * frame_bits
            hi = min(lo + frame_bits, plan.key_bits)
            out[lo:hi] = words[f, : hi - lo]
        return LdpcResult(
            corrected=out,
            disclosed_bits=disclosed_bits,
            frames=plan.frames,
            failed_frames=np.flatnonzero(self._failed),
            rounds=self.rounds,
            iterations=list(self.iterations),
        )


def reconcile_local(
    alice_key: np.ndarray,
    bob_key: np.ndarray,
    qber: float,
    rng: np.random.Generator,
    *,
    f_start: float | None = None,
    min_sum: bool = False,
    max_iter: int = MAX_ITER,
    warm_start: bool = True,
    codes: str = "efficient",
    decoder: str = "fixed",
) -> LdpcResult:
    """Run Alice and Bob in one process, passing their messages directly (tests, benchmarks)."""
    alice_key = _check_key("alice_key", alice_key)
    bob_key = _check_key("bob_key", bob_key)
    if alice_key.size != bob_key.size:
        raise ValueError(f"keys differ in length ({alice_key.size} vs {bob_key.size})")
    plan = LdpcPlan.derive(alice_key.size, qber, f_start=f_start, codes=codes)
    alice = LdpcAlice(alice_key, plan, rng)
    bob = LdpcBob(
        bob_key, plan, max_iter=max_iter, min_sum=min_sum, warm_start=warm_start, decoder=decoder
    )
    request = bob.receive_syndromes(alice.syndromes())
    while request is not None:
        request = bob.receive_reveal(alice.reveal(request))
    return bob.result(alice.disclosed_bits)
