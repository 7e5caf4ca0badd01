"""Per-framework runtime settings that the CLI commands, the benchmark and the evaluation engine
share: which framework a Foolbox model runs on, native tensors for it, its random seed and its
CPU threads. Importing this module imports no deep-learning framework.
"""

import contextlib
import importlib.util
import math
import os
import sys
from typing import Any, Dict, Iterator, Optional, Tuple

import foolbox as fb
import numpy as np

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
FRAMEWORK_ALIASES = {
    "pytorch": "pytorch",
    "torch": "pytorch",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
    "jax": "jax",
}
"""Every name a user may give a framework, to its canonical name (zoo, engine, CLIs)."""
FRAMEWORK_MODULE = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
"""The module each framework is imported as."""


def check_bounds(bounds: Any, prefix: str = "") -> Tuple[float, float]:
    """``bounds`` as two finite floats ``lo < hi``; else a ValueError (its message after
    ``prefix``) that names what was given."""
    try:
        values = [float(v) for v in bounds]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2:
        raise ValueError(f"{prefix}bounds must be two numbers (lo, hi), got {bounds!r}")
    lo, hi = values
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{prefix}bounds must be finite with lo < hi, got {bounds!r}")
    return lo, hi


def framework_installed(framework: str) -> bool:
    """Whether the canonical ``framework`` can be imported here (without importing it)."""
    return importlib.util.find_spec(FRAMEWORK_MODULE[framework]) is not None


def model_framework(fmodel: Any) -> str:
    """``"pytorch"``, ``"tensorflow"`` or ``"jax"`` for a Foolbox model of that framework."""
    for cls, name in (
        (fb.PyTorchModel, "pytorch"),
        (fb.TensorFlowModel, "tensorflow"),
        (fb.JAXModel, "jax"),
    ):
        if isinstance(fmodel, cls):
            return name
    inner = getattr(fmodel, "model", None)  # wrappers (e.g. the pass counter) hold the model
    if inner is not None and inner is not fmodel and isinstance(inner, fb.Model):
        return model_framework(inner)
    raise TypeError(
        f"cannot tell the framework of a {type(fmodel).__name__}: expected a Foolbox "
        "PyTorchModel, TensorFlowModel or JAXModel"
    )


def to_native(fmodel: Any, array: np.ndarray) -> Any:
    """``array`` as a tensor of the model's framework (on the PyTorch model's device)."""
    framework = model_framework(fmodel)
    array = np.ascontiguousarray(array)
    if framework == "pytorch":
        import torch

        return torch.from_numpy(array.copy()).to(getattr(fmodel, "device", "cpu"))
    if framework == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


def seed_framework(framework: str, seed: int) -> None:
    """Seeds NumPy and the framework's generator (ALMA draws random directions where the first
    gradient vanishes; other attacks draw random starts)."""
    np.random.seed(seed % 2**32)
    if framework == "pytorch":
        import torch

        torch.manual_seed(seed)
    elif framework == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(seed)
    elif framework == "jax":
        import eagerpy as ep
        import jax

        ep.JAXTensor.key = jax.random.PRNGKey(seed)
    else:
        raise ValueError(f"unknown framework {framework!r}; use one of {', '.join(FRAMEWORKS)}")


def derived_seed(seed: int, index: int) -> int:
    """A seed for unit ``index`` (a shard) of a run seeded with ``seed``: the same in every
    process, and unrelated for neighbouring indices (NumPy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def limit_threads_before_import(framework: str, threads: int) -> None:
    """TensorFlow and JAX fix their thread pools when they start: set them before any model is
    built (PyTorch's can change at any time, see :func:`threads`). Before the framework is
    imported this only sets its environment variables, so it costs nothing for a run that
    never imports it."""
    if framework == "jax" and "jax" not in sys.modules:
        os.environ.setdefault(
            "XLA_FLAGS",
            f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}",
        )
    elif framework in ("tensorflow", "tf") and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(threads))
    elif framework in ("tensorflow", "tf"):
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already started in this process
            pass


def thread_environment(threads: int) -> dict:
    """Environment variables that limit a fresh process (a Ray worker) to ``threads`` threads in
    every framework."""
    value = str(threads)
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "TF_NUM_INTRAOP_THREADS": value,
        "TF_NUM_INTEROP_THREADS": value,
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={value}",
    }


@contextlib.contextmanager
def threads(framework: str, count: Optional[int]) -> Iterator[None]:
    """``count`` CPU threads for the framework inside the block (PyTorch: restored afterwards;
    TensorFlow: set if not yet initialised; JAX: see :func:`limit_threads_before_import`)."""
    if count is None:
        yield
        return
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {count}")
    if framework == "pytorch":
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
        return
    limit_threads_before_import(framework, count)
    yield


def threads_in_use(framework: str) -> int:
    """The CPU threads the framework computes with now: its setting, or the cores it uses by
    default (TensorFlow and JAX without a setting use every core)."""
    return current_threads(framework) or os.cpu_count() or 1


def current_threads(framework: str) -> Optional[int]:
    """The framework's CPU threads, where it says."""
    if framework == "pytorch":
        import torch

        return torch.get_num_threads()
    if framework == "tensorflow":
        import tensorflow as tf

        setting = tf.config.threading.get_intra_op_parallelism_threads()
        return setting or int(os.environ.get("TF_NUM_INTRAOP_THREADS", 0)) or None
    if framework == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "intra_op_parallelism_threads=" in flags:
            return int(flags.split("intra_op_parallelism_threads=")[1].split()[0])
    return None


class TensorFlowModel(fb.TensorFlowModel):
    """``fb.TensorFlowModel`` whose ``data_format`` is the model's, not the global Keras setting.

    Foolbox's ``TensorFlowModel.data_format`` reports ``tf.keras.backend.image_data_format()``,
    which says nothing about the layout a given model takes (the zoo's TensorFlow models and the
    Keras files the pipeline loads know theirs).
    """

    def __init__(self, model: Any, bounds: Any, data_format: str, **kwargs: Any):
        super().__init__(model, bounds=bounds, **kwargs)
        self._own_data_format = data_format

    @property
    def data_format(self) -> str:
        return self._own_data_format


def machine_info() -> Dict[str, Any]:
    """CPU, cores, Python and framework versions (what timings depend on)."""
    import importlib.metadata
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    packages = ("foolbox-alma", "foolbox", "eagerpy", "torch", "tensorflow", "tensorflow-cpu")
    for package in packages + ("jax", "jaxlib", "adv-lib"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    info: Dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }
    if "torch" in sys.modules or framework_installed("pytorch"):
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info
