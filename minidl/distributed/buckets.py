"""Gradient buckets: parameters grouped, last first, into flat buffers that are reduced in
one collective each (a collective per small gradient would pay its fixed latency hundreds of
times a step), packed with each rank's weight before the sum and unpacked after it.

A bucket's buffer holds every gradient of the bucket, flattened, followed by one flag per
parameter (1 where this rank has a gradient): after the sum a flag says how many ranks had
one, so a parameter that got no gradient on any rank keeps ``grad is None``, as in one process.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..autograd import Tensor
from ..backend import get_array_module

__all__ = ["Bucket", "plan_buckets"]


def plan_buckets(params: Sequence[Tensor], bucket_bytes: int) -> list[list[int]]:
    """Indices of ``params`` grouped into buckets: in reverse order (backward produces the
    last layers' gradients first), one dtype and device per bucket, each at most
    ``bucket_bytes`` unless a single parameter is larger.

        >>> import numpy as np
        >>> ps = [Tensor(np.zeros(n, np.float32)) for n in (100, 100, 300, 50)]
        >>> plan_buckets(ps, 800)     # 200 bytes; 1200 (alone, too big); 400 + 400
        [[3], [2], [1, 0]]
        >>> plan_buckets(ps, 2000)    # 200 + 1200 + 400; 400
        [[3, 2, 1], [0]]
    """
    buckets: list[list[int]] = []
    open_: dict[tuple, tuple[list[int], int]] = {}   # (dtype, device) -> (bucket, bytes)
    for i in reversed(range(len(params))):
        p = params[i]
        key = (p.dtype, p.device)
        nbytes = p.data.nbytes
        current = open_.get(key)
        if current is not None and current[1] + nbytes > bucket_bytes and current[0]:
            current = None
        if current is None:
            bucket: list[int] = []
            buckets.append(bucket)
            current = (bucket, 0)
        current[0].append(i)
        open_[key] = (current[0], current[1] + nbytes)
    return buckets


class Bucket:
    """The flat buffer of some parameters' gradients and the state of its reduction."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.sizes = [p.size for p in self.params]
        self.offsets = [0]
        for n in self.sizes:
            self.offsets.append(self.offsets[-1] + n)
        xp = get_array_module(self.params[0].data)
        self.buffer = xp.zeros(self.offsets[-1] + len(self.params), dtype=self.params[0].dtype)
        self.pending = 0            # parameters whose gradient is not final yet
        self.handle: Any = None     # the started reduction

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes

    def pack(self, weight: float) -> Any:
        """Write ``weight * grad`` of every parameter (zeros where there is none) and the
        flags into the buffer; returns it."""
        buf, flags = self.buffer, self.buffer[self.offsets[-1]:]
        w = buf.dtype.type(weight)
        for i, p in enumerate(self.params):
            part = buf[self.offsets[i]:self.offsets[i + 1]]
            if p.grad is None:
                part[...] = 0
                flags[i] = 0
            else:
                xp = get_array_module(part)
                xp.multiply(p.grad.data.reshape(-1), w, out=part)
                flags[i] = 1
        return buf

    def unpack(self) -> None:
        """Copy the summed gradients back into ``.grad`` (in place, keeping each gradient's
        memory layout), for every parameter some rank had a gradient for."""
        buf, flags = self.buffer, self.buffer[self.offsets[-1]:]
        for i, p in enumerate(self.params):
            if not flags[i]:
                continue
            part = buf[self.offsets[i]:self.offsets[i + 1]].reshape(p.shape)
            if p.grad is None:
                p.grad = Tensor(part.copy())
            else:
                p.grad.data[...] = part
