"""Small synthetic 2-D classification sets for teaching and tests."""
from __future__ import annotations

import numpy as np

__all__ = ["spirals", "blobs"]


def spirals(n_per_class: int = 100, classes: int = 3, noise: float = 0.2,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms (the CS231n toy set), one arm per class.

    Returns ``x`` float32 (n_per_class * classes, 2) inside roughly [-1, 1]^2 and ``y`` int64
    with values 0..classes-1, in a seeded shuffled order. ``noise`` is the standard deviation
    of the angle jitter (radians). Not linearly separable for classes >= 2.
    """
    if n_per_class < 1 or classes < 1:
        raise ValueError(f"spirals: n_per_class and classes must be >= 1, got {n_per_class}, "
                         f"{classes}")
    rng = np.random.default_rng(seed)
    r = np.tile(np.linspace(0.0, 1.0, n_per_class), classes)
    k = np.repeat(np.arange(classes), n_per_class)
    # Each arm sweeps 4 radians; arms start 2*pi/classes apart so they interleave evenly.
    t = (np.tile(np.linspace(0.0, 4.0, n_per_class), classes) + k * (2 * np.pi / classes)
         + rng.standard_normal(r.shape) * noise)
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
    order = rng.permutation(len(x))
    return x[order].astype(np.float32), k[order].astype(np.int64)


def blobs(n: int = 200, seed: int = 0, distance: float = 2.0,
          std: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs (classes 0 and 1) centred at ``-/+ distance/2`` on the diagonal.

    Returns ``x`` float32 (n, 2) and ``y`` int64 (n,) with ``n // 2`` points of class 1
    (class 0 gets the odd one), in a seeded shuffled order. With the defaults the classes are
    linearly separable up to a few overlapping points.
    """
    if n < 2:
        raise ValueError(f"blobs: n must be >= 2, got {n}")
    rng = np.random.default_rng(seed)
    y = (np.arange(n) >= n - n // 2).astype(np.int64)
    centre = (y[:, None] - 0.5) * (distance / np.sqrt(2.0)) * np.ones((1, 2))
    x = centre + rng.standard_normal((n, 2)) * std
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order]
