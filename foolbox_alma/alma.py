"""ALMA: the Augmented Lagrangian Method for Adversarial attacks, as a Foolbox minimisation attack.

The loop in :meth:`ALMA.run` follows Algorithm 2 of Rony et al. (ICCV 2021) line by line; the
constraint (DLR+), the penalty-Lagrangian functions, the optimiser pieces and the distances live in
their own modules. Only ``ep.`` operations and ``model(...)`` are used, so the same code attacks
PyTorch, TensorFlow and JAX models.
"""

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import eagerpy as ep
import foolbox as fb
import numpy as np
from foolbox.attacks.base import MinimizationAttack, get_criterion, raise_if_kwargs
from foolbox.criteria import Misclassification, TargetedMisclassification
from tqdm.auto import tqdm

from . import checks
from ._dispatch import stop_gradient
from .constraints import dlr_plus, targeted_dlr_plus, two_class_gap
from .distances import AttackDistance, get_distance
from .optim import (
    batch_view,
    exponential_decay,
    find_initial_lr,
    rmsprop_init,
    rmsprop_update,
)
from .penalties import Penalty, PenaltyFn, get_penalty

MU_MIN, MU_MAX = 1e-6, 1e12
VANISHING_GRADIENT_NORM = 1e-6

EpsilonsLike = Union[Sequence[Optional[float]], float, None]


