"""Lab ``gan``: a DCGAN on the bundled digits, judged by a LeNet-5 rather than by eye.

A LeNet-5 trained on the 4,000 bundled training digits and 4,000 non-digits made from them
(noise, blobs, overlaid digits, shuffled patches: an 11th class; cached) classifies a fixed
set of generated samples after every epoch. A sample counts as digit-like when the judge gives
one class a probability above 0.9; the lab reports that share, how many of the ten digits
appear among the digit-like samples (a collapsed generator makes few), the losses of both
players over the steps, and sample grids titled with their epoch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import no_grad, tensor
from ...backend import manual_seed
from ...data import mnist_subset, standardize_mnist
from ...factories import randn
from ...io import CheckpointError, load, save
from ...models.gan import GANRecipe, gan_trainer
from ...models.lenet import lenet5
from ...optim import Adam
from ...train import model_accuracy
from ..plots import new_figure, save_figure, smooth
from ..result import FlowResult
from .common import digits, fit

__all__ = ["gan", "judge_samples", "non_digits"]

CONFIDENT = 0.9
NOT_A_DIGIT = 10  # the judge's 11th class
_JUDGE_VERSION = 1


def gan(quick: bool = False, seed: int = 0, cache_dir: str | Path | None = None,
        recipe: GANRecipe | None = None, epochs: int | None = None,
        n_judged: int | None = None) -> FlowResult:
    """Train ``recipe`` (default :class:`minidl.models.gan.GANRecipe`) for ``epochs`` on the
    5,000 bundled digits and judge ``n_judged`` samples from fixed noise after each epoch.

    Rows: one per epoch with the steps so far, the mean losses and D outputs of the epoch,
    the share of samples the judge classifies with confidence > 0.9, how many of the ten
    digits those cover (a digit counts when at least 1 % of the samples are confidently
    that digit) and the judge's mean top probability.
    """
    recipe = recipe or GANRecipe()
    epochs = epochs or (2 if quick else recipe.epochs)
    n_judged = n_judged or (64 if quick else 500)
    x = np.concatenate([mnist_subset("train")[0], mnist_subset("test")[0]])
    images = x.astype(np.float32) / 127.5 - 1.0
    if quick:
        images = images[:640]
    judge, judge_acc = _judge(seed, cache_dir, quick)
    manual_seed(seed)
    trainer = gan_trainer(recipe)
    fixed_z = randn(n_judged, recipe.z_dim)
    rows: list[dict[str, Any]] = []
    grids: dict[int, np.ndarray] = {}

    def after_epoch(epoch: int, tr: Any) -> None:
        samples = tr.sample(n_judged, fixed_z).numpy()
        verdict = judge_samples(judge, samples)
        last = tr.history[-steps_per_epoch:]
        rows.append({"epoch": epoch + 1, "steps": len(tr.history),
                     "loss_d": float(np.mean([h["loss_d"] for h in last])),
                     "loss_g": float(np.mean([h["loss_g"] for h in last])),
                     "D(x)": float(np.mean([h["d_real"] for h in last])),
                     "D(G(z))": float(np.mean([h["d_fake"] for h in last])),
                     "confident share": verdict["confident"],
                     "digits present": verdict["digits"],
                     "mean top prob": verdict["mean_top"]})
        grids[epoch + 1] = samples[:64]

    steps_per_epoch = len(images) // recipe.batch_size
    trainer.fit(images, epochs=epochs, batch_size=recipe.batch_size, seed=seed,
                on_epoch_end=after_epoch, verbose=False)
    final = judge_samples(judge, trainer.sample(n_judged, fixed_z).numpy())
    real = judge_samples(judge, mnist_subset("test")[0] / 127.5 - 1.0)
    notes = _notes(rows, recipe, judge_acc, n_judged, final["counts"], real)
    return FlowResult("gan", rows, list(rows[0]), notes,
                      {"history": trainer.history, "grids": grids, "counts": final["counts"],
                       "recipe": recipe}, _plot_gan)


def judge_samples(judge: Any, samples: np.ndarray) -> dict[str, Any]:
    """Classify (N, 1, 28, 28) samples in [-1, 1] with ``judge`` (a classifier of
    standardised digits whose 11th class is "not a digit"). Returns the share given one
    digit a probability > 0.9 (``confident``),
    the number of digits that are at least 1 % of the samples confidently (``digits``),
    the mean top digit probability and the per-digit counts of the confident samples."""
    x = standardize_mnist((np.clip(samples, -1, 1) + 1) * 127.5)
    judge.eval()
    with no_grad():
        probs = F.softmax(judge(tensor(x)), axis=1).numpy()
    top, label = probs[:, :NOT_A_DIGIT].max(axis=1), probs[:, :NOT_A_DIGIT].argmax(axis=1)
    sure = top > CONFIDENT
    counts = np.bincount(label[sure], minlength=10)
    return {"confident": float(sure.mean()), "digits": int((counts >= 0.01 * len(x)).sum()),
            "mean_top": float(top.mean()), "counts": counts.tolist()}


def _judge(seed: int, cache_dir: str | Path | None, quick: bool) -> tuple[Any, float]:
    """A LeNet-5 with an 11th class, "not a digit", trained (Adam 1e-3, batch 32) on the
    bundled training digits and as many non-digits made from them (:func:`non_digits`),
    read from ``cache_dir`` when a matching file is there. Returns it and its accuracy on
    the 1,000 test digits. A 10-class judge is gullible: it calls grey noise a confident 8."""
    epochs = 1 if quick else 6
    meta = {"version": _JUDGE_VERSION, "epochs": epochs, "seed": seed}
    path = (Path(cache_dir) / f"lab-gan-judge-s{seed}-e{epochs}.npz"
            if cache_dir is not None else None)
    model = lenet5(num_classes=11)
    if path is not None and path.exists():
        try:
            saved = load(path)
            if saved["meta"] == meta:
                model.load_state_dict(saved["state"])
                return model, float(saved["accuracy"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            pass  # a corrupt or foreign cache: retrain and overwrite it
    manual_seed(seed)
    model = lenet5(num_classes=11)
    raw, y = mnist_subset("train")
    others = non_digits(raw, np.random.default_rng(seed))
    x = standardize_mnist(np.concatenate([raw, others])).reshape(-1, 1, 28, 28)
    y = np.concatenate([y, np.full(len(others), NOT_A_DIGIT)]).astype(np.int64)
    fit(model, Adam(model.parameters(), lr=1e-3), x, y, epochs, batch_size=32, seed=seed)
    accuracy = model_accuracy(model, *digits("test"))
    if path is not None:
        save({"meta": meta, "accuracy": accuracy,
              "state": {k: v.numpy().copy() for k, v in model.state_dict().items()}}, path)
    return model, accuracy


def non_digits(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many uint8 non-digits as ``images`` (N, 28, 28) or (N, 1, 28, 28), same shape, a
    quarter each of: noise over a grey level (an untrained generator), blurred digits, two
    digits of the training set overlaid, and digits cut in 7x7 patches and shuffled
    (strokes without a digit's shape, what a half-trained generator draws)."""
    x = images.reshape(-1, 28, 28).astype(np.float32)
    n, q = len(x), len(x) // 4
    pick = rng.permutation(n)
    noise = np.clip(rng.uniform(0, 160, (q, 1, 1)) + rng.normal(0, 60, (q, 28, 28)), 0, 255)
    blur = x[pick[:q]]
    for _ in range(3):  # a 5x5 box blur, three times: a blob where the digit was
        pad = np.pad(blur, ((0, 0), (2, 2), (2, 2)))
        blur = sum(pad[:, i:i + 28, j:j + 28] for i in range(5) for j in range(5)) / 25
    blur *= 255 / np.maximum(blur.max(axis=(1, 2), keepdims=True), 1)
    overlay = np.maximum(x[pick[q:2 * q]], x[rng.permutation(n)[:q]])
    rest = n - 3 * q
    patches = x[pick[2 * q:2 * q + rest]].reshape(rest, 4, 7, 4, 7).transpose(0, 1, 3, 2, 4)
    patches = patches.reshape(rest, 16, 7, 7)
    order = np.argsort(rng.random((rest, 16)), axis=1)
    shuffled = np.take_along_axis(patches, order[:, :, None, None], axis=1)
    shuffled = shuffled.reshape(rest, 4, 4, 7, 7).transpose(0, 1, 3, 2, 4).reshape(rest, 28, 28)
    out = np.concatenate([noise, blur, overlay, shuffled])
    return out.round().clip(0, 255).astype(np.uint8).reshape(images.shape)


