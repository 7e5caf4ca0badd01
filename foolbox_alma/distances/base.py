"""The distance interface ALMA minimises, compatible with Foolbox's ``Distance``.

A distance is two things at once:

* an EagerPy function ``compute(reference, perturbed) -> per-sample distances`` that the attack
  differentiates (it only touches ``ep.`` operations, so it runs on every backend), and
* a Foolbox :class:`foolbox.distances.Distance` (``__call__`` on native tensors and
  ``clip_perturbation``), so that Foolbox's ``epsilons`` work with it.

Distances that are not norms of the perturbation (CIEDE2000, SSIM, LPIPS) look at images mapped from
the model's bounds to [0, 1]; :meth:`AttackDistance.bind` returns the function the attack uses for a
given model (bounds and channel layout).
"""

from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import eagerpy as ep
import foolbox as fb

from . import _backend, _fast

DistanceFn = Callable[[ep.Tensor, ep.Tensor], ep.Tensor]
BoundsLike = Tuple[float, float]
FirstStep = Union[float, str]
"""An ``init_lr_distance``: a distance in the distance's own units, or :data:`AUTO`."""

AUTO = "auto"
"""``init_lr_distance="auto"``: the first step is sized in L2 (``auto_first_step``), not in D, and
ALMA's Lagrangian measures D in that step's units (see :class:`foolbox_alma.ALMA`)."""

PAPER_L2_FIRST_STEP = 0.1
"""The paper's ``init_lr_distance`` for L2 (inputs in [0, 1]): the size of the automatic first step."""