class ALMA(MinimizationAttack):
    """Augmented Lagrangian Method for Adversarial attacks (ALMA). [#Rony21]_

    Finds, for each input, a small perturbation under ``distance`` that changes the model's decision
    (or reaches a target class), by minimising ``D(x~, x) + P(DLR+(f(x~), y), rho, mu)`` with RMSProp
    while the penalty parameter ``rho`` and the multiplier ``mu`` are adapted per sample. Each step
    costs one forward and one backward pass of the model. Returns, per sample, the adversarial with
    the smallest distance seen (the input itself where none was found; inputs that are already
    adversarial come back unchanged).

    Step-size-like settings (``lr_init``, ``init_lr_distance``) are expressed, as in the paper, for
    inputs in [0, 1]: on a model with bounds (lo, hi) the attack runs in coordinates scaled to
    [0, 1] and L1/L2 distances are measured in the model's units divided by (hi - lo), so that the
    result on bounds (0, 255) is 255 times the result on bounds (0, 1).

    Args:
        distance: The distance to minimise: ``"l1"``, ``"l2"``, another name known to
            :func:`foolbox_alma.distances.get_distance`, or an
            :class:`~foolbox_alma.distances.AttackDistance` object.
        steps: Number of optimisation steps N (= forwards and backwards per sample).
        penalty: Penalty-Lagrangian function: ``"P1"``, ``"P2"`` (the paper's choice), ``"P3"``,
            ``"PHR"``, a :class:`~foolbox_alma.penalties.Penalty`, or a callable
            ``(y, rho, mu) -> values`` on EagerPy tensors (derivative by autodiff).
        lr_init: Initial learning rate, used when the learning-rate finder is off.
        lr_reduction: Final learning rate as a fraction of the initial one; the per-sample decay
            starts at the step where the sample first becomes adversarial.
        init_lr_distance: Distance that the first step should move each input (epsilon in the
            paper); the initial learning rate is found per sample by doubling then 20 bisection
            steps. None takes the paper's value for the distance (L1 0.5, L2 0.1, ...);
            0 switches the finder off and uses ``lr_init``.
        mu_init: Initial penalty multiplier mu.
        rho_init: Initial penalty parameter rho.
        check_steps: Number of steps M between two checks of the constraint's progress.
        tau: Constraint improvement rate: rho grows unless the constraint fell below tau times its
            value M steps earlier (or an adversarial was already found).
        gamma: Factor by which rho grows (> 1).
        alpha: Weight of the exponential moving average of the multiplier mu.
        alpha_rms: Smoothing constant of RMSProp (None: alpha).
        momentum: Momentum of RMSProp (None: alpha).
        logit_tolerance: kappa, the margin by which the logits must cross the decision boundary.
        levels: If set, the adversarial inputs are quantised to this many levels between the
            bounds after every step (e.g. 256 for 8-bit images).
        progress: Show a progress bar over the steps (tqdm).

    References:
        .. [#Rony21] Jérôme Rony, Eric Granger, Marco Pedersoli, Ismail Ben Ayed,
            "Augmented Lagrangian Adversarial Attacks", ICCV 2021,
            https://arxiv.org/abs/2011.11857
    """

    def __init__(
        self,
        *,
        distance: Union[str, AttackDistance] = "l2",
        steps: int = 1000,
        penalty: Union[str, Penalty, PenaltyFn] = "P2",
        lr_init: float = 0.1,
        lr_reduction: float = 0.01,
        init_lr_distance: Optional[float] = None,
        mu_init: float = 1.0,
        rho_init: float = 1.0,
        check_steps: int = 10,
        tau: float = 0.95,
        gamma: float = 1.2,
        alpha: float = 0.9,
        alpha_rms: Optional[float] = None,
        momentum: Optional[float] = None,
        logit_tolerance: float = 1e-4,
        levels: Optional[int] = None,
        progress: bool = False,
    ):
        self._distance = get_distance(distance)
        self.steps = checks.integer_at_least("steps", steps, 1)
        self.penalty = get_penalty(penalty)
        self.lr_init = checks.positive("lr_init", lr_init)
        self.lr_reduction = checks.in_range("lr_reduction", lr_reduction, 0, 1, low_closed=False)
        if init_lr_distance is None:
            init_lr_distance = self._distance.init_lr_distance
        self.init_lr_distance = checks.in_range("init_lr_distance", init_lr_distance, 0, math.inf)
        self.mu_init = checks.in_range("mu_init", mu_init, MU_MIN, MU_MAX)
        self.rho_init = checks.positive("rho_init", rho_init)
        self.check_steps = checks.integer_at_least("check_steps", check_steps, 1)
        self.tau = checks.in_range("tau", tau, 0, 1)
        self.gamma = checks.in_range("gamma", gamma, 1, math.inf, low_closed=False)
        self.alpha = checks.in_range("alpha", alpha, 0, 1, high_closed=False)
        alpha_rms = self.alpha if alpha_rms is None else alpha_rms
        momentum = self.alpha if momentum is None else momentum
        self.alpha_rms = checks.in_range("alpha_rms", alpha_rms, 0, 1, high_closed=False)
        self.momentum = checks.in_range("momentum", momentum, 0, 1, high_closed=False)
        self.logit_tolerance = checks.in_range("logit_tolerance", logit_tolerance, 0, math.inf)
        self.levels = checks.optional(checks.integer_at_least, "levels", levels, 2)
        self.progress = bool(progress)

    @property
    def distance(self) -> AttackDistance:
        return self._distance

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(distance={self._distance.name!r}, steps={self.steps}, "
            f"penalty={self.penalty.name!r}, init_lr_distance={self.init_lr_distance})"
        )

    def __call__(  # type: ignore[override]
        self,
        model: fb.Model,
        inputs: Any,
        criterion: Any,
        *,
        epsilons: EpsilonsLike = None,
        **kwargs: Any,
    ) -> Union[Tuple[List[Any], List[Any], Any], Tuple[Any, Any, Any]]:
        """Runs the attack: ``raw, clipped, success`` as Foolbox's minimisation attacks return them.

        ``epsilons`` may be omitted (minimal adversarials, no clipping), a float, or a list.
        """
        x, restore_type = ep.astensor_(inputs)
        checks.check_model_has_gradients(model, x)
        checks.check_inputs(x, model)
        criterion = _criterion_like(get_criterion(criterion), x)
        if len(x) == 0:  # Foolbox's own bound check cannot take an empty batch
            return _empty_results(x, restore_type, epsilons)
        return super().__call__(model, inputs, criterion, epsilons=epsilons, **kwargs)

    def run(
        self,
        model: fb.Model,
        inputs: Any,
        criterion: Union[Misclassification, TargetedMisclassification, Any],
        *,
        early_stop: Optional[float] = None,
        **kwargs: Any,
    ) -> Any:
        """Returns the adversarial inputs (ALMA minimises, so ``early_stop`` is ignored)."""
        raise_if_kwargs(kwargs)
        x, restore_type = ep.astensor_(inputs)
        criterion_ = _criterion_like(get_criterion(criterion), x)
        del inputs, criterion, kwargs, early_stop

        checks.check_model_has_gradients(model, x)
        checks.check_inputs(x, model)
        targeted, classes = _read_criterion(criterion_)
        checks.check_classes(classes, len(x), targeted)
        if len(x) == 0:
            return restore_type(x)

        lo, hi = model.bounds
        scale = hi - lo  # the attack runs in coordinates scaled to [0, 1]
        distance_fn = self._distance.bind(model.bounds, getattr(model, "data_format", None))
        distance_scale = scale if self._distance.homogeneous else 1.0
        constraint = targeted_dlr_plus if targeted else dlr_plus
        steps, check_steps, ndim = self.steps, self.check_steps, x.ndim
        penalty, kappa = self.penalty, self.logit_tolerance

        def distance(x_adv: ep.Tensor) -> ep.Tensor:
            return distance_fn(x, x_adv) / distance_scale

        def objective(
            x_adv: ep.Tensor,
            rho: ep.Tensor,
            mu: ep.Tensor,
            prev_dlr: ep.Tensor,
            adv_found: ep.Tensor,
            logit_scale: ep.Tensor,
            first: bool,
            check: bool,
        ) -> Tuple[ep.Tensor, Tuple[ep.Tensor, ...]]:
            logits = model(x_adv)
            if first:
                checks.check_logits(logits, len(x))
                checks.check_classes_range(classes, logits.shape[-1], targeted)
                if logits.shape[-1] == 2:  # see constraints: the clean logit gap normalises
                    logit_scale = stop_gradient(two_class_gap(logits))
            dlr = constraint(logits, classes, kappa, logit_scale)
            dist = distance(x_adv)
            dlr_value = stop_gradient(dlr)
            if first:
                prev_dlr = dlr_value
            elif check:
                # Algorithm 2, lines 10-12: grow rho while no adversarial is found and the
                # constraint did not improve by a factor tau over the last M steps.
                improved = dlr_value < self.tau * prev_dlr
                rho = ep.where(ep.logical_or(adv_found, improved), rho, self.gamma * rho)
                prev_dlr = dlr_value
            if not first:
                # Lines 5-6: EMA of dP/dy, projected onto [mu_min, mu_max].
                new_mu = penalty.grad(dlr_value, rho, mu)
                mu = ep.clip(self.alpha * mu + (1 - self.alpha) * new_mu, MU_MIN, MU_MAX)
            lagrangian = penalty(dlr, rho, mu)
            # The distance has no useful (for L2: a NaN) gradient at a zero perturbation, so the
            # first loss is the penalty term alone.
            loss = lagrangian if first else dist + lagrangian
            return loss.sum(), (dlr_value, stop_gradient(dist), rho, mu, prev_dlr, logit_scale)

        loss_and_grad = ep.value_and_grad_fn(x, objective, has_aux=True)

        n = len(x)
        x_adv = x
        rho = ep.full(x, (n,), self.rho_init).astype(x.dtype)
        mu = ep.full(x, (n,), self.mu_init).astype(x.dtype)
        prev_dlr = ep.zeros(x, (n,)).astype(x.dtype)
        logit_scale = ep.ones(x, (n,)).astype(x.dtype)
        lr = ep.full(x, (n,), self.lr_init).astype(x.dtype)
        optimiser_state = rmsprop_init(x)
        best_dist = ep.full(x, (n,), math.inf).astype(x.dtype)
        best_adv = x
        adv_found = ep.zeros(x, (n,)).bool()
        step_found = ep.full(x, (n,), steps + 1).astype(x.dtype)

        bar = tqdm(range(steps), desc="ALMA", disable=not self.progress, leave=False)
        for i in bar:
            first = i == 0
            check = (i + 1) % check_steps == 0
            _, aux, grad = loss_and_grad(
                x_adv, rho, mu, prev_dlr, adv_found, logit_scale, first, check
            )
            dlr, dist, rho, mu, prev_dlr, logit_scale = aux

            # Keep the adversarial with the smallest distance.
            is_adv = dlr < 0
            is_both = ep.logical_and(is_adv, dist < best_dist)
            newly_found = ep.logical_and(is_adv, ep.logical_not(adv_found))
            step_found = ep.where(newly_found, ep.full_like(step_found, i), step_found)
            adv_found = ep.logical_or(adv_found, is_adv)
            best_dist = ep.where(is_both, dist, best_dist)
            best_adv = ep.where(batch_view(is_both, ndim), x_adv, best_adv)

            grad = grad * scale  # the gradient in [0, 1] coordinates
            if first and self.init_lr_distance > 0:
                grad = _replace_vanishing_gradients(grad)
                lr = find_initial_lr(
                    lambda u_step: distance(lo + scale * u_step),
                    (x - lo) / scale,
                    grad,
                    self.init_lr_distance,
                )

            step_lr = exponential_decay(lr, self.lr_reduction, i, step_found, steps)
            direction, optimiser_state = rmsprop_update(
                grad, optimiser_state, self.alpha_rms, self.momentum
            )
            x_adv = ep.clip(x_adv - scale * batch_view(step_lr, ndim) * direction, lo, hi)
            if self.levels is not None:
                x_adv = _quantise(x_adv, lo, scale, self.levels)

            if self.progress and (check or i == steps - 1):
                bar.set_postfix(success=f"{adv_found.float32().mean().item():.1%}")

        return restore_type(best_adv)


