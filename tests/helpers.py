"""What the tests share: the three frameworks as fixtures and converters, backend helpers for
EagerPy code, and the oracles several test modules use (closed-form minimal adversarials of linear
classifiers, colour-science's CIEDE2000, scikit-image's SSIM, random AlexNet weights).

Each tox env installs one framework; tests parametrised over ``FRAMEWORKS`` (the ``fw`` fixture of
``conftest.py``) skip the others. ``BACKENDS`` lists the installed ones, for tests that loop over
them (cross-framework comparisons). No test module imports another: what two need is here.
"""

import contextlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import eagerpy as ep
import foolbox as fb
import numpy as np
import pytest

from foolbox_alma.distances.lpips import ALEXNET_SHAPES

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
MODULE = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
"""The module each framework is imported as."""


def available(framework: str) -> bool:
    return importlib.util.find_spec(MODULE[framework]) is not None


class Framework:
    """Conversions and model builders for one framework."""

    def __init__(self, name: str):
        self.name = name

    @contextlib.contextmanager
    def float64(self) -> Iterator[None]:
        """JAX keeps float64 only with ``jax_enable_x64``; switch it on for the block only."""
        if self.name != "jax":
            yield
            return
        import jax

        previous = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            yield
        finally:
            jax.config.update("jax_enable_x64", previous)

    def tensor(self, a: Any) -> Any:
        a = np.asarray(a)
        if self.name == "pytorch":
            import torch

            return torch.from_numpy(a.copy())
        if self.name == "tensorflow":
            import tensorflow as tf

            return tf.constant(a)
        import jax.numpy as jnp

        return jnp.asarray(a)

    @staticmethod
    def numpy(t: Any) -> np.ndarray:
        if hasattr(t, "detach"):
            return t.detach().cpu().numpy()
        return np.asarray(t)

    @property
    def tensor_type(self) -> type:
        if self.name == "pytorch":
            import torch

            return torch.Tensor
        if self.name == "tensorflow":
            import tensorflow as tf

            return type(tf.constant(0.0))
        import jax

        return jax.Array

    def seed(self, seed: int) -> None:
        if self.name == "pytorch":
            import torch

            torch.manual_seed(seed)
        elif self.name == "tensorflow":
            import tensorflow as tf

            tf.random.set_seed(seed)
        else:
            import eagerpy as ep

            ep.JAXTensor.key = None  # eagerpy then starts again from PRNGKey(0)
            import jax

            ep.JAXTensor.key = jax.random.PRNGKey(seed)

    def linear_model(
        self, weight: np.ndarray, bias: np.ndarray, bounds: Tuple[float, float] = (0, 1)
    ) -> fb.Model:
        """``x -> x.reshape(N, -1) @ weight.T + bias`` as a Foolbox model of this framework."""
        dtype = weight.dtype
        if self.name == "pytorch":
            import torch

            class Linear(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.w = torch.nn.Parameter(torch.from_numpy(weight.copy()))
                    self.b = torch.nn.Parameter(torch.from_numpy(bias.copy()))

                def forward(self, x: Any) -> Any:
                    return x.flatten(1) @ self.w.T + self.b

            return fb.PyTorchModel(Linear().eval(), bounds=bounds)
        if self.name == "tensorflow":
            import tensorflow as tf

            w = tf.constant(weight.T)
            b = tf.constant(bias)

            def tf_forward(x: Any) -> Any:
                return tf.reshape(x, (tf.shape(x)[0], -1)) @ w + b

            return fb.TensorFlowModel(tf_forward, bounds=bounds)
        import jax.numpy as jnp

        w, b = jnp.asarray(weight.T, dtype=dtype), jnp.asarray(bias, dtype=dtype)

        import jax

        @jax.jit  # as JAX users write their models
        def jax_forward(x: Any) -> Any:
            return x.reshape((x.shape[0], -1)) @ w + b

        return fb.JAXModel(jax_forward, bounds=bounds)

    def function_model(self, fn: Callable, bounds: Tuple[float, float] = (0, 1)) -> fb.Model:
        """A Foolbox model from a function written with the framework's own ops."""
        if self.name == "pytorch":
            import torch

            class Wrap(torch.nn.Module):
                def forward(self, x: Any) -> Any:
                    return fn(x)

            return fb.PyTorchModel(Wrap().eval(), bounds=bounds)
        if self.name == "tensorflow":
            return fb.TensorFlowModel(fn, bounds=bounds)
        return fb.JAXModel(fn, bounds=bounds)


BACKENDS = tuple(name for name in FRAMEWORKS if available(name))


def to_tensor(framework: str, array: np.ndarray) -> ep.Tensor:
    """``array`` as an EagerPy tensor of ``framework`` (same dtype; JAX keeps float64 only inside
    :func:`float64`)."""
    return ep.astensor(Framework(framework).tensor(array))


def to_numpy(tensor: object) -> np.ndarray:
    """A native or EagerPy tensor as a NumPy array."""
    if isinstance(tensor, ep.Tensor):
        return tensor.numpy()
    return Framework.numpy(tensor)


@contextlib.contextmanager
def float64(framework: str) -> Iterator[None]:
    """Computations in float64 (switches on ``jax_enable_x64`` for JAX, inside the block only)."""
    with Framework(framework).float64():
        yield


def value_and_grad(
    fn: Callable[[ep.Tensor], ep.Tensor], x: ep.Tensor
) -> Tuple[np.ndarray, np.ndarray]:
    """``fn(x)`` (per-sample values) and the gradient of their sum, as NumPy arrays.

    Eager on every backend (JAX compiles each primitive once per shape and dtype and reuses it,
    which is faster over a test session than one ``jax.jit`` compilation per call).
    """
    values = fn(x).numpy()
    _, grad = ep.value_and_grad(lambda t: fn(t).sum(), x)
    return values, grad.numpy()


def directional_check(
    fn: Callable[[ep.Tensor], ep.Tensor],
    x: np.ndarray,
    framework: str,
    step: float = 1e-6,
    seed: int = 0,
) -> Tuple[float, float]:
    """Directional derivative of ``sum(fn(x))`` along a random direction: (autodiff, central
    finite difference), in float64."""
    direction = np.random.default_rng(seed).standard_normal(x.shape)
    direction /= np.linalg.norm(direction)
    with float64(framework):
        _, grad = value_and_grad(fn, to_tensor(framework, x))
        plus = fn(to_tensor(framework, x + step * direction)).numpy().sum()
        minus = fn(to_tensor(framework, x - step * direction)).numpy().sum()
    return float((grad * direction).sum()), float((plus - minus) / (2 * step))


# -- oracles shared by several test modules ---------------------------------------------------


def linear_problem(
    n=50, d=20, k=10, margin_scale=0.5, spread=0.05, seed=0, dtype=np.float32, separated=None
):
    """Inputs uniform in 0.5 +- spread / 2, margins of order ``margin_scale``. With
    ``separated=p``, only inputs whose nearest decision half-space (in Lp) is nearer than the second
    by 20% are kept: where two are about equally near, any descent method may settle on the farther
    one (a local optimum of the union of half-spaces)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, d))
    b = -w @ np.full(d, 0.5) + margin_scale * rng.normal(size=k)
    x = 0.5 + spread * (rng.random((50 * n if separated else n, d)) - 0.5)
    y = (x @ w.T + b).argmax(axis=1)
    if separated:
        gaps = np.sort(boundary_distances(w, b, x, y, separated), axis=1)
        keep = np.flatnonzero(gaps[:, 1] >= 1.2 * gaps[:, 0])[:n]
        assert len(keep) == n, len(keep)
        x, y = x[keep], y[keep]
    return w.astype(dtype), b.astype(dtype), x.astype(dtype), y


def boundary_distances(w, b, x, y, p):
    """Lp distance from each input to each half-space {z_j >= z_y} (inf for j = y)."""
    dual = {2: 2, 1: np.inf}[p]
    w, b, x = (a.astype(np.float64) for a in (w, b, x))
    z = x @ w.T + b
    dw = w[y][:, None, :] - w[None, :, :]  # (n, k, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = (z[np.arange(len(x)), y][:, None] - z) / np.linalg.norm(dw, ord=dual, axis=2)
    dist[np.arange(len(x)), y] = np.inf
    return dist


def minimal_adversarials(w, b, x, y, p):
    """The closed-form minimal Lp distances and the optimal points (box ignored)."""
    dist = boundary_distances(w, b, x, y, p)
    j = dist.argmin(axis=1)
    best = dist[np.arange(len(x)), j]
    dw = (w[y] - w[j]).astype(np.float64)
    if p == 2:
        step = best[:, None] * dw / np.linalg.norm(dw, axis=1, keepdims=True)
    else:  # all the mass on the coordinate with the largest |dw|
        i = np.abs(dw).argmax(axis=1)
        step = np.zeros_like(dw)
        step[np.arange(len(x)), i] = best * np.sign(dw[np.arange(len(x)), i])
    return best, x - step


def minimal_distances(w, b, x, y, p):
    best, points = minimal_adversarials(w, b, x, y, p)
    # the box constraint is inactive at the optimum: the closed form is the box's optimum too
    assert points.min() > 0 and points.max() < 1
    return best


def norms(raw, x, p):
    return np.linalg.norm((raw - x).reshape(len(x), -1).astype(np.float64), ord=p, axis=1)


def colour_lab(images: np.ndarray, channel_axis: int = 1, xyz_scale: float = 1.0) -> np.ndarray:
    colour = pytest.importorskip("colour")
    xyz = colour.sRGB_to_XYZ(np.moveaxis(images, channel_axis, -1))
    return colour.XYZ_to_Lab(xyz * xyz_scale)


def colour_ciede2000(x: np.ndarray, y: np.ndarray, xyz_scale: float = 1.0) -> np.ndarray:
    """L2 norm over pixels of colour-science's Delta E00 (channels first)."""
    colour = pytest.importorskip("colour")
    de = colour.delta_E(colour_lab(x, 1, xyz_scale), colour_lab(y, 1, xyz_scale), "CIE 2000")
    return np.sqrt((de**2).reshape(len(x), -1).sum(axis=1))


def skimage_distance(x: np.ndarray, y: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    metrics = pytest.importorskip("skimage.metrics")
    return np.array(
        [
            1
            - metrics.structural_similarity(
                a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                data_range=1, channel_axis=channel_axis - 1,
            )
            for a, b in zip(x, y)
        ]
    )  # fmt: skip


def random_alexnet(seed: int = 0, dead_last_layer: bool = False) -> Dict[str, np.ndarray]:
    """Random AlexNet convolution weights (He initialisation, float32), reproducible anywhere."""
    rng = np.random.default_rng(seed)
    weights = {}
    for index, shape in ALEXNET_SHAPES.items():
        scale = np.sqrt(2 / np.prod(shape[1:]))
        weights[f"features.{index}.weight"] = (rng.standard_normal(shape) * scale).astype("f4")
        weights[f"features.{index}.bias"] = (rng.standard_normal(shape[:1]) * 0.1).astype("f4")
    if dead_last_layer:  # every ReLU of the last layer off: features all zero at every pixel
        weights["features.10.bias"][:] = -1e3
    return weights


def _small_linear(n: int, d: int, k: int, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, d)).astype(np.float32)
    b = (-w @ np.full(d, 0.5) + 0.3 * rng.normal(size=k)).astype(np.float32)
    x = rng.uniform(0.4, 0.6, size=(n, d)).astype(np.float32)
    return w, b, x


def small_linear_weights(d=10, k=4, seed=0):
    """The (w, b) of :func:`small_linear_problem` (float32)."""
    return _small_linear(0, d, k, seed)[:2]


def small_linear_problem(fw, n=8, d=10, k=4, seed=0):
    """A linear k-class Foolbox model of ``fw`` and n inputs near the middle of the box, labelled
    with its own predictions."""
    w, b, x = _small_linear(n, d, k, seed)
    y = (x @ w.T + b).argmax(axis=1)
    return fw.linear_model(w, b), x, y


def with_default_sigint() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a shell's background jobs
    (CI runners started with ``&`` or nohup) inherit SIGINT ignored, and Python then keeps it
    ignored; this restores the default, as a terminal's foreground process has it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- the zoo's models in each framework -------------------------------------------------------------

LAYOUTS = [
    ("pytorch", None),
    ("tensorflow", None),
    ("tensorflow", "channels_first"),
    ("jax", None),
    ("jax", "channels_last"),
]
"""Each framework in its default layout and, where it has one, the other layout."""

DATA = Path(__file__).parent / "data"
_zoo_models: Dict[Tuple[str, str, Optional[str]], Any] = {}
_zoo_logits: Dict[Tuple[str, str, Optional[str], Optional[int]], np.ndarray] = {}


def zoo_model(name: str, framework: str, data_format: Optional[str] = None) -> Any:
    """``zoo.foolbox_model(framework, name, data_format)``, built once per test session (skips
    where the framework is not installed)."""
    from foolbox_alma import zoo

    pytest.importorskip(MODULE[framework])
    key = (name, framework, data_format)
    if key not in _zoo_models:
        _zoo_models[key] = zoo.foolbox_model(framework, name, data_format=data_format)
    return _zoo_models[key]


def zoo_logits(
    name: str, framework: str, data_format: Optional[str], n: Optional[int] = None, batch: int = 100
) -> np.ndarray:
    """Logits of :func:`zoo_model` on the first ``n`` (default: all) of its held-out images, in
    batches of ``batch``, computed once per test session."""
    from foolbox_alma import zoo

    key = (name, framework, data_format, n)
    if key not in _zoo_logits:
        fmodel = zoo_model(name, framework, data_format)
        images, _ = zoo.heldout_for(framework, data_format, n=n, model=name)
        _zoo_logits[key] = np.concatenate(
            [
                ep.astensor(fmodel(images[i : i + batch])).numpy()
                for i in range(0, len(images), batch)
            ]
        )
    return _zoo_logits[key]


def reference_logits(name: str) -> Dict[str, Any]:
    """PyTorch's logits of zoo model ``name``, stored by ``scripts/make_reference_logits.py``."""
    with np.load(DATA / f"{name}_reference_logits.npz") as archive:
        return {key: archive[key] for key in archive.files}


def assert_logits_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """Within ``rtol`` of the largest expected logit, everywhere."""
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def run_python(code: str) -> str:
    """``code`` run by this Python in a fresh process: its standard output."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()
