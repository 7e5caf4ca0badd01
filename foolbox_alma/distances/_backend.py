"""The framework primitives the perceptual distances need and EagerPy lacks.

This is the only framework-specific code among the distances: trigonometry (``sin``, ``cos``,
``atan2``), ``relu``, constants created outside any trace, the 2-d convolution and max-pooling of
LPIPS, and compilation for JAX, each dispatched on the backend of an EagerPy tensor
(PyTorch, TensorFlow, JAX; NumPy without gradients). Convolutions take images in the backend's
preferred layout (:func:`channels_last`): channels-first (N, C, H, W) for PyTorch and NumPy,
channels-last (N, H, W, C) for TensorFlow (whose CPU kernels support no other) and JAX.
"""

from typing import Any, Callable, Hashable, Tuple

import eagerpy as ep
import numpy as np

from .._dispatch import framework_name


def _wrap(like: ep.Tensor, raw: Any) -> ep.Tensor:
    return type(like)(raw)


def sin(x: ep.Tensor) -> ep.Tensor:
    """Elementwise sine."""
    return _wrap(x, _module(x).sin(x.raw))


def cos(x: ep.Tensor) -> ep.Tensor:
    """Elementwise cosine."""
    return _wrap(x, _module(x).cos(x.raw))


def relu(x: ep.Tensor) -> ep.Tensor:
    """max(x, 0), with the frameworks' own ReLU (gradient 0 at 0)."""
    name = framework_name(x)
    if name == "pytorch":
        import torch

        return _wrap(x, torch.relu(x.raw))
    if name == "tensorflow":
        import tensorflow as tf

        return _wrap(x, tf.nn.relu(x.raw))
    if name == "jax":
        import jax

        return _wrap(x, jax.nn.relu(x.raw))
    return _wrap(x, np.maximum(x.raw, 0))


def atan2(y: ep.Tensor, x: ep.Tensor) -> ep.Tensor:
    """Elementwise angle of the point (x, y), in (-pi, pi]. Its gradient at (0, 0) is not finite:
    callers mask that point."""
    name = framework_name(y)
    if name == "pytorch":
        import torch

        return _wrap(y, torch.atan2(y.raw, x.raw))
    if name == "tensorflow":
        import tensorflow as tf

        return _wrap(y, tf.math.atan2(y.raw, x.raw))
    return _wrap(y, _module(y).arctan2(y.raw, x.raw))


def _module(x: ep.Tensor) -> Any:
    name = framework_name(x)
    if name == "pytorch":
        import torch

        return torch
    if name == "tensorflow":
        import tensorflow as tf

        return tf.math
    if name == "jax":
        import jax.numpy as jnp

        return jnp
    return np


def cache_key(x: ep.Tensor) -> Hashable:
    """What constants made for ``x`` depend on: framework, dtype and (PyTorch) device."""
    name = framework_name(x)
    device = str(x.raw.device) if name == "pytorch" else ""
    return name, str(x.dtype), device


def constant(like: ep.Tensor, value: np.ndarray) -> ep.Tensor:
    """``value`` as a tensor of ``like``'s framework, dtype and device, created eagerly even while a
    ``tf.function`` or ``jax.jit`` trace is running (so it can be cached and reused)."""
    name = framework_name(like)
    if name == "pytorch":
        import torch

        return _wrap(like, torch.as_tensor(value, dtype=like.raw.dtype, device=like.raw.device))
    if name == "tensorflow":
        import tensorflow as tf

        with tf.init_scope():
            return _wrap(like, tf.constant(value, dtype=like.raw.dtype))
    if name == "jax":
        import jax
        import jax.numpy as jnp

        with jax.ensure_compile_time_eval():
            return _wrap(like, jnp.asarray(value, dtype=like.raw.dtype))
    return _wrap(like, np.asarray(value, dtype=like.raw.dtype))


def channels_last(x: ep.Tensor) -> bool:
    """Whether :func:`conv2d` and :func:`max_pool2d` take (N, H, W, C) images for ``x``'s backend
    (TensorFlow, JAX) rather than (N, C, H, W) (PyTorch, NumPy)."""
    return framework_name(x) in ("tensorflow", "jax")


def conv_kernel(like: ep.Tensor, weight_oihw: np.ndarray) -> ep.Tensor:
    """A convolution kernel given in PyTorch's (out, in, height, width) layout, as :func:`conv2d`
    takes it for ``like``'s backend (height, width, in, out where channels come last)."""
    if channels_last(like):
        weight_oihw = np.transpose(weight_oihw, (2, 3, 1, 0))  # HWIO
    return constant(like, np.ascontiguousarray(weight_oihw))


