"""2-D convolution and transposed convolution (im2col + GEMM, see docs/convolution.md).

Three Functions share the work, each the gradient of the others, so that gradients of any
order come out of the same three kernels:

* ``Conv2d``           y  = conv(x, w) + b
* ``Conv2dGradInput``  gx = conv_transpose(gy, w)       (also the forward of conv_transpose2d)
* ``Conv2dGradWeight`` gw = correlate(x, gy)

Each computes only the gradients that are asked for: no input gradient for a first layer,
no weight gradient (no GEMM at all) for a frozen one.
"""
from __future__ import annotations

from typing import Any

from .. import kernels
from ..autograd import Function, Tensor
from ..kernels import Pads
from .validation import (
    IntOrPair,
    Pair,
    check_floating,
    check_groups,
    check_ndim,
    conv_padding,
    positive_int,
    to_pair,
)


def _conv_pads(padding: Any, kernel: Pair, stride: Pair, dilation: Pair, op: str) -> Pads:
    """padding int / pair / 'valid' / 'same' -> (top, bottom, left, right)."""
    padding = conv_padding(padding, stride, op)
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        # like torch: any odd total goes to the bottom/right
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = padding
    return (ph, ph, pw, pw)


class Conv2d(Function):
    """y = conv(x, w) + b: x (N, C, H, W), w (K, C/groups, kh, kw), b (K,) -> (N, K, Ho, Wo)."""

    def __init__(self, stride: Pair, pads: Pads, dilation: Pair, groups: int) -> None:
        self.stride, self.pads, self.dilation, self.groups = stride, pads, dilation, groups

    def forward(self, x, w, b=None):
        # backward needs w only for dx and x only for dw: keep no more than that
        need = self.needs_input_grad
        self.keep_inputs = tuple(i for i, n in ((1, need[0]), (0, need[1])) if n)
        return kernels.conv2d_forward(x, w, b, self.stride, self.pads, self.dilation,
                                      self.groups)

    def backward(self, gy):
        need = self.needs_input_grad
        x, w = getattr(self, "inputs", (None, None, None))[:2]
        args = (self.stride, self.pads, self.dilation, self.groups)
        gx = Conv2dGradInput(tuple(self.input_shapes[0][2:]), *args)(gy, w) if need[0] else None
        gw = (Conv2dGradWeight(tuple(self.input_shapes[1][2:]), *args)(x, gy)
              if need[1] else None)
        if len(need) == 2:
            return gx, gw
        gb = gy.sum(axis=(0, 2, 3)) if need[2] else None
        return gx, gw, gb


class Conv2dGradInput(Function):
    """gx = conv_transpose(gy, w) (+ b): gy (N, K, Ho, Wo), w (K, C/groups, kh, kw)
    -> (N, C, *in_hw). With a bias (K2,) it is the forward of conv_transpose2d."""

    def __init__(self, in_hw: Pair, stride: Pair, pads: Pads, dilation: Pair,
                 groups: int) -> None:
        self.in_hw = in_hw
        self.stride, self.pads, self.dilation, self.groups = stride, pads, dilation, groups

    def forward(self, gy, w, b=None):
        need = self.needs_input_grad
        self.keep_inputs = tuple(i for i, n in ((1, need[0]), (0, need[1])) if n)
        gx = kernels.conv2d_grad_input(gy, w, self.in_hw, self.stride, self.pads,
                                       self.dilation, self.groups)
        if b is not None:
            gx += b.reshape(1, -1, 1, 1)
        return gx

    def backward(self, ggx):
        need = self.needs_input_grad
        gy, w = getattr(self, "inputs", (None, None, None))[:2]
        args = (self.stride, self.pads, self.dilation, self.groups)
        g_gy = Conv2d(*args)(ggx, w) if need[0] else None
        g_w = Conv2dGradWeight(tuple(self.input_shapes[1][2:]), *args)(ggx, gy) \
            if need[1] else None
        if len(need) == 2:
            return g_gy, g_w
        g_b = ggx.sum(axis=(0, 2, 3)) if need[2] else None
        return g_gy, g_w, g_b


class Conv2dGradWeight(Function):
    """gw = correlate(x, gy): x (N, C, H, W), gy (N, K, Ho, Wo) -> (K, C/groups, kh, kw)."""

    def __init__(self, kernel: Pair, stride: Pair, pads: Pads, dilation: Pair,
                 groups: int) -> None:
        self.kernel = kernel
        self.stride, self.pads, self.dilation, self.groups = stride, pads, dilation, groups

    def forward(self, x, gy):
        need = self.needs_input_grad
        self.keep_inputs = tuple(i for i, n in ((1, need[0]), (0, need[1])) if n)
        return kernels.conv2d_grad_weight(x, gy, self.kernel, self.stride, self.pads,
                                          self.dilation, self.groups)

    def backward(self, ggw):
        need = self.needs_input_grad
        x, gy = self.inputs
        args = (self.stride, self.pads, self.dilation, self.groups)
        g_x = Conv2dGradInput(tuple(self.input_shapes[0][2:]), *args)(gy, ggw) \
            if need[0] else None
        g_gy = Conv2d(*args)(x, ggw) if need[1] else None
        return g_x, g_gy