def _notes(rows: list[dict[str, Any]], recipe: GANRecipe, judge_acc: float, n: int,
           counts: list[int], real: dict[str, Any]) -> list[str]:
    last = rows[-1]
    best = max(rows, key=lambda r: r["confident share"])
    missing = [d for d in range(10) if counts[d] < 0.01 * n]
    return [f"Recipe: {recipe.describe()}; {last['steps']} steps in {last['epoch']} epochs. "
            f"Judge: LeNet-5 with a not-a-digit class, {judge_acc:.1%} on the 1,000 bundled "
            f"test digits; {n} samples "
            "from fixed noise judged after each epoch. The judge is strict: on the real test "
            f"digits it reaches confidence > {CONFIDENT} for {real['confident']:.0%}, covering "
            f"{real['digits']} digits, the ceiling of the 'confident share' column.",
            f"After the last epoch {last['confident share']:.0%} of the samples are classified "
            f"with confidence > {CONFIDENT} (best {best['confident share']:.0%} at epoch "
            f"{best['epoch']}), covering {last['digits present']} of the ten digits"
            + (f" (missing or rarer than 1 %: {', '.join(map(str, missing))})" if missing
               else "") + ". Confident samples per digit 0-9: "
            + " ".join(str(c) for c in counts) + "."]


