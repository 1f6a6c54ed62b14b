"""DCGAN (Radford, Metz and Chintala 2015) and a trainer with the non-saturating loss.

``dcgan_generator(z_dim, out_shape)`` maps (N, z_dim) noise to (N, C, H, W) images in
[-1, 1] with transposed convolutions, BatchNorm and ReLU (tanh at the end);
``dcgan_discriminator(in_shape)`` maps images to (N,) logits with strided convolutions,
BatchNorm and LeakyReLU(0.2). Both support 28x28 grayscale and 32x32 / 64x64 images.

:class:`GANTrainer` alternates one discriminator step (real -> 1, fake -> 0) and one
generator step with the non-saturating loss ``-log D(G(z))`` (Goodfellow et al. 2014), and
:func:`train_gan` runs it on the bundled MNIST subset, writing a PNG grid of samples after
every epoch (``minidl train-gan --dataset mnist-subset``).
"""
from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad, tensor
from ..backend import get_array_module, manual_seed
from ..data import mnist_subset
from ..factories import randn
from ..nn import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    LeakyReLU,
    Module,
    ReLU,
    Sequential,
    Tanh,
    init,
)
from ..optim import Adam

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "dcgan_generator", "dcgan_discriminator",
           "GANTrainer", "GANRecipe", "gan_trainer", "save_image_grid", "train_gan"]