def _check_arrays(op: str, x: Any, w: Any, b: Any, x_layout: str, w_layout: str) -> None:
    """4-D floating-point input and weight, and a floating-point bias if there is one."""
    check_ndim(x, 4, "input", op, x_layout)
    check_ndim(w, 4, "weight", op, w_layout)
    for what, a in (("input", x), ("weight", w), ("bias", b)):
        if a is not None:
            check_floating(a, what, op)


def _check_bias(op: str, b: Any, channels: int, w: Any) -> None:
    if b is not None and tuple(b.shape) != (channels,):
        raise ValueError(f"{op}: bias of shape {tuple(b.shape)} does not match the "
                         f"{channels} output channels of weight {tuple(w.shape)}")


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: IntOrPair = 1,
           padding: IntOrPair | str = 0, dilation: IntOrPair = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    x (N, C, H, W), w (K, C/groups, kh, kw), b (K,) or None -> (N, K, Ho, Wo) with
    ``Ho = (H + pad_top + pad_bottom - dilation*(kh-1) - 1) // stride + 1``.
    ``padding`` is an int, a pair, 'valid' (none) or 'same' (stride 1 only).
    ``groups`` splits channels into independent groups; ``groups == C`` is depthwise.
    """
    op = "conv2d"
    _check_arrays(op, x, w, b, "(N, C, H, W)", "(K, C/groups, kh, kw)")
    stride = to_pair(stride, "stride", op)
    dilation = to_pair(dilation, "dilation", op)
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    groups = check_groups(groups, C, K, op, ("input channels", "output channels"),
                          f"; input shape {tuple(x.shape)}, weight shape {tuple(w.shape)}")
    if C != Cg * groups:
        raise ValueError(f"{op}: input has {C} channels but weight expects {Cg * groups} "
                         f"(weight shape {tuple(w.shape)}, groups={groups}; "
                         f"input shape {tuple(x.shape)})")
    _check_bias(op, b, K, w)
    pads = _conv_pads(padding, (kh, kw), stride, dilation, op)
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    hp, wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    if eh > hp or ew > wp or kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel {(kh, kw)} (extent {(eh, ew)} with dilation "
                         f"{dilation}) is larger than the padded input {(hp, wp)} "
                         f"(input shape {tuple(x.shape)}, padding {pads})")
    fn = Conv2d(stride, pads, dilation, groups)
    return fn(x, w) if b is None else fn(x, w, b)


def conv_transpose2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: IntOrPair = 1,
                     padding: IntOrPair = 0, output_padding: IntOrPair = 0, groups: int = 1,
                     dilation: IntOrPair = 1) -> Tensor:
    """Transposed convolution (the gradient of conv2d w.r.t. its input), as torch's.

    x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw), b (C_out,) or None
    -> (N, C_out, Ho, Wo) with
    ``Ho = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1``;
    ``output_padding`` must be smaller than the stride or the dilation (torch's rule).
    """
    op = "conv_transpose2d"
    _check_arrays(op, x, w, b, "(N, C_in, H, W)", "(C_in, C_out/groups, kh, kw)")
    stride = to_pair(stride, "stride", op)
    dilation = to_pair(dilation, "dilation", op)
    ph, pw = to_pair(padding, "padding", op, allow_zero=True)
    oph, opw = to_pair(output_padding, "output_padding", op, allow_zero=True)
    N, C, H, W = x.shape
    Cin, Cog, kh, kw = w.shape
    groups = positive_int(groups, "groups", op)
    check_groups(groups, C, Cog * groups, op, ("input channels", "output channels"),
                 f"; input shape {tuple(x.shape)}, weight shape {tuple(w.shape)}")
    if C != Cin:
        raise ValueError(f"{op}: input has {C} channels but weight expects {Cin} "
                         f"(weight shape {tuple(w.shape)}; input shape {tuple(x.shape)})")
    if oph >= max(stride[0], dilation[0]) or opw >= max(stride[1], dilation[1]):
        raise ValueError(f"{op}: output_padding {(oph, opw)} must be smaller than the stride "
                         f"{stride} or the dilation {dilation}")
    _check_bias(op, b, Cog * groups, w)
    Ho = (H - 1) * stride[0] - 2 * ph + dilation[0] * (kh - 1) + oph + 1
    Wo = (W - 1) * stride[1] - 2 * pw + dilation[1] * (kw - 1) + opw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{op}: output size {(Ho, Wo)} is not positive (input shape "
                         f"{tuple(x.shape)}, weight {tuple(w.shape)}, padding {(ph, pw)})")
    # The output is the input gradient of the conv with these pads. An output_padding of a
    # stride or more (allowed below the dilation) adds rows that no window of that conv
    # reaches with padding ph at the bottom, so its bottom pad shrinks by whole strides
    # (a negative pad crops): the conv of the output then has exactly H rows again.
    pads = (ph, ph - stride[0] * (oph // stride[0]), pw, pw - stride[1] * (opw // stride[1]))
    fn = Conv2dGradInput((Ho, Wo), stride, pads, dilation, groups)
    return fn(x, w) if b is None else fn(x, w, b)
