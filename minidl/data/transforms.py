"""Batch transforms: the augmentations of the lectures, vectorised over the batch.

Every transform takes a whole NCHW batch (a NumPy or CuPy array) and returns a new array on
the same device, without a Python loop over the images: per-image random parameters are
drawn at once from a NumPy ``Generator`` and applied with one fancy-index gather.

Call signature: ``t(x, rng=None)``. A random transform draws from ``rng`` when given (the
DataLoader passes one derived from its seed, epoch and batch number, so augmentation is
reproducible and resumable) and from its own generator otherwise (``rng=`` at construction:
a seed or a Generator).

Dtypes: crops and flips keep the input dtype (uint8 stays uint8). :class:`Normalize` and
:class:`ToFloat` turn uint8 pixels into float32 in [0, 1] first, as torchvision's
``ToTensor`` does, so ``Normalize(MNIST_MEAN, MNIST_STD)`` works on raw uint8 batches.

>>> import numpy as np
>>> x = np.zeros((8, 3, 32, 32), dtype=np.uint8)
>>> t = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(0.5, 0.25)])
>>> t(x, rng=np.random.default_rng(0)).shape
(8, 3, 32, 32)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import get_array_module
from ..functional.validation import to_pair

__all__ = ["Transform", "Compose", "RandomCrop", "RandomHorizontalFlip", "Normalize",
           "ToFloat", "RandomResizedCropLite", "TenCrop"]


def _as_generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")


def _check_batch(x: Any, name: str) -> None:
    if getattr(x, "ndim", None) != 4:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{name}: expected an NCHW batch (a 4-D NumPy/CuPy array), got {shape}")


def _gather(x: Any, rows: Any, cols: Any) -> Any:
    """``out[n, c, i, j] = x[n, c, rows[n, i], cols[n, j]]`` in one gather.

    rows: (N, h) and cols: (N, w) integer arrays (host or device) -> (N, C, h, w). One flat
    ``take`` is about 3x faster than indexing with four broadcast index arrays.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    rows = xp.asarray(rows, dtype=xp.int64)
    cols = xp.asarray(cols, dtype=xp.int64)
    plane = (xp.arange(n)[:, None] * c + xp.arange(c)[None, :]) * (h * w)   # (N, C)
    flat = (plane[:, :, None, None] + (rows * w)[:, None, :, None] + cols[:, None, None, :])
    return x.reshape(-1).take(flat)


def _crop(x: Any, top: Any, left: Any, th: int, tw: int) -> Any:
    """``out[n] = x[n, :, top[n]:top[n]+th, left[n]:left[n]+tw]`` for every n at once.

    A strided view lists every (th, tw) window of every image without copying; one fancy
    index then picks each image's window, copying whole rows rather than single elements.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    s = x.strides
    windows = xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, h - th + 1, w - tw + 1, th, tw), strides=(*s, s[2], s[3]))
    return windows[xp.arange(n), :, xp.asarray(top), xp.asarray(left)]


class Transform:
    """Base class: ``__call__(x, rng=None)`` maps an NCHW batch to a new array."""

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class _RandomTransform(Transform):
    def __init__(self, rng: Any = None) -> None:
        self._own_rng = _as_generator(rng)

    def _rng(self, rng: np.random.Generator | None) -> np.random.Generator:
        return self._own_rng if rng is None else rng


class Compose(Transform):
    """Apply transforms in order; a given ``rng`` is passed to each, so the chain is seeded once."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        for t in self.transforms:
            x = t(x, rng=rng) if isinstance(t, Transform) else t(x)
        return x


class RandomCrop(_RandomTransform):
    """Zero-pad each side by ``padding``, then cut a random ``size`` window per image.

    (N, C, H, W) -> (N, C, size_h, size_w), same dtype. The CIFAR recipe is
    ``RandomCrop(32, padding=4)``.
    """

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] = 0,
                 fill: float = 0, rng: Any = None) -> None:
        super().__init__(rng)
        self.size = to_pair(size, "size", "RandomCrop")
        self.padding = to_pair(padding, "padding", "RandomCrop", allow_zero=True)
        self.fill = fill

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        _check_batch(x, "RandomCrop")
        xp = get_array_module(x)
        (th, tw), (ph, pw) = self.size, self.padding
        if ph or pw:
            x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=self.fill)
        n, _, h, w = x.shape
        if th > h or tw > w:
            raise ValueError(f"RandomCrop: crop size {(th, tw)} is larger than the padded "
                             f"image {(h, w)} (input shape {tuple(x.shape)}, padding {(ph, pw)})")
        g = self._rng(rng)
        oy = g.integers(0, h - th + 1, size=n)
        ox = g.integers(0, w - tw + 1, size=n)
        return _crop(x, oy, ox, th, tw)


