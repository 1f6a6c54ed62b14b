"""Telling what went wrong in a training step: NaN in the data or a diverging loss, and
which layer ran out of memory."""
from __future__ import annotations

import math
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module, to_numpy
from .step import NonFiniteLossError

__all__ = ["inputs_finite", "nonfinite_location", "nonfinite_error", "memory_error"]


def _float_arrays(inputs: Sequence[Any], target: Any) -> list[tuple[str, Any]]:
    """(label, backend array) of every floating model input and target of a batch."""
    fields = [(f"input {i}" if len(inputs) > 1 else "input", x) for i, x in enumerate(inputs)]
    targets = target if isinstance(target, (tuple, list)) else (target,)
    fields += [(f"target {i}" if len(targets) > 1 else "target", t)
               for i, t in enumerate(targets)]
    out = []
    for label, x in fields:
        arr = x.data if isinstance(x, Tensor) else x
        if hasattr(arr, "dtype") and np.dtype(arr.dtype).kind == "f":
            out.append((label, arr))
    return out


def inputs_finite(inputs: Sequence[Any], target: Any) -> Any:
    """A 0-d device bool: are all floating inputs and targets of the batch finite? (None
    when there are none). Computed on the device, read only when the loss is not finite."""
    arrays = [a for _, a in _float_arrays(inputs, target)]
    if not arrays:
        return None
    xp = get_array_module(*arrays)
    flags = [xp.isfinite(a).all() for a in arrays]
    return flags[0] if len(flags) == 1 else xp.stack(flags).all()


def nonfinite_location(inputs: Sequence[Any], target: Any) -> str | None:
    """Where the first NaN/Inf of the batch is: ``"NaN in input, sample 5 at index (0, 2,
    7)"``; None when the batch is finite."""
    for label, arr in _float_arrays(inputs, target):
        host = to_numpy(arr)
        bad = ~np.isfinite(host)
        if bad.any():
            where = np.unravel_index(int(np.flatnonzero(bad)[0]), host.shape)
            kind = "NaN" if math.isnan(float(host[where])) else "Inf"
            count = int(bad.sum())
            sample = f"sample {where[0]}" if host.ndim > 0 else "the value"
            rest = f" at index {tuple(int(i) for i in where[1:])}" if host.ndim > 1 else ""
            return (f"{kind} in the {label}, {sample} of the batch{rest} ({count} non-finite "
                    f"value{'s' if count > 1 else ''} in this batch)")
    return None


def nonfinite_error(value: float | None, where: str, kind: str, data_problem: str | None,
                    last_saved: tuple[str, int] | None, epoch: int,
                    step: int) -> NonFiniteLossError:
    """The error for a NaN/Inf loss at ``where`` in a ``kind`` pass ('training',
    'validation', 'evaluation'): it blames the data when the batch was not finite
    (``data_problem`` says where; checked first), the training (learning rate, clipping)
    otherwise, pointing at ``last_saved`` = (path, epoch), the last good checkpoint."""
    if data_problem is not None:
        batch = "input" if kind == "training" else kind
        msg = (f"the {batch} batch contains NaN at {where} ({data_problem}), so the loss "
               f"is {value}: the data is at fault, not the training; clean it (e.g. "
               f"np.nan_to_num) or drop those samples")
        return NonFiniteLossError(msg, epoch=epoch, step=step, value=value, cause="data")
    if kind == "training":
        msg = f"training loss became {value} at {where}; training stopped."
    else:
        msg = f"{kind} loss became {value} at {where} although the batch is finite."
    if last_saved is not None:
        path, ep = last_saved
        msg += (f" The last good checkpoint is {path} (epoch {ep}); resume from it with "
                f"a lower learning rate or gradient clipping.")
    else:
        msg += " Try a lower learning rate or gradient clipping."
    return NonFiniteLossError(msg, epoch=epoch, step=step, value=value)


def _culprit(exc: BaseException, model: Any) -> str | None:
    """The innermost layer (a Module of ``model``, by its name) or Function on the
    traceback of ``exc``: the one that asked for the memory."""
    names = {id(m): n for n, m in model.named_modules()} if hasattr(model,
                                                                     "named_modules") else {}
    found, in_backward = None, False
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        # the engine's call of a Function's backward: what follows runs in backward
        in_backward = in_backward or frame.f_code.co_name == "_call_backward"
        owner = frame.f_locals.get("self")
        if owner is None:
            continue
        if id(owner) in names:
            name = names[id(owner)] or "the model"
            found = f"layer {name} ({type(owner).__name__})"
        elif isinstance(owner, Function):
            found = (f"the backward of {type(owner).__name__}" if in_backward
                     else f"op {type(owner).__name__}")
    return found


def memory_error(exc: MemoryError, model: Any, inputs: Sequence[Any], where: str,
                 batch_size: int | None) -> MemoryError:
    """A MemoryError that names the layer that ran out, the batch and the remedy."""
    shapes = ", ".join(str(tuple(x.shape)) for x in inputs if hasattr(x, "shape"))
    culprit = _culprit(exc, model) or "the model"
    smaller = f" (e.g. {max(1, batch_size // 2)} instead of {batch_size})" if batch_size else ""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
    # a plain MemoryError: CuPy's OutOfMemoryError (a subclass) takes other arguments
    return MemoryError(f"{where}: out of memory in {culprit} for a batch of input shape "
                       f"{shapes} ({detail}); use a smaller batch size{smaller}, a smaller "
                       f"input, or free other arrays first")