class AttackDistance(fb.distances.Distance, ABC):
    """Base class of the distances ALMA can minimise.

    Attributes:
        name: The short name (``"l2"``, ``"ciede2000"``...), as accepted by ``ALMA(distance=...)``.
        init_lr_distance: ALMA's default ``init_lr_distance`` for this distance: a distance in its
            own units (inputs in [0, 1]; the paper's L1 0.5 and L2 0.1), or ``"auto"`` (the
            default of the base class, so that a distance of one's own needs no tuned value).
        auto_first_step: The L2 size (inputs in [0, 1]) of ALMA's first step under
            ``init_lr_distance="auto"``: the paper's L2 setting, 0.1 (LPIPS: 0.01). ALMA's steps
            are taken in input space (RMSProp makes each coordinate move about the learning rate
            whatever the distance's gradient), so a step size in L2 carries across the
            distance's units and scales (network weights for LPIPS, standard or adv_lib's scale
            for CIEDE2000), where a value in the distance's units has to be tuned for each.
        homogeneous: True when ``D(x + c p, x) = |c| D(x + p, x)`` and the distance is measured in the
            model's input units (the Lp norms): step-size-like quantities then scale with the range of
            the model's bounds. False for distances measured on images mapped to [0, 1].
    """

    name: str = ""
    init_lr_distance: FirstStep = AUTO
    auto_first_step: float = PAPER_L2_FIRST_STEP
    homogeneous: bool = False

    @abstractmethod
    def compute(self, reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
        """Per-sample distances between two batches of inputs (EagerPy, differentiable)."""

    def bind(self, bounds: BoundsLike, data_format: Optional[str] = None) -> DistanceFn:
        """The EagerPy function ``(reference, perturbed) -> distances`` for inputs in ``bounds``.

        ``data_format`` is the model's ``"channels_first"`` / ``"channels_last"`` when known.
        The default measures the inputs as they are (right for Lp norms).
        """
        del bounds, data_format
        return self.compute

    def __call__(self, references: Any, perturbed: Any) -> Any:
        (x, xp), restore_type = ep.astensors_(references, perturbed)
        return restore_type(self.compute(x, xp))

    def clip_perturbation(self, references: Any, perturbed: Any, epsilon: float) -> Any:
        """The perturbed inputs with their perturbation shrunk so that the distance is <= epsilon.

        The default finds by bisection the largest scale ``s`` in [0, 1] with
        ``D(x, x + s (xp - x)) <= epsilon`` (relative tolerance 1e-3), which works for any distance that
        grows along the segment. Norms override it with the closed form.
        """
        (x, xp), restore_type = ep.astensors_(references, perturbed)
        return restore_type(bisect_clip(self.compute, x, xp, epsilon))


def bisect_clip(
    distance: DistanceFn, x: ep.Tensor, xp: ep.Tensor, epsilon: float, rtol: float = 1e-3
) -> ep.Tensor:
    """Largest ``x + s (xp - x)``, ``s`` in [0, 1], with ``distance(x, .) <= epsilon``, per sample.

    Stops once every sample's bracket [lo, hi] satisfies ``hi - lo <= rtol * hi`` (or after 60 halvings).
    """
    if len(x) == 0:
        return xp
    p = xp - x
    ndim = x.ndim

    def at(scale: ep.Tensor) -> ep.Tensor:
        return x + scale.reshape((-1,) + (1,) * (ndim - 1)).astype(x.dtype) * p

    full = distance(x, xp)
    ok_full = full <= epsilon
    lo = ep.zeros(x, len(x)).astype(x.dtype)
    hi = ep.ones(x, len(x)).astype(x.dtype)
    for _ in range(60):
        if ((hi - lo) <= rtol * hi).all():
            break
        mid = (lo + hi) / 2
        inside = distance(x, at(mid)) <= epsilon
        lo = ep.where(inside, mid, lo)
        hi = ep.where(inside, hi, mid)
    scale = ep.where(ok_full, ep.ones_like(lo), lo)
    return at(scale)


DATA_FORMATS = ("channels_first", "channels_last")


def resolve_channel_axis(
    shape: Sequence[int],
    channel_axis: Optional[int] = None,
    data_format: Optional[str] = None,
    distance: str = "this distance",
) -> int:
    """The channel axis of a batch of images of ``shape`` (4-d: batch first).

    An explicit ``channel_axis`` wins; else the model's ``data_format``; else the one axis other than
    the batch axis of size 3 (or, with none of size 3, the one of size 1: gray images). Anything
    ambiguous is an error that asks for ``channel_axis``.

    A ``data_format`` whose channel axis has neither 1 nor 3 entries while exactly one other axis
    has is not the inputs' layout (Foolbox's ``JAXModel`` defaults to ``"channels_last"`` and its
    ``TensorFlowModel`` reports the global Keras setting, whatever the model takes): the shape
    decides then.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{distance} takes batches of images of shape (N, C, H, W) or (N, H, W, C); "
            f"got shape {shape}"
        )
    if channel_axis is not None:
        axis = channel_axis + 4 if channel_axis < 0 else channel_axis
        if not 1 <= axis <= 3:
            raise ValueError(f"channel_axis must be 1, 2, 3 or -1, -2, -3; got {channel_axis}")
        return axis
    from_shape = _channel_axis_from_shape(shape)
    if data_format is not None:
        if data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
        axis = 1 if data_format == "channels_first" else 3
        if shape[axis] in (1, 3) or from_shape is None:
            return axis
    if from_shape is not None:
        return from_shape
    raise ValueError(
        f"cannot tell the channel axis of images of shape {shape}: give {distance} an explicit "
        "channel_axis (1 for (N, C, H, W), -1 for (N, H, W, C))"
    )


def check_image_size(distance: str, height: int, width: int, minimum: int, why: str = "") -> None:
    """The error for images of ``height`` x ``width`` pixels with a side under ``minimum``:
    "``distance`` needs images of at least ``minimum`` x ``minimum`` pixels (``why``); got ..."."""
    if min(height, width) < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"{distance} needs images of at least {minimum} x {minimum} pixels{reason}; "
            f"got {height} x {width}"
        )


def _channel_axis_from_shape(shape: Tuple[int, ...]) -> Optional[int]:
    for size in (3, 1):
        axes = [a for a in (1, 2, 3) if shape[a] == size]
        if len(axes) == 1:
            return axes[0]
        if len(axes) > 1:
            return None
    return None


class ImageDistance(AttackDistance):
    """Base class of the perceptual distances, measured on images mapped to [0, 1].

    Subclasses implement :meth:`image_distances` for images in [0, 1] with a known channel axis.
    ``compute`` and ``__call__`` map inputs from ``bounds`` to [0, 1]; :meth:`bind` maps them from
    the model's bounds instead and takes the channel axis from the model's ``data_format`` (unless
    ``channel_axis`` was given explicitly).

    Args:
        channel_axis: The channel axis of the images (None: from the model's ``data_format`` inside
            an attack, else the one non-batch axis of size 3, or of size 1 for gray images).
        bounds: The range of the inputs given to ``__call__``, ``compute`` and
            ``clip_perturbation`` (mapped to [0, 1] before measuring).
    """

    homogeneous = False
    _torch_module: Optional[str] = None
    """The module of this package that holds the distance's PyTorch kernel (``_fast``), if it takes
    no options: the default :meth:`torch_kernel` loads it."""

    def __init__(self, channel_axis: Optional[int] = None, *, bounds: BoundsLike = (0, 1)):
        self.channel_axis = channel_axis
        self.bounds = _check_bounds(bounds)
        self._compiled: Dict[Tuple[BoundsLike, int], DistanceFn] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channel_axis={self.channel_axis}, bounds={self.bounds})"

    @abstractmethod
    def image_distances(
        self, reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int
    ) -> ep.Tensor:
        """Per-sample distances between images in [0, 1] with channels along ``channel_axis``."""

    def torch_kernel(self, channel_axis: int) -> Optional[_fast.Kernel]:
        """This distance's eager PyTorch fast path (see ``_fast``), None if it has none: then
        :meth:`image_distances` runs on PyTorch too."""
        if self._torch_module is None:
            return None
        return _fast.torch_kernel(self._torch_module, channel_axis)

    def compute(self, reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
        return self._measure(reference, perturbed, self.bounds, None)

    def bind(self, bounds: BoundsLike, data_format: Optional[str] = None) -> DistanceFn:
        bounds = _check_bounds(bounds)
        if data_format is not None and data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")

        def distance(reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
            return self._measure(reference, perturbed, bounds, data_format)

        return distance

    def _measure(
        self,
        reference: ep.Tensor,
        perturbed: ep.Tensor,
        bounds: BoundsLike,
        data_format: Optional[str],
    ) -> ep.Tensor:
        if tuple(reference.shape) != tuple(perturbed.shape):
            raise ValueError(
                f"reference and perturbed images differ in shape: {tuple(reference.shape)} "
                f"vs {tuple(perturbed.shape)}"
            )
        axis = resolve_channel_axis(reference.shape, self.channel_axis, data_format, self.name)
        key = (bounds, axis)
        if key not in self._compiled:
            self._compiled[key] = self._measure_function(bounds, axis)
        return self._compiled[key](reference, perturbed)

    def _measure_function(self, bounds: BoundsLike, axis: int) -> DistanceFn:
        """The distances for inputs in ``bounds`` with channels along ``axis``: the PyTorch fast
        path where it applies (``_fast``), else the generic code (compiled on JAX and TensorFlow)."""

        def distances(reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
            lo, hi = bounds
            if (lo, hi) != (0, 1):
                reference = (reference - lo) / (hi - lo)
                perturbed = (perturbed - lo) / (hi - lo)
            return self.image_distances(reference, perturbed, axis)

        # JAX runs it compiled (one compilation instead of one per primitive, see _backend)
        generic = _backend.compiled(distances)
        kernel = self.torch_kernel(axis)
        return generic if kernel is None else _fast.WithFastPath(generic, kernel, bounds)


def _check_bounds(bounds: Any) -> BoundsLike:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (lo, hi), got {bounds!r}") from None
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds!r}")
    return lo, hi