def _plot_gan(result: FlowResult, path: Path) -> Path:
    grids, rows = result.data["grids"], result.rows
    epochs = sorted(grids)
    shown = sorted({epochs[0], epochs[len(epochs) // 2], epochs[-1]})
    fig, axes = new_figure(ncols=3, nrows=2, size=(4.0, 3.8))
    by_epoch = {r["epoch"]: r for r in rows}
    for ax, e in zip(axes[:3], shown):
        ax.imshow(_tile(grids[e]), cmap="gray", vmin=-1, vmax=1)
        r = by_epoch[e]
        ax.set_title(f"epoch {e} (step {r['steps']}): {r['confident share']:.0%} confident, "
                     f"{r['digits present']} digits", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("64 samples from fixed noise", fontsize=8)
    for ax in axes[len(shown):3]:
        ax.set_visible(False)
    hist = result.data["history"]
    ax = axes[3]
    for key, label, color in (("loss_d", "discriminator loss", "C0"),
                              ("loss_g", "generator loss", "C1")):
        values = smooth([h[key] for h in hist], 20)
        ax.plot(np.arange(len(values)) + 1, values, label=label, color=color)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (moving average of 20)")
    ax.set_title("losses over steps", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[4]
    ep = [r["epoch"] for r in rows]
    ax.plot(ep, [r["confident share"] for r in rows], marker="o", color="C2",
            label=f"share with judge confidence > {CONFIDENT}")
    ax.plot(ep, [r["digits present"] / 10 for r in rows], marker="s", color="C3",
            linestyle="--", label="digits present / 10")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel("share")
    ax.set_title("the LeNet-5 judge, per epoch", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[5]
    ax.bar(range(10), result.data["counts"], color="C4", label="confident samples")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit (judge's class)")
    ax.set_ylabel("samples")
    ax.set_title(f"after epoch {epochs[-1]}: confident samples per digit", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle("DCGAN on the bundled digits, judged by a LeNet-5", fontsize=11)
    return save_figure(fig, path)


def _tile(images: np.ndarray, nrow: int = 8) -> np.ndarray:
    """(N, 1, H, W) -> one (rows*H, nrow*W) image, N padded to a multiple of ``nrow``."""
    n, _, h, w = images.shape
    rows = -(-n // nrow)
    padded = np.full((rows * nrow, h, w), -1.0, dtype=np.float32)
    padded[:n] = images[:, 0]
    return padded.reshape(rows, nrow, h, w).transpose(0, 2, 1, 3).reshape(rows * h, nrow * w)
