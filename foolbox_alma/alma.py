"""ALMA: the Augmented Lagrangian Method for Adversarial attacks, as a Foolbox minimisation attack.

The loop in :meth:`ALMA.run` follows Algorithm 2 of Rony et al. (ICCV 2021) line by line; the
constraint (DLR+), the penalty-Lagrangian functions, the optimiser pieces and the distances live in
their own modules. Only ``ep.`` operations and ``model(...)`` are used, so the same code attacks
PyTorch, TensorFlow and JAX models.
"""

import math
import weakref
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import eagerpy as ep
import foolbox as fb
import numpy as np
from foolbox.attacks.base import MinimizationAttack, get_criterion, raise_if_kwargs
from foolbox.criteria import Misclassification, TargetedMisclassification
from tqdm.auto import tqdm

from . import checks
from ._compile import compile_step
from ._dispatch import framework_name, stop_gradient, value_aux_and_grad
from .constraints import dlr_plus, targeted_dlr_plus, two_class_gap
from .distances import AttackDistance, get_distance
from .optim import (
    RMSPropState,
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


def default_alpha(steps: int) -> float:
    """ALMA's default EMA weight for a budget of ``steps``: the paper's two settings, 0.5 for its
    100-step runs and 0.9 for its 1000-step runs, joined log-linearly in the EMA window
    ``1 / (1 - alpha)`` (2 steps at 100, 10 at 1000), constant outside [100, 1000]."""
    t = min(max(math.log10(max(steps, 1)) - 2.0, 0.0), 1.0)  # 0 at 100 steps, 1 at 1000
    return 1.0 - 0.5 * 5.0 ** (-t)


class ALMA(MinimizationAttack):
    """Augmented Lagrangian Method for Adversarial attacks (ALMA), Rony et al., ICCV 2021.

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
        alpha: Weight of the exponential moving average of the multiplier mu (also RMSProp's
            smoothing and momentum unless set). None follows the step budget
            (:func:`default_alpha`): the paper's 0.5 up to 100 steps, its 0.9 from 1000 steps,
            and in between the value whose EMA window ``1 / (1 - alpha)`` grows geometrically
            from 2 to 10 steps (e.g. 0.77 at 300 steps).
        alpha_rms: Smoothing constant of RMSProp (None: alpha).
        momentum: Momentum of RMSProp (None: alpha).
        logit_tolerance: kappa, the margin by which the logits must cross the decision boundary.
        levels: If set, the adversarial inputs are quantised to this many levels between the
            bounds after every step (e.g. 256 for 8-bit images).
        progress: Show a progress bar over the steps (tqdm).
        compile: Compile the attack step where the framework can: ``tf.function`` on TensorFlow,
            ``jax.jit`` on JAX (traced once per model, input shape and dtype, then reused).
            ``"auto"`` (default) and True compile there; False runs every step eagerly. PyTorch
            always runs eagerly. The first step (checks, learning-rate finder) is always eager.

    References:
        Jérôme Rony, Eric Granger, Marco Pedersoli, Ismail Ben Ayed, "Augmented Lagrangian
        Adversarial Attacks", ICCV 2021, https://arxiv.org/abs/2011.11857
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
        alpha: Optional[float] = None,
        alpha_rms: Optional[float] = None,
        momentum: Optional[float] = None,
        logit_tolerance: float = 1e-4,
        levels: Optional[int] = None,
        progress: bool = False,
        compile: Union[str, bool] = "auto",
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
        if alpha is None:
            alpha = default_alpha(self.steps)
        self.alpha = checks.in_range("alpha", alpha, 0, 1, high_closed=False)
        alpha_rms = self.alpha if alpha_rms is None else alpha_rms
        momentum = self.alpha if momentum is None else momentum
        self.alpha_rms = checks.in_range("alpha_rms", alpha_rms, 0, 1, high_closed=False)
        self.momentum = checks.in_range("momentum", momentum, 0, 1, high_closed=False)
        self.logit_tolerance = checks.in_range("logit_tolerance", logit_tolerance, 0, math.inf)
        self.levels = checks.optional(checks.integer_at_least, "levels", levels, 2)
        self.progress = bool(progress)
        if compile not in ("auto", True, False):
            raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")
        self.compile = compile
        self.trace_count = 0  # how often a compiled step was traced (for tests and curiosity)
        self._compiled: weakref.WeakKeyDictionary[Any, Dict[Any, Any]] = weakref.WeakKeyDictionary()

    @property
    def distance(self) -> AttackDistance:
        return self._distance

    def __getstate__(self) -> Dict[str, Any]:
        """Picklable (for worker processes): the compiled steps stay behind."""
        state = dict(self.__dict__)
        state["_compiled"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compiled = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(distance={self._distance.name!r}, steps={self.steps}, "
            f"penalty={self.penalty.name!r}, init_lr_distance={self.init_lr_distance})"
        )

    # Foolbox marks __call__ final; ALMA overrides it to check the inputs before Foolbox's bare
    # asserts do, then hands over to Foolbox's own __call__.
    def __call__(  # type: ignore[override,misc]
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
        criterion = _as_criterion(criterion, x)
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
        criterion_ = _as_criterion(criterion, x)
        del inputs, criterion, kwargs, early_stop

        checks.check_model_has_gradients(model, x)
        checks.check_inputs(x, model)
        targeted, classes = _read_criterion(criterion_)
        checks.check_classes(classes, len(x), targeted)
        if len(x) == 0:
            return restore_type(x)

        problem = _Problem(
            model=model,
            targeted=targeted,
            lo=model.bounds[0],
            scale=model.bounds[1] - model.bounds[0],  # the attack runs in [0, 1] coordinates
            distance_fn=self._distance.bind(model.bounds, getattr(model, "data_format", None)),
            distance_scale=(model.bounds[1] - model.bounds[0])
            if self._distance.homogeneous
            else 1.0,
        )
        bar = tqdm(
            total=self.steps, desc="ALMA", unit="step", disable=not self.progress, leave=False
        )
        try:
            state = self._first_step(problem, x, classes, self._initial_state(x))
            bar.update(1)  # the bar counts all N steps, step 0 included
            step = self._step_function(problem, x, classes)
            for i in range(1, self.steps):
                state = step(state, i, x, classes)
                bar.update(1)
                if self.progress and ((i + 1) % self.check_steps == 0 or i == self.steps - 1):
                    bar.set_postfix(success=f"{state.adv_found.float32().mean().item():.1%}")
        finally:
            bar.close()
        return restore_type(state.best_adv)

    # -- Algorithm 2 ----------------------------------------------------------------------------

    def _initial_state(self, x: ep.Tensor) -> "ALMAState":
        n = len(x)

        def per_sample(value: float) -> ep.Tensor:
            return ep.full(x, (n,), value).astype(x.dtype)

        square_avg, momentum_buffer = rmsprop_init(x)
        return ALMAState(
            x_adv=x,
            rho=per_sample(self.rho_init),
            mu=per_sample(self.mu_init),
            prev_dlr=per_sample(0.0),
            logit_scale=per_sample(1.0),
            lr=per_sample(self.lr_init),
            square_avg=square_avg,
            momentum_buffer=momentum_buffer,
            adv_found=ep.zeros(x, (n,)).bool(),
            step_found=per_sample(self.steps + 1),  # no decay until found
            best_dist=per_sample(math.inf),
            best_adv=x,
        )

    def _constraint_and_distance(
        self,
        problem: "_Problem",
        x: ep.Tensor,
        classes: ep.Tensor,
        x_adv: ep.Tensor,
        logits: ep.Tensor,
        logit_scale: ep.Tensor,
    ) -> Tuple[ep.Tensor, ep.Tensor]:
        constraint = targeted_dlr_plus if problem.targeted else dlr_plus
        dlr = constraint(logits, classes, self.logit_tolerance, logit_scale)
        dist = problem.distance_fn(x, x_adv) / problem.distance_scale
        return dlr, dist

    def _first_step(
        self, problem: "_Problem", x: ep.Tensor, classes: ep.Tensor, state: "ALMAState"
    ) -> "ALMAState":
        """Step 0 (eager): checks the logits, takes the penalty term alone (the distance has no
        useful gradient, for L2 a NaN, at a zero perturbation) and finds the learning rates."""

        def objective(x_adv: ep.Tensor) -> Tuple[ep.Tensor, Tuple[ep.Tensor, ...]]:
            logits = problem.model(x_adv)
            checks.check_logits(logits, len(x))
            checks.check_classes_range(classes, logits.shape[-1], problem.targeted)
            logit_scale = state.logit_scale
            if logits.shape[-1] == 2:  # see constraints: the clean logit gap normalises
                logit_scale = stop_gradient(two_class_gap(logits))
            dlr, dist = self._constraint_and_distance(
                problem, x, classes, x_adv, logits, logit_scale
            )
            loss = self.penalty(dlr, state.rho, state.mu)
            return loss.sum(), (stop_gradient(dlr), stop_gradient(dist), logit_scale)

        _, (dlr, dist, logit_scale), grad = value_aux_and_grad(objective, x)
        grad = grad * problem.scale  # the gradient in [0, 1] coordinates
        lr = state.lr
        if self.init_lr_distance > 0:
            grad = _replace_vanishing_gradients(grad)
            lo, scale = problem.lo, problem.scale
            lr = find_initial_lr(
                lambda u: problem.distance_fn(x, lo + scale * u) / problem.distance_scale,
                (x - lo) / scale,
                grad,
                self.init_lr_distance,
            )
        state = state._replace(prev_dlr=dlr, logit_scale=logit_scale, lr=lr)
        return self._advance(problem, state, grad, dlr, dist, 0)

    def _step(
        self,
        problem: "_Problem",
        state: "ALMAState",
        i: Any,
        x: ep.Tensor,
        classes: ep.Tensor,
    ) -> "ALMAState":
        """Step i >= 1 of Algorithm 2: a pure function of the state (``i`` a Python int, or a
        0-d tensor when the step is compiled)."""
        check = (i + 1) % self.check_steps == 0

        def objective(x_adv: ep.Tensor) -> Tuple[ep.Tensor, Tuple[ep.Tensor, ...]]:
            logits = problem.model(x_adv)
            dlr, dist = self._constraint_and_distance(
                problem, x, classes, x_adv, logits, state.logit_scale
            )
            dlr_value = stop_gradient(dlr)
            # Lines 10-12: grow rho while no adversarial is found and the constraint did not
            # improve by a factor tau over the last M steps.
            rho = state.rho
            if check is not False:  # eagerly, only on check steps; compiled, a select
                improved = dlr_value < self.tau * state.prev_dlr
                kept = ep.logical_or(state.adv_found, improved)
                rho = _select(check, ep.where(kept, rho, self.gamma * rho), rho)
            prev_dlr = _select(check, dlr_value, state.prev_dlr)
            # Lines 5-6: EMA of dP/dy, projected onto [mu_min, mu_max].
            new_mu = self.penalty.grad(dlr_value, rho, state.mu)
            mu = ep.clip(self.alpha * state.mu + (1 - self.alpha) * new_mu, MU_MIN, MU_MAX)
            # Line 7: the augmented Lagrangian.
            loss = dist + self.penalty(dlr, rho, mu)
            return loss.sum(), (dlr_value, stop_gradient(dist), rho, mu, prev_dlr)

        _, aux, grad = value_aux_and_grad(objective, state.x_adv)
        dlr, dist, rho, mu, prev_dlr = aux
        state = state._replace(rho=rho, mu=mu, prev_dlr=prev_dlr)
        return self._advance(problem, state, grad * problem.scale, dlr, dist, i)

    def _advance(
        self,
        problem: "_Problem",
        state: "ALMAState",
        grad: ep.Tensor,
        dlr: ep.Tensor,
        dist: ep.Tensor,
        i: Any,
    ) -> "ALMAState":
        """Tracks the best adversarial, then takes the RMSProp step and projects onto the box."""
        ndim = grad.ndim
        is_adv = dlr < 0
        is_both = ep.logical_and(is_adv, dist < state.best_dist)
        newly_found = ep.logical_and(is_adv, ep.logical_not(state.adv_found))
        step_found = ep.where(newly_found, i * ep.ones_like(state.step_found), state.step_found)
        best_dist = ep.where(is_both, dist, state.best_dist)
        best_adv = ep.where(batch_view(is_both, ndim), state.x_adv, state.best_adv)
        adv_found = ep.logical_or(state.adv_found, is_adv)

        step_lr = exponential_decay(state.lr, self.lr_reduction, i, step_found, self.steps)
        direction, (square_avg, momentum_buffer) = rmsprop_update(
            grad,
            RMSPropState(state.square_avg, state.momentum_buffer),
            self.alpha_rms,
            self.momentum,
        )
        lo, scale = problem.lo, problem.scale
        x_adv = ep.clip(state.x_adv - scale * batch_view(step_lr, ndim) * direction, lo, lo + scale)
        if self.levels is not None:
            x_adv = _quantise(x_adv, lo, scale, self.levels)
        return state._replace(
            x_adv=x_adv,
            square_avg=square_avg,
            momentum_buffer=momentum_buffer,
            adv_found=adv_found,
            step_found=step_found,
            best_dist=best_dist,
            best_adv=best_adv,
        )

    # -- compilation --------------------------------------------------------------------------

    def _step_function(
        self, problem: "_Problem", x: ep.Tensor, classes: ep.Tensor
    ) -> Callable[..., "ALMAState"]:
        """The step to call for i >= 1: compiled (tf.function / jax.jit) where asked and
        possible, else eager. Compiled steps are cached per model, input shape and dtype, so a
        second batch of the same shape reuses the trace."""
        framework = framework_name(x)
        use_compiled = self.compile is True or (self.compile == "auto")
        if not use_compiled or framework not in ("tensorflow", "jax"):

            def eager(state: "ALMAState", i: int, x: ep.Tensor, classes: ep.Tensor) -> "ALMAState":
                return self._step(problem, state, i, x, classes)

            return eager

        key = (
            framework,
            tuple(x.shape),
            str(x.dtype),
            str(classes.dtype),
            problem.targeted,
            self._settings(),
        )
        per_model = self._compiled.setdefault(problem.model, {})
        if key not in per_model:

            def traced(
                state: "ALMAState", i: ep.Tensor, x: ep.Tensor, classes: ep.Tensor
            ) -> "ALMAState":
                self.trace_count += 1  # runs once per trace, not per call
                return self._step(problem, state, i, x, classes)

            per_model[key] = compile_step(traced, framework)
        compiled = per_model[key]

        def call(state: "ALMAState", i: int, x: ep.Tensor, classes: ep.Tensor) -> "ALMAState":
            step_index = ep.full(x, (), i).astype(x.dtype)
            return compiled(state, step_index, x, classes)

        return call

    def _settings(self) -> Tuple[Any, ...]:
        return (
            self._distance,
            self.steps,
            self.penalty,
            self.lr_reduction,
            self.check_steps,
            self.tau,
            self.gamma,
            self.alpha,
            self.alpha_rms,
            self.momentum,
            self.logit_tolerance,
            self.levels,
        )


class ALMAState(NamedTuple):
    """Everything that changes from one step to the next, per sample (explicit state, so that a
    step is a pure function and can be compiled)."""

    x_adv: ep.Tensor  # current iterate, in the model's units
    rho: ep.Tensor  # penalty parameter
    mu: ep.Tensor  # penalty multiplier
    prev_dlr: ep.Tensor  # constraint value at the last check
    logit_scale: ep.Tensor  # 2-class normaliser (ones otherwise)
    lr: ep.Tensor  # initial learning rate per sample
    square_avg: ep.Tensor  # RMSProp state
    momentum_buffer: ep.Tensor
    adv_found: ep.Tensor  # bool
    step_found: ep.Tensor  # step at which the sample first became adversarial
    best_dist: ep.Tensor
    best_adv: ep.Tensor


class _Problem(NamedTuple):
    """What stays fixed during one run (besides the inputs and classes)."""

    model: Any
    targeted: bool
    lo: float
    scale: float
    distance_fn: Callable[[ep.Tensor, ep.Tensor], ep.Tensor]
    distance_scale: float


def _select(condition: Any, if_true: ep.Tensor, if_false: ep.Tensor) -> ep.Tensor:
    """``if_true`` where ``condition`` holds: a Python bool (eager) or a 0-d tensor (compiled)."""
    if isinstance(condition, bool):
        return if_true if condition else if_false
    return ep.where(condition, if_true, if_false)


def _read_criterion(criterion: Any) -> Tuple[bool, ep.Tensor]:
    if isinstance(criterion, Misclassification):
        return False, criterion.labels
    if isinstance(criterion, TargetedMisclassification):
        return True, criterion.target_classes
    raise ValueError(
        "ALMA supports labels, fb.criteria.Misclassification and "
        f"fb.criteria.TargetedMisclassification, got {type(criterion).__name__}"
    )


def _as_criterion(criterion: Any, x: ep.Tensor) -> Any:
    """A Foolbox criterion with its classes on the inputs' framework. Labels may be given as a
    native tensor, an EagerPy tensor, a NumPy integer array, or a Python list or tuple of ints
    (Foolbox's own ``get_criterion`` takes tensors only)."""
    if isinstance(criterion, (list, tuple, np.ndarray, np.generic, int)):
        criterion = Misclassification(ep.from_numpy(x, _labels_array(criterion, "labels")))
    return _criterion_like(get_criterion(criterion), x)


def _labels_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a 1-D array of class indices, or an error saying what was given."""
    given = f"{type(value).__name__}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise ValueError(
            f"{name} must hold one class index per input (a list, tuple, array or tensor of "
            f"shape (N,)), got the single integer {value}"
        )
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(
            f"{name} must be a flat sequence of integer class indices, got a ragged {given} "
            f"({error})"
        ) from None
    if array.dtype.kind not in "iu":
        sample = repr(value[:3] if isinstance(value, (list, tuple)) else array.ravel()[:3])
        raise TypeError(
            f"{name} must be integer class indices (a list or tuple of ints, an integer "
            f"array or tensor), got a {given} of {array.dtype} values such as {sample}"
        )
    if array.ndim != 1:
        raise ValueError(
            f"{name} must hold one class index per input, shape (N,), got a {given} of shape "
            f"{array.shape}"
        )
    return np.array(array, copy=True)


def _criterion_like(criterion: Any, x: ep.Tensor) -> Any:
    """The criterion with its classes on the inputs' framework (lists and NumPy arrays accepted)."""
    if not isinstance(criterion, (Misclassification, TargetedMisclassification)):
        return criterion
    targeted, given = _read_criterion(criterion)
    classes = given
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
    elif classes is given:
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