def _dcgan_init(model: Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, BN scale N(1, 0.02)."""
    for m in model.modules():
        if isinstance(m, (Conv2d, ConvTranspose2d)):
            init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, BatchNorm2d):
            init.normal_(m.weight, 1.0, 0.02)
            init.zeros_(m.bias)


def _check_shape(shape: Sequence[int], who: str) -> tuple[int, int, int]:
    c, h, w = (int(s) for s in shape)
    if h != w or h not in (28, 32, 64):
        raise ValueError(f"{who}: image shape must be (C, 28|32|64, same), got {tuple(shape)}")
    return c, h, w


class DCGANGenerator(Module):
    """(N, z_dim) or (N, z_dim, 1, 1) noise -> (N, C, H, W) images in [-1, 1]."""

    def __init__(self, z_dim: int = 100, out_shape: Sequence[int] = (1, 28, 28),
                 ngf: int = 64) -> None:
        super().__init__()
        c, size, _ = _check_shape(out_shape, "dcgan_generator")
        self.z_dim, self.out_shape = z_dim, (c, size, size)
        self.input_shape = (z_dim,)
        if size == 28:  # 1 -> 7 -> 14 -> 28
            widths, first_k = [2 * ngf, ngf], 7
        else:  # 1 -> 4 -> 8 -> ... -> size
            n_up = {32: 3, 64: 4}[size]
            widths, first_k = [ngf * 2 ** i for i in reversed(range(n_up))], 4
        layers: list[Module] = [ConvTranspose2d(z_dim, widths[0], first_k, 1, 0, bias=False),
                                BatchNorm2d(widths[0]), ReLU()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [ConvTranspose2d(a, b, 4, 2, 1, bias=False), BatchNorm2d(b), ReLU()]
        layers += [ConvTranspose2d(widths[-1], c, 4, 2, 1, bias=False), Tanh()]
        self.net = Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim == 2:
            z = z.reshape(z.shape[0], z.shape[1], 1, 1)
        if z.ndim != 4 or z.shape[1] != self.z_dim:
            raise ValueError(f"DCGANGenerator(z_dim={self.z_dim}): expected noise of shape "
                             f"(N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(z)


class DCGANDiscriminator(Module):
    """(N, C, H, W) images -> (N,) logits of 'real'."""

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), ndf: int = 64) -> None:
        super().__init__()
        c, size, _ = _check_shape(in_shape, "dcgan_discriminator")
        self.in_shape = self.input_shape = (c, size, size)
        if size == 28:  # 28 -> 14 -> 7 -> 1
            widths, last_k = [ndf, 2 * ndf], 7
        else:  # size -> size/2 -> ... -> 4 -> 1
            n_down = {32: 3, 64: 4}[size]
            widths, last_k = [ndf * 2 ** i for i in range(n_down)], 4
        layers: list[Module] = [Conv2d(c, widths[0], 4, 2, 1, bias=False), LeakyReLU(0.2)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [Conv2d(a, b, 4, 2, 1, bias=False), BatchNorm2d(b), LeakyReLU(0.2)]
        layers += [Conv2d(widths[-1], 1, last_k, 1, 0, bias=False)]
        self.net = Sequential(*layers)
        _dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"DCGANDiscriminator: expected images (N, {self.in_shape[0]}, "
                             f"{self.in_shape[1]}, {self.in_shape[2]}), got {tuple(x.shape)}")
        return self.net(x).reshape(x.shape[0])


def dcgan_generator(z_dim: int = 100, out_shape: Sequence[int] = (1, 28, 28),
                    ngf: int = 64) -> DCGANGenerator:
    """DCGAN generator: (N, z_dim) -> (N, *out_shape) in [-1, 1]; out_shape (C, 28|32|64, same)."""
    return DCGANGenerator(z_dim, out_shape, ngf)


def dcgan_discriminator(in_shape: Sequence[int] = (1, 28, 28),
                        ndf: int = 64) -> DCGANDiscriminator:
    """DCGAN discriminator: (N, *in_shape) -> (N,) logits; in_shape (C, 28|32|64, same)."""
    return DCGANDiscriminator(in_shape, ndf)


class GANTrainer:
    """Alternating GAN training with the non-saturating generator loss.

    Each :meth:`step` on a batch of real images does one discriminator update (minimise
    ``BCE(D(x), 1) + BCE(D(G(z)), 0)``) and one generator update (minimise
    ``BCE(D(G(z)), 1)``, i.e. ``-log D(G(z))``, which keeps gradients alive while D is
    winning, unlike the minimax ``log(1 - D(G(z)))``). The discriminator is frozen during
    the generator step, so no gradient is computed for its weights there.
    Optimisers default to Adam(lr=2e-4, betas=(0.5, 0.999)), as in DCGAN.
    ``real_label=0.9`` gives one-sided label smoothing (Salimans et al. 2016), which keeps
    the discriminator from becoming over-confident.

    It keeps a loop of its own instead of :class:`minidl.train.Trainer`: each batch makes two
    updates with two optimisers, the second through a frozen discriminator on the fake batch
    the first one generated. ``train_step`` is one forward, one loss, one optimiser; two
    calls of it would run the generator twice per batch and give D and G different fakes.
    """

    def __init__(self, generator: Module, discriminator: Module, g_optimizer: Any = None,
                 d_optimizer: Any = None, z_dim: int | None = None, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), real_label: float = 1.0) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.z_dim = int(z_dim if z_dim is not None else generator.z_dim)
        self.g_optimizer = g_optimizer or Adam(generator.parameters(), lr=lr, betas=betas)
        self.d_optimizer = d_optimizer or Adam(discriminator.parameters(), lr=lr, betas=betas)
        self.real_label = float(real_label)
        self.history: list[dict[str, float]] = []

    def sample(self, n: int, z: Tensor | None = None) -> Tensor:
        """n generated images (eval mode, no graph): (n, C, H, W)."""
        g = self.generator
        was = g.training
        g.eval()
        try:
            with no_grad():
                return g(z if z is not None else randn(n, self.z_dim, device=g.device))
        finally:
            g.train(was)

    def step(self, real: Tensor | np.ndarray) -> dict[str, float]:
        """One D update and one G update on a batch of real images in [-1, 1]."""
        g, d = self.generator, self.discriminator
        real = real if isinstance(real, Tensor) else tensor(real, device=d.device)
        n = real.shape[0]
        g.train()
        d.train()
        # the labels live where the logits do: a loss refuses a host array for a GPU tensor
        xp = get_array_module(real.data)
        ones, zeros = xp.ones(n, real.dtype), xp.zeros(n, real.dtype)
        z = randn(n, self.z_dim, dtype=real.dtype, device=real.device)
        fake = g(z)
        # Discriminator: real -> 1, fake -> 0; fake.detach() keeps G out of this backward.
        d_real, d_fake = d(real), d(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(d_real, ones * self.real_label)
                  + F.binary_cross_entropy_with_logits(d_fake, zeros))
        self.d_optimizer.zero_grad()
        loss_d.backward()
        self.d_optimizer.step()
        # Generator: non-saturating loss through a frozen discriminator.
        d.freeze()
        try:
            loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
            self.g_optimizer.zero_grad()
            loss_g.backward()
            self.g_optimizer.step()
        finally:
            d.unfreeze()
        out = {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
               "d_real": float(F.sigmoid(d_real.detach()).mean().item()),
               "d_fake": float(F.sigmoid(d_fake.detach()).mean().item())}
        self.history.append(out)
        return out

    def fit(self, images: np.ndarray, epochs: int = 1, batch_size: int = 64, seed: int = 0,
            on_epoch_end: Callable[[int, GANTrainer], None] | None = None,
            verbose: bool = True) -> list[dict[str, float]]:
        """Train on ``images`` (N, C, H, W) scaled to [-1, 1]; returns per-epoch means."""
        rng = np.random.default_rng(seed)
        per_epoch = []
        for epoch in range(epochs):
            t0 = time.perf_counter()
            order = rng.permutation(len(images))
            logs = [self.step(images[order[i:i + batch_size]])
                    for i in range(0, len(images) - batch_size + 1, batch_size)]
            mean = {k: float(np.mean([r[k] for r in logs])) for k in logs[0]}
            mean["seconds"] = time.perf_counter() - t0
            per_epoch.append(mean)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}: loss_d {mean['loss_d']:.3f} loss_g "
                      f"{mean['loss_g']:.3f} D(x) {mean['d_real']:.2f} D(G(z)) "
                      f"{mean['d_fake']:.2f} ({mean['seconds']:.1f} s)")
            if on_epoch_end is not None:
                on_epoch_end(epoch, self)
        return per_epoch


@dataclass(frozen=True)
class GANRecipe:
    """Everything that makes a DCGAN run on 28x28 digits, in one place: widths, batch,
    the two Adam learning rates and betas, the real label and the number of epochs."""

    z_dim: int = 100
    ngf: int = 32
    ndf: int = 32
    batch_size: int = 64
    lr_g: float = 5e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    real_label: float = 1.0
    epochs: int = 20

    def describe(self) -> str:
        """One line: 'ngf 32, ndf 32, batch 64, Adam G 0.0002 / D 0.0002, ...'."""
        return (f"ngf {self.ngf}, ndf {self.ndf}, z {self.z_dim}, batch {self.batch_size}, "
                f"Adam lr G {self.lr_g:g} / D {self.lr_d:g}, betas {self.betas}, real label "
                f"{self.real_label:g}")


def gan_trainer(recipe: GANRecipe) -> GANTrainer:
    """A :class:`GANTrainer` for 28x28 grayscale digits built as ``recipe`` says."""
    g = dcgan_generator(recipe.z_dim, (1, 28, 28), recipe.ngf)
    d = dcgan_discriminator((1, 28, 28), recipe.ndf)
    return GANTrainer(g, d, Adam(g.parameters(), lr=recipe.lr_g, betas=recipe.betas),
                      Adam(d.parameters(), lr=recipe.lr_d, betas=recipe.betas),
                      real_label=recipe.real_label)


def _png_bytes(img: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) grayscale or (H, W, 3) RGB image as PNG (no dependencies)."""
    h, w = img.shape[:2]
    color = 2 if img.ndim == 3 else 0
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0,
                                                              0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def save_image_grid(images: Any, path: str | Path, nrow: int = 8, padding: int = 2,
                    value_range: tuple[float, float] = (-1.0, 1.0), scale: int = 1) -> Path:
    """Write (N, C, H, W) images (C = 1 or 3) as one PNG grid of ``nrow`` columns."""
    arr = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(f"save_image_grid: expected (N, 1|3, H, W), got {arr.shape}")
    lo, hi = value_range
    arr = np.clip((arr.astype(np.float64) - lo) / (hi - lo), 0, 1)
    n, c, h, w = arr.shape
    rows = (n + nrow - 1) // nrow
    grid = np.zeros((c, rows * (h + padding) + padding, nrow * (w + padding) + padding))
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, y:y + h, x:x + w] = arr[i]
    img = (grid * 255 + 0.5).astype(np.uint8)
    if scale > 1:
        img = img.repeat(scale, axis=1).repeat(scale, axis=2)
    img = img[0] if c == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(_png_bytes(img))
    tmp.replace(path)
    return path


