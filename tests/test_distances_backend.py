"""The framework dispatch of the distances (``_backend``) on each backend. Oracle: loops in NumPy."""

import sys

import numpy as np
import pytest
from helpers import float64, to_tensor

import foolbox_alma.distances  # noqa: F401  (the module below, not the object)

backend = sys.modules["foolbox_alma.distances._backend"]


def reference_conv2d(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation, (N, C, H, W) images and (O, C, kh, kw) kernels, by loops."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h = (x.shape[2] - w.shape[2]) // stride + 1
    out_w = (x.shape[3] - w.shape[3]) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = x[
                :, :, i * stride : i * stride + w.shape[2], j * stride : j * stride + w.shape[3]
            ]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", window, w)
    return out


@pytest.mark.parametrize(
    "size, kernel, stride, pad",
    [(9, 3, 1, 1), (3, 5, 1, 2), (1, 3, 1, 1), (15, 11, 4, 2), (12, 3, 2, 0)],
    ids=["native", "patches-5x5", "patches-1x1", "strided-11x11", "strided-3x3"],
)
def test_conv2d(fw, size, kernel, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, size, size + 1))
    w = rng.normal(size=(5, 4, kernel, kernel))
    expected = reference_conv2d(x, w, stride, pad)
    with float64(fw.name):
        t = to_tensor(fw.name, x)
        last = backend.channels_last(t)
        if last:
            t = t.transpose((0, 2, 3, 1))
        got = backend.conv2d(t, backend.conv_kernel(t, w), stride, (pad, pad)).numpy()
    if last:
        got = got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_max_pool_relu_and_trigonometry(fw):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 7, 8))
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    expected = windows.max(axis=(-2, -1))
    with float64(fw.name):
        t = to_tensor(fw.name, x)
        last = backend.channels_last(t)
        pooled = backend.max_pool2d(t.transpose((0, 2, 3, 1)) if last else t, 3, 2).numpy()
        relu = backend.relu(t).numpy()
        sin, cos = backend.sin(t).numpy(), backend.cos(t).numpy()
        angle = backend.atan2(t, to_tensor(fw.name, x[::-1].copy())).numpy()
    np.testing.assert_allclose(pooled.transpose(0, 3, 1, 2) if last else pooled, expected)
    np.testing.assert_allclose(relu, np.maximum(x, 0))
    np.testing.assert_allclose(sin, np.sin(x), rtol=1e-12)
    np.testing.assert_allclose(cos, np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(angle, np.arctan2(x, x[::-1]), rtol=1e-12)


def test_constants_follow_dtype(fw):
    with float64(fw.name):
        for dtype in ("float32", "float64"):
            like = to_tensor(fw.name, np.zeros(2, dtype=dtype))
            assert backend.constant(like, np.ones(3)).dtype == like.dtype
            assert backend.cache_key(like)[1] == str(like.dtype)
