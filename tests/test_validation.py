"""minidl.functional.validation: every validator accepts the good forms, normalises them, and
rejects bad inputs with a message that names the op and the value."""
from __future__ import annotations

import re

import numpy as np
import pytest

import minidl as md
from minidl.functional.validation import (
    check_floating,
    check_groups,
    check_ndim,
    check_probability,
    conv_padding,
    positive_int,
    to_pair,
)


@pytest.mark.parametrize("value,expected", [
    (3, (3, 3)), (np.int64(2), (2, 2)), ((1, 2), (1, 2)), ([4, 5], (4, 5)),
    (np.array([2, 3]), (2, 3)), ((np.int32(1), 7), (1, 7)),
])
def test_to_pair_accepts_ints_and_pairs(value, expected):
    out = to_pair(value, "kernel_size", "conv2d")
    assert out == expected and all(type(v) is int for v in out)


@pytest.mark.parametrize("value,shown", [
    (0, "(0, 0)"), ((0, 1), "(0, 1)"), ((2, -1), "(2, -1)"), (2.5, "2.5"), ((1, 2.0), "(1, 2.0)"),
    ((1, 2, 3), "(1, 2, 3)"), ((1,), "(1,)"), ("3", "'3'"), (None, "None"), (True, "True"),
    ((True, 1), "(True, 1)"),
])
def test_to_pair_rejects_bad_values_naming_op_and_value(value, shown):
    with pytest.raises(ValueError, match="^" + re.escape(
            f"conv2d: stride must be a positive int or pair, got {shown}") + "$"):
        to_pair(value, "stride", "conv2d")


def test_to_pair_allow_zero_is_for_paddings():
    assert to_pair(0, "padding", "max_pool2d", allow_zero=True) == (0, 0)
    with pytest.raises(ValueError, match=re.escape(
            "max_pool2d: padding must be a non-negative int or pair, got (0, -1)")):
        to_pair((0, -1), "padding", "max_pool2d", allow_zero=True)


def test_positive_int():
    assert positive_int(np.int16(4), "groups", "conv2d") == 4
    assert positive_int(0, "size", "op", allow_zero=True) == 0
    for bad in (0, -1, 1.0, "1", None, True):
        with pytest.raises(ValueError, match=re.escape(
                f"conv2d: groups must be a positive int, got {bad!r}")):
            positive_int(bad, "groups", "conv2d")
    with pytest.raises(ValueError, match="op: size must be a non-negative int, got -1"):
        positive_int(-1, "size", "op", allow_zero=True)


def test_conv_padding():
    assert conv_padding(1, (2, 2), "conv2d") == (1, 1)
    assert conv_padding((0, 2), (1, 1), "conv2d") == (0, 2)
    assert conv_padding("same", (1, 1), "conv2d") == "same"
    assert conv_padding("valid", (3, 1), "conv2d") == "valid"
    with pytest.raises(ValueError, match=re.escape(
            "Conv2d: padding='same' needs stride 1, got stride (1, 2)")):
        conv_padding("same", (1, 2), "Conv2d")
    with pytest.raises(ValueError, match=re.escape(
            "conv2d: padding must be an int, a pair, 'same' or 'valid', got 'SAME'")):
        conv_padding("SAME", (1, 1), "conv2d")
    with pytest.raises(ValueError, match=re.escape(
            "conv2d: padding must be a non-negative int or pair, got (-1, -1)")):
        conv_padding(-1, (1, 1), "conv2d")


def test_check_groups():
    assert check_groups(np.int64(2), 4, 6, "Conv2d") == 2
    with pytest.raises(ValueError, match=re.escape(
            "Conv2d: in_channels (3) and out_channels (6) must be divisible by groups (2)")):
        check_groups(2, 3, 6, "Conv2d")
    with pytest.raises(ValueError, match=re.escape(
            "conv2d: input channels (4) and output channels (5) must be divisible by groups "
            "(2); input shape (1, 4, 3, 3)")):
        check_groups(2, 4, 5, "conv2d", ("input channels", "output channels"),
                     "; input shape (1, 4, 3, 3)")
    with pytest.raises(ValueError, match=re.escape("conv2d: groups must be a positive int, "
                                                   "got 1.5")):
        check_groups(1.5, 3, 3, "conv2d")


def test_check_probability():
    assert check_probability(0, "p", "Dropout") == 0.0
    assert check_probability(np.float32(0.25), "p", "Dropout") == 0.25
    assert check_probability(1, "p", "Dropout") == 1.0
    for bad in (-0.1, 1.5, float("nan"), "0.5", None, True):
        with pytest.raises(ValueError, match=re.escape(
                f"Dropout: p must be in [0, 1], got {bad!r}")):
            check_probability(bad, "p", "Dropout")


def test_check_ndim_names_the_layout_and_shape():
    check_ndim(np.zeros((1, 2, 3, 4)), 4, "input", "max_pool2d", "(N, C, H, W)")
    with pytest.raises(ValueError, match=re.escape(
            "max_pool2d: expected a 4-D input (N, C, H, W), got shape (2, 3)")):
        check_ndim(md.zeros(2, 3), 4, "input", "max_pool2d", "(N, C, H, W)")


def test_check_floating():
    check_floating(md.zeros(2), "input", "conv2d")
    check_floating(np.zeros(2, np.float64), "input", "conv2d")
    for dtype in (np.int64, np.uint8, np.bool_):
        with pytest.raises(TypeError, match=re.escape(
                f"conv2d: weight must be a floating-point tensor, got dtype "
                f"{np.dtype(dtype)} (shape (2, 1))")):
            check_floating(np.zeros((2, 1), dtype), "weight", "conv2d")