class RandomHorizontalFlip(_RandomTransform):
    """Mirror each image left-right with probability ``p``. (N, C, H, W) -> same shape and dtype."""

    def __init__(self, p: float = 0.5, rng: Any = None) -> None:
        super().__init__(rng)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        _check_batch(x, "RandomHorizontalFlip")
        xp = get_array_module(x)
        flip = xp.asarray(self._rng(rng).random(x.shape[0]) < self.p)
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)


def _to_float(x: Any, dtype: Any, name: str) -> Any:
    if x.dtype == np.uint8:
        return x.astype(dtype) * dtype(1.0 / 255.0)
    if x.dtype.kind == "f":
        return x.astype(dtype, copy=False)
    raise TypeError(f"{name}: expects uint8 pixels or a floating array, got dtype {x.dtype} "
                    f"(shape {tuple(x.shape)})")


class ToFloat(Transform):
    """uint8 pixels -> ``dtype`` (default float32) in [0, 1]; floating input is only cast."""

    def __init__(self, dtype: Any = np.float32) -> None:
        self.dtype = np.dtype(dtype).type

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        return _to_float(x, self.dtype, "ToFloat")


class Normalize(Transform):
    """Per-channel ``(x - mean) / std`` on an NCHW batch; mean and std in [0, 1] units.

    ``mean`` and ``std`` are scalars or one value per channel. uint8 input is first scaled
    to float32 in [0, 1]; floating input keeps its dtype (float64 stays float64).
    (N, C, H, W) -> (N, C, H, W) floating.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in np.atleast_1d(np.asarray(mean, dtype=np.float64)))
        self.std = tuple(float(s) for s in np.atleast_1d(np.asarray(std, dtype=np.float64)))
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has "
                             f"{len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        _check_batch(x, "Normalize")
        xp = get_array_module(x)
        c = x.shape[1]
        for what, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, c):
                raise ValueError(f"Normalize: {what} has {len(v)} values but the batch has {c} "
                                 f"channels (shape {tuple(x.shape)})")
        dtype = x.dtype.type if x.dtype.kind == "f" else np.float32
        mean = np.asarray(self.mean, dtype=np.float64).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float64).reshape(1, -1, 1, 1)
        # One multiply-add: x * (1/std) - mean/std, with the 1/255 of uint8 folded in.
        scale = 1.0 / std
        if x.dtype == np.uint8:
            scale = scale / 255.0
        elif x.dtype.kind != "f":
            raise TypeError(f"Normalize: expects uint8 pixels or a floating array, got dtype "
                            f"{x.dtype} (shape {tuple(x.shape)})")
        scale = xp.asarray(scale, dtype=dtype)
        shift = xp.asarray(-mean / std, dtype=dtype)
        return x.astype(dtype, copy=False) * scale + shift


class RandomResizedCropLite(_RandomTransform):
    """A cheap random-resized-crop: a random window of random area and aspect, resized.

    Per image, the window covers a fraction of the area drawn uniformly from ``scale`` with
    an aspect ratio (w/h) drawn log-uniformly from ``ratio`` (clipped to the image), at a
    uniform position; it is resampled to ``size`` by ``'nearest'`` or ``'bilinear'``
    interpolation (pixel centres aligned). Unlike torchvision there is no retry loop: an
    oversized window is clipped. (N, C, H, W) -> (N, C, size_h, size_w), same dtype
    (integer input is rounded back).
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.6, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), interpolation: str = "bilinear",
                 rng: Any = None) -> None:
        super().__init__(rng)
        self.size = to_pair(size, "size", "RandomResizedCropLite")
        if min(self.size) < 1:
            raise ValueError(f"RandomResizedCropLite: size must be positive, got {self.size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"RandomResizedCropLite: scale must satisfy 0 < lo <= hi <= 1, "
                             f"got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomResizedCropLite: ratio must satisfy 0 < lo <= hi, got {ratio}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"RandomResizedCropLite: interpolation must be 'nearest' or "
                             f"'bilinear', got {interpolation!r}")
        self.scale, self.ratio, self.interpolation = tuple(scale), tuple(ratio), interpolation

    def windows(self, n: int, h: int, w: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Draw (top, left, height, width) int arrays of shape (n,) for an H x W image."""
        area = rng.uniform(self.scale[0], self.scale[1], n) * (h * w)
        aspect = np.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), n))
        ch = np.clip(np.rint(np.sqrt(area / aspect)), 1, h).astype(np.int64)
        cw = np.clip(np.rint(np.sqrt(area * aspect)), 1, w).astype(np.int64)
        top = np.floor(rng.random(n) * (h - ch + 1)).astype(np.int64)
        left = np.floor(rng.random(n) * (w - cw + 1)).astype(np.int64)
        return top, left, ch, cw

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        _check_batch(x, "RandomResizedCropLite")
        xp = get_array_module(x)
        n, _, h, w = x.shape
        th, tw = self.size
        top, left, ch, cw = self.windows(n, h, w, self._rng(rng))
        if self.interpolation == "nearest":
            # Output pixel i samples the source pixel under its centre, (i + 0.5) * ch / th.
            rows = np.floor((np.arange(th) + 0.5) * ch[:, None] / th).astype(np.int64)
            cols = np.floor((np.arange(tw) + 0.5) * cw[:, None] / tw).astype(np.int64)
            return _gather(x, top[:, None] + rows, left[:, None] + cols)
        # Bilinear, separable weights per image; source coordinates of output pixel centres.
        sy = np.clip((np.arange(th) + 0.5) * ch[:, None] / th - 0.5, 0, (ch - 1)[:, None])
        sx = np.clip((np.arange(tw) + 0.5) * cw[:, None] / tw - 0.5, 0, (cw - 1)[:, None])
        y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
        y1 = np.minimum(y0 + 1, (ch - 1)[:, None])
        x1 = np.minimum(x0 + 1, (cw - 1)[:, None])
        dtype = x.dtype.type if x.dtype.kind == "f" else np.float32
        wy = xp.asarray(sy - y0, dtype=dtype)[:, None, :, None]
        wx = xp.asarray(sx - x0, dtype=dtype)[:, None, None, :]
        y0, y1 = y0 + top[:, None], y1 + top[:, None]
        x0, x1 = x0 + left[:, None], x1 + left[:, None]
        top_row = _gather(x, y0, x0).astype(dtype) * (1 - wx) + _gather(x, y0, x1) * wx
        bottom_row = _gather(x, y1, x0).astype(dtype) * (1 - wx) + _gather(x, y1, x1) * wx
        out = top_row * (1 - wy) + bottom_row * wy
        if x.dtype.kind != "f":
            out = xp.rint(out).astype(x.dtype)
        return out.astype(x.dtype, copy=False)


class TenCrop(Transform):
    """AlexNet's test-time crops: four corners, the centre, and the mirror image of each.

    (N, C, H, W) -> (10, N, C, size_h, size_w) with crops ordered top-left, top-right,
    bottom-left, bottom-right, centre, then the horizontal mirrors of those five in the same
    order. ``flatten=True`` returns (10 * N, C, size_h, size_w) instead (crop-major), ready
    for a model; average the predictions with
    ``logits.reshape(10, N, -1).mean(axis=0)``.
    """

    def __init__(self, size: int | Sequence[int], flatten: bool = False) -> None:
        self.size = to_pair(size, "size", "TenCrop")
        self.flatten = flatten

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        _check_batch(x, "TenCrop")
        xp = get_array_module(x)
        n, c, h, w = x.shape
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"TenCrop: crop size {(th, tw)} is larger than the image {(h, w)} "
                             f"(input shape {tuple(x.shape)})")
        corners = [(0, 0), (0, w - tw), (h - th, 0), (h - th, w - tw),
                   ((h - th) // 2, (w - tw) // 2)]
        five = xp.stack([x[:, :, y:y + th, z:z + tw] for y, z in corners])
        out = xp.concatenate([five, five[..., ::-1]])
        return out.reshape(10 * n, c, th, tw) if self.flatten else out
