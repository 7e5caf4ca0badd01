"""Per-backend fast paths of the perceptual distances, and the switch that turns them off.

The generic EagerPy code of each distance is the reference, and what runs wherever no fast path
applies. On eager PyTorch, where every elementwise operation is a kernel and an allocation and an
ALMA step measures against the same originals every time, CIEDE2000 and SSIM have a fast path
(``_torch_ciede2000``, ``_torch_ssim``): the reference's half computed once per reference batch
(:class:`~._prepared.ReferenceCache`) and a closed-form gradient. TensorFlow and JAX run ALMA's
steps compiled, where the compiler sees the whole step: they use the generic code.

Set the environment variable ``FOOLBOX_ALMA_GENERIC_DISTANCES=1`` (or use
:func:`generic_distances`) to measure with the generic code everywhere (tests and
``scripts/bench_distances.py`` compare the two).

Not used, measured (``scripts/bench_distances.py --torch-compile``, this project's 2-core CPU
machine): ``torch.compile`` of the fast paths fuses them into a few C++ loops, 2-3 times faster
per call than the eager fast path, but compiling costs 30-40 s for CIEDE2000 (6 s for SSIM) per
process and input shape, 9 s even from inductor's disk cache: more than a 100-step attack on a
CIFAR ResNet-18 saves. On TensorFlow, ``jit_compile=True`` on the distance inside the step's
graph was no faster (CIEDE2000 21-25 ms against 13-23 ms) and compiles for 4.5 s.
"""

import contextlib
import importlib
import os
import threading
from typing import Any, Callable, Iterator, NamedTuple, Optional, Tuple

import eagerpy as ep

from .._dispatch import framework_name
from ._prepared import ReferenceCache

GENERIC_ENV = "FOOLBOX_ALMA_GENERIC_DISTANCES"

DistanceFn = Callable[[ep.Tensor, ep.Tensor], ep.Tensor]

_forced = threading.local()


class Kernel(NamedTuple):
    """A distance split into the reference's half and the rest, on native tensors of images
    in [0, 1]: ``distances(prepare(reference), perturbed)`` are the per-sample distances."""

    prepare: Callable[[Any], Any]
    distances: Callable[[Any, Any], Any]


def enabled() -> bool:
    """Whether fast paths may run (not switched off by :data:`GENERIC_ENV` or
    :func:`generic_distances`)."""
    if getattr(_forced, "generic", False):
        return False
    return os.environ.get(GENERIC_ENV, "").strip().lower() in ("", "0", "false", "no")


@contextlib.contextmanager
def generic_distances() -> Iterator[None]:
    """Inside the block (this thread), every distance runs its generic EagerPy code."""
    previous = getattr(_forced, "generic", False)
    _forced.generic = True
    try:
        yield
    finally:
        _forced.generic = previous


def torch_kernel(module: str, channel_axis: int, **options: Any) -> Kernel:
    """The PyTorch kernel in ``foolbox_alma.distances.<module>`` (its ``prepare(reference,
    channel_axis, **options)`` and ``distances(prepared, perturbed)``), imported at first use so
    that PyTorch is only imported where it runs."""

    def prepare(reference: Any) -> Any:
        return _module(module).prepare(reference, channel_axis, **options)

    def distances(prepared: Any, perturbed: Any) -> Any:
        return _module(module).distances(prepared, perturbed)

    return Kernel(prepare, distances)


def _module(name: str) -> Any:
    return importlib.import_module(f"{__package__}.{name}")


class FastPath:
    """The PyTorch kernel of one distance for one (bounds, channel axis), with its reference
    cache. Calling it returns the distances, or None where the fast path does not apply (the
    caller then runs the generic code).

    Args:
        kernel: The distance's PyTorch kernel (:func:`torch_kernel`).
        bounds: The range of the inputs, mapped to [0, 1] before measuring.
    """

    def __init__(self, kernel: Kernel, bounds: Tuple[float, float]):
        self.kernel = kernel
        self.bounds = bounds
        self.cache = ReferenceCache(lambda x: kernel.prepare(self._to_unit(x)))

    def __call__(self, reference: ep.Tensor, perturbed: ep.Tensor) -> Optional[ep.Tensor]:
        if not enabled() or not _torch_applies(reference, perturbed):
            return None
        prepared = self.cache(reference.raw)
        return ep.PyTorchTensor(self.kernel.distances(prepared, self._to_unit(perturbed.raw)))

    def _to_unit(self, images: Any) -> Any:
        lo, hi = self.bounds
        # the generic code's mapping, operation for operation
        return images if (lo, hi) == (0, 1) else (images - lo) / (hi - lo)


def _torch_applies(reference: ep.Tensor, perturbed: ep.Tensor) -> bool:
    """Eager PyTorch floating-point tensors of one dtype and device, no gradient wanted for the
    reference, no ``torch.compile`` or ``torch.func`` transform tracing them."""
    if framework_name(reference) != "pytorch" or framework_name(perturbed) != "pytorch":
        return False
    import torch

    x, y = reference.raw, perturbed.raw
    if x.dtype not in (torch.float32, torch.float64) or y.dtype != x.dtype:
        return False
    if x.device != y.device or x.requires_grad:
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return False
    return not (_functorch_wrapped(x) or _functorch_wrapped(y))


def _functorch_wrapped(t: Any) -> bool:
    """Whether ``t`` is traced by a ``torch.func`` transform (``grad``, ``vmap``...), which the
    hand-written gradients do not support."""
    try:
        import torch._C._functorch as functorch

        return bool(functorch.is_functorch_wrapped_tensor(t))
    except (ImportError, AttributeError):  # pragma: no cover - older or newer PyTorch
        return False


class WithFastPath:
    """A distance function that runs ``fast`` where it applies and ``generic`` elsewhere."""

    def __init__(self, generic: DistanceFn, kernel: Kernel, bounds: Tuple[float, float]):
        self.generic = generic
        self.fast = FastPath(kernel, bounds)

    def __call__(self, reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
        result = self.fast(reference, perturbed)
        return self.generic(reference, perturbed) if result is None else result
