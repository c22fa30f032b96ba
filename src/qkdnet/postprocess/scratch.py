"""A small process-wide pool of large work arrays, reused from block to block.

Fresh multi-megabyte numpy arrays cost page faults when first written (the kernel zeroes every
page; numpy asks for transparent huge pages, and on a fragmented machine the kernel also
compacts memory first): Cascade's per-group shuffles and trees (~60 MB for Bob per 2.6 Mbit
group) cost 0.05–0.4 s of kernel time per block that way, more than the protocol itself.
Arrays taken here come from buffers given back by earlier blocks, already faulted in.

:func:`take` returns an *uninitialised* array (``np.empty`` semantics) whose memory belongs to
the pool; :func:`give` returns it. Arrays never given back are simply freed by Python. Free
buffers beyond ``MAX_FREE_BYTES`` (virtual size; untouched pages cost no memory) are released.
"""

from __future__ import annotations

import threading

import numpy as np

MAX_FREE_BYTES = 1 << 30

_free: list[np.ndarray] = []  # uint8 buffers, smallest first
_lock = threading.Lock()


def take(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` backed by a pooled buffer
    (the smallest free one that is large enough, else a new one)."""
    dt = np.dtype(dtype)
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    buf = None
    with _lock:
        for i, candidate in enumerate(_free):
            if candidate.size >= nbytes:
                buf = _free.pop(i)
                break
    if buf is None:
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes].view(dt).reshape(dims)


def give(*arrays: np.ndarray) -> None:
    """Return arrays obtained from :func:`take` (their whole buffers) to the pool."""
    with _lock:
        for array in arrays:
            base = array
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base.dtype != np.uint8 or base.ndim != 1 or any(b is base for b in _free):
                continue
            _free.append(base)
        _free.sort(key=lambda b: b.size)
        while sum(b.size for b in _free) > MAX_FREE_BYTES:
            _free.pop()  # the largest go back to the system