def _read_criterion(criterion: Any) -> Tuple[bool, ep.Tensor]:
    if isinstance(criterion, Misclassification):
        return False, criterion.labels
    if isinstance(criterion, TargetedMisclassification):
        return True, criterion.target_classes
    raise ValueError(
        "ALMA supports labels, fb.criteria.Misclassification and "
        f"fb.criteria.TargetedMisclassification, got {type(criterion).__name__}"
    )


def _criterion_like(criterion: Any, x: ep.Tensor) -> Any:
    """The criterion with its classes on the inputs' framework (lists and NumPy arrays accepted)."""
    if not isinstance(criterion, (Misclassification, TargetedMisclassification)):
        return criterion
    targeted = isinstance(criterion, TargetedMisclassification)
    classes = criterion.target_classes if targeted else criterion.labels
    if type(classes) is not type(x):
        raw = classes.numpy() if isinstance(classes, ep.Tensor) else np.asarray(classes)
        if raw.dtype.kind not in "iu":
            return criterion  # the dtype check names the problem
        classes = ep.from_numpy(x, np.array(raw))  # a writable copy
    # Foolbox compares the classes with argmax outputs, and EagerPy's TensorFlow backend fails on
    # mixed integer dtypes: use the dtype argmax returns on this framework.
    index_dtype = ep.zeros(x, (1, 2)).argmax(axis=-1).dtype
    if classes.dtype != index_dtype and checks.is_integer(classes):
        classes = classes.astype(index_dtype)
    elif classes is (criterion.target_classes if targeted else criterion.labels):
        return criterion
    return TargetedMisclassification(classes) if targeted else Misclassification(classes)


