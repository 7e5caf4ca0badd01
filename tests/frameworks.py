"""The three backends as test fixtures: native tensors and Foolbox models from NumPy arrays.

Each tox env installs one framework; tests parametrised over ``FRAMEWORKS`` skip the others.
"""

import contextlib
import importlib.util
from typing import Any, Callable, Iterator, Tuple

import foolbox as fb
import numpy as np

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
_MODULE = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}


def available(framework: str) -> bool:
    return importlib.util.find_spec(_MODULE[framework]) is not None


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