def train_gan(dataset: str = "mnist-subset", epochs: int | None = None,
              batch_size: int | None = None, z_dim: int | None = None, ngf: int | None = None,
              ndf: int | None = None, out_dir: str | Path = "gan_out", seed: int = 0,
              real_label: float | None = None, verbose: bool = True,
              recipe: GANRecipe | None = None) -> GANTrainer:
    """Train a DCGAN on the bundled MNIST subset (all 5,000 digits), writing
    ``out_dir/samples_epoch_K.png`` (64 samples from fixed noise) after every epoch.

    ``recipe`` (default :class:`GANRecipe`) sets everything; the other arguments, when
    given, override its fields.
    """
    if dataset != "mnist-subset":
        raise ValueError(f"train_gan: only dataset 'mnist-subset' is bundled, got {dataset!r}")
    given = {"epochs": epochs, "batch_size": batch_size, "z_dim": z_dim, "ngf": ngf,
             "ndf": ndf, "real_label": real_label}
    recipe = replace(recipe or GANRecipe(), **{k: v for k, v in given.items() if v is not None})
    manual_seed(seed)
    x = np.concatenate([mnist_subset("train")[0], mnist_subset("test")[0]])
    images = (x.astype(np.float32) / 127.5 - 1.0)
    trainer = gan_trainer(recipe)
    fixed_z = randn(64, recipe.z_dim)
    out = Path(out_dir)

    def write(epoch: int, tr: GANTrainer) -> None:
        p = save_image_grid(tr.sample(64, fixed_z), out / f"samples_epoch_{epoch + 1}.png",
                            scale=2)
        if verbose:
            print(f"  wrote {p}")

    trainer.fit(images, epochs=recipe.epochs, batch_size=recipe.batch_size, seed=seed,
                on_epoch_end=write, verbose=verbose)
    return trainer