def conv2d(
    x: ep.Tensor, kernel: ep.Tensor, stride: int = 1, padding: Tuple[int, int] = (0, 0)
) -> ep.Tensor:
    """Cross-correlation of ``x`` (preferred layout) with ``kernel`` (from :func:`conv_kernel`),
    with zero ``padding`` (rows, columns) on both sides, as ``torch.nn.functional.conv2d``."""
    name = framework_name(x)
    ph, pw = padding
    if name == "pytorch":
        import torch

        return _wrap(x, torch.nn.functional.conv2d(x.raw, kernel.raw, None, stride, (ph, pw)))
    if name == "numpy":
        return _wrap(x, _numpy_conv2d(x.raw, kernel.raw, stride, ph, pw))
    _, height, width, _ = x.shape
    kh, kw = kernel.shape[:2]
    out_h, out_w = (height + 2 * ph - kh) // stride + 1, (width + 2 * pw - kw) // stride + 1
    if stride == 1 and out_h * out_w <= kh * kw:
        return _patches_conv2d(x, kernel, stride, ph, pw, out_h, out_w)
    if name == "tensorflow":
        import tensorflow as tf

        pads = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
        return _wrap(x, tf.nn.conv2d(x.raw, kernel.raw, stride, pads if ph or pw else "VALID"))
    from jax import lax

    out = lax.conv_general_dilated(
        x.raw, kernel.raw, (stride, stride), [(ph, ph), (pw, pw)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # fmt: skip
    return _wrap(x, out)


def _patches_conv2d(
    x: ep.Tensor, kernel: ep.Tensor, stride: int, ph: int, pw: int, out_h: int, out_w: int
) -> ep.Tensor:
    """Convolution of (N, H, W, C) images as one matrix product with their patches.

    For unstrided convolutions whose output is no larger than the kernel (mostly padding:
    AlexNet's deeper layers on CIFAR-sized images), XLA's CPU convolutions and TensorFlow's
    gradients of convolutions are several times slower than this.
    """
    kh, kw, channels, out = kernel.shape
    padded = ep.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    patches = ep.stack(
        [
            padded[:, i : i + span_h : stride, j : j + span_w : stride, :]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=3,
    )  # N, H', W', kh * kw, C: the order of the HWIO kernel's rows
    rows = patches.reshape((-1, kh * kw * channels))
    return rows.matmul(kernel.reshape((kh * kw * channels, out))).reshape((-1, out_h, out_w, out))


def max_pool2d(x: ep.Tensor, size: int, stride: int) -> ep.Tensor:
    """Max-pooling without padding (``torch.nn.functional.max_pool2d``, floor mode)."""
    name = framework_name(x)
    if name == "pytorch":
        import torch

        return _wrap(x, torch.nn.functional.max_pool2d(x.raw, size, stride))
    if name == "tensorflow":
        import tensorflow as tf

        return _wrap(x, tf.nn.max_pool2d(x.raw, size, stride, "VALID"))
    if name == "jax":
        import jax.numpy as jnp
        from jax import lax

        out = lax.reduce_window(
            x.raw, -jnp.inf, lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID"
        )
        return _wrap(x, out)
    windows = _windows(x.raw, size, size, stride)  # N, C, H', W', size, size
    return _wrap(x, windows.max(axis=(-2, -1)))


def _windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return view[:, :, ::stride, ::stride]


def _numpy_conv2d(x: np.ndarray, w: np.ndarray, stride: int, ph: int, pw: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = _windows(x, w.shape[2], w.shape[3], stride)  # N, I, H', W', kh, kw
    return np.einsum("nihwkl,oikl->nohw", windows, w)


def compiled(
    fn: Callable[[ep.Tensor, ep.Tensor], ep.Tensor],
) -> Callable[[ep.Tensor, ep.Tensor], ep.Tensor]:
    """``fn`` for any backend, compiled with ``jax.jit`` on JAX tensors and ``tf.function`` on
    eager TensorFlow tensors; other backends call ``fn`` directly.

    Eager JAX compiles every primitive separately on first use (about 50 ms each on a small CPU,
    seconds for a distance's forward and backward passes), and eager TensorFlow dispatches each of
    the dozens of small operations of a perceptual distance on its own (the learning-rate finder
    of ALMA's first step evaluates the distance tens of times, eagerly): one compilation of the
    whole function is several times faster. Inside an outer trace (``jax.jit``, ``jax.grad``,
    ``tf.function``) the function is simply inlined.
    """
    jitted: Any = None
    traced: Any = None

    def call(a: ep.Tensor, b: ep.Tensor) -> ep.Tensor:
        nonlocal jitted, traced
        if isinstance(a, ep.JAXTensor):
            if jitted is None:
                import jax

                jitted = jax.jit(lambda x, y: fn(ep.astensor(x), ep.astensor(y)).raw)
            return ep.astensor(jitted(a.raw, b.raw))
        if isinstance(a, ep.TensorFlowTensor):
            import tensorflow as tf

            if tf.executing_eagerly():
                if traced is None:
                    # one trace per input shape: the distances use static shapes
                    traced = tf.function(
                        lambda x, y: fn(ep.astensor(x), ep.astensor(y)).raw, autograph=False
                    )
                return ep.astensor(traced(a.raw, b.raw))
        return fn(a, b)

    return call