def _replace_vanishing_gradients(grad: ep.Tensor) -> ep.Tensor:
    """Random unit directions for samples whose gradient vanishes or is not finite."""
    flat = grad.reshape((len(grad), -1))
    finite = ep.logical_not(ep.logical_or(ep.isnan(flat), ep.isinf(flat))).all(axis=-1)
    norms = ep.sqrt(ep.square(ep.where(batch_view(finite, 2), flat, 0)).sum(axis=-1))
    vanishing = ep.logical_or(ep.logical_not(finite), norms <= VANISHING_GRADIENT_NORM)
    if not vanishing.any().item():
        return grad
    noise = ep.normal(grad, grad.shape).astype(grad.dtype)
    noise_norms = ep.sqrt(ep.square(noise.reshape((len(grad), -1))).sum(axis=-1))
    noise = noise / batch_view(ep.maximum(noise_norms, 1e-12), grad.ndim)
    return ep.where(batch_view(vanishing, grad.ndim), noise, grad)


def _quantise(x_adv: ep.Tensor, lo: float, scale: float, levels: int) -> ep.Tensor:
    """Rounds to the nearest of ``levels`` evenly spaced values between the bounds."""
    v = (x_adv - lo) / scale * (levels - 1) + 0.5
    return lo + scale * (v - v % 1) / (levels - 1)


def _empty_results(x: ep.Tensor, restore_type: Any, epsilons: EpsilonsLike) -> Any:
    success = ep.zeros(x, (0,)).bool()
    if isinstance(epsilons, Sequence) and not isinstance(epsilons, str):
        k = len(epsilons)
        stacked = ep.zeros(x, (k, 0)).bool()
        return [restore_type(x)] * k, [restore_type(x)] * k, restore_type(stacked)
    return restore_type(x), restore_type(x), restore_type(success)
