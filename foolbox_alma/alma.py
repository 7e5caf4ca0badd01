"""ALMA: the Augmented Lagrangian Method for Adversarial attacks, as a Foolbox minimisation attack.

One iteration of Algorithm 2 of Rony et al. (ICCV 2021) is :meth:`ALMA._iteration`, read top to
bottom with the paper's line numbers; the constraint (DLR+), the penalty-Lagrangian functions, the
optimiser pieces and the distances live in their own modules, the validation of inputs and labels in
:mod:`.checks`, the compilation of the step and its cache in :mod:`._compile`. Only ``ep.``
operations and ``model(...)`` are used, so the same code attacks PyTorch, TensorFlow and JAX models.

Two conventions hold everywhere below:

* **Coordinates.** The attack runs in coordinates scaled to [0, 1]: gradients are taken in the
  model's units and multiplied by the range ``hi - lo`` of the model's bounds, steps are scaled back
  by it, and L1/L2 distances are divided by it. Step-size-like settings (``lr_init``,
  ``init_lr_distance``) are thus in the paper's units whatever the bounds, and the adversarials of a
  model with bounds (0, 255) are exactly 255 times those of the same model with bounds (0, 1).
* **Where rho and mu change.** The paper (Algorithm 2) computes mu^(i+1) with rho^(i) (lines 5-6),
  takes the step with them (lines 7-9), and only then grows rho for step i + 1 (lines 10-13).
  The authors' code (adv_lib), which produced the paper's figures, grows rho at the check step
  *before* computing mu, so that the grown rho already enters that step's multiplier and loss.
  This implementation follows adv_lib (its results are the oracle of the tests); the difference is
  one step of delay in rho's growth every M steps.
"""

import dataclasses
import math
import weakref
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import eagerpy as ep
import foolbox as fb
from foolbox.attacks.base import MinimizationAttack, raise_if_kwargs
from foolbox.criteria import Misclassification, TargetedMisclassification
from tqdm.auto import tqdm

from . import checks
from ._compile import STEPS, compile_step
from ._dispatch import framework_name, stop_gradient, value_aux_and_grad
from .constraints import dlr_plus, targeted_dlr_plus, two_class_gap
from .distances import AUTO, AttackDistance, FirstStep, get_distance, l2_distances
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


@dataclasses.dataclass(frozen=True)
class ALMASettings:
    """Every setting that changes what ALMA computes, validated (make one with :meth:`create`).

    Frozen and hashable: it is the key of the compiled steps (:mod:`._compile`), its
    :meth:`record` is what evaluations and benchmarks store with their results, and it is what an
    :class:`ALMA` object carries to a worker process. See :class:`ALMA` for the meaning of each.
    """

    distance: AttackDistance
    steps: int
    penalty: Penalty
    lr_init: float
    lr_reduction: float
    init_lr_distance: FirstStep
    mu_init: float
    rho_init: float
    check_steps: int
    tau: float
    gamma: float
    alpha: float
    alpha_rms: float
    momentum: float
    logit_tolerance: float
    levels: Optional[int]
    compile: Union[str, bool]

    RECORDED = (
        "steps",
        "lr_init",
        "lr_reduction",
        "init_lr_distance",
        "mu_init",
        "rho_init",
        "check_steps",
        "tau",
        "gamma",
        "alpha",
        "alpha_rms",
        "momentum",
        "logit_tolerance",
        "levels",
        "compile",
    )

    @classmethod
    def create(cls, options: Mapping[str, Any]) -> "ALMASettings":
        """The settings from ``options``: one value per field, as given to :class:`ALMA` (whose
        signature holds the defaults and their meaning).

        Checks every value (a ``ValueError`` naming the setting and its valid range) and fills
        in the defaults that depend on others (``init_lr_distance`` from the distance, ``alpha``
        from ``steps``, ``alpha_rms`` and ``momentum`` from ``alpha``)."""
        o, names = options, [field.name for field in dataclasses.fields(cls)]
        if sorted(o) != sorted(names):
            raise TypeError(
                f"ALMASettings.create needs one value for each of {', '.join(names)}; got "
                f"{', '.join(o) or 'none'}"
            )
        metric = get_distance(o["distance"])
        steps = checks.integer_at_least("steps", o["steps"], 1)
        init_lr_distance = o["init_lr_distance"]
        if init_lr_distance is None:
            init_lr_distance = metric.init_lr_distance

        def fraction(name: str, default: float) -> float:  # in [0, 1); None takes the default
            value = default if o[name] is None else o[name]
            return checks.in_range(name, value, 0, 1, high_closed=False)

        alpha = fraction("alpha", default_alpha(steps))
        if o["compile"] not in ("auto", True, False):
            raise ValueError(f"compile must be 'auto', True or False, got {o['compile']!r}")
        return cls(
            distance=metric,
            steps=steps,
            penalty=get_penalty(o["penalty"]),
            lr_init=checks.positive("lr_init", o["lr_init"]),
            lr_reduction=checks.in_range("lr_reduction", o["lr_reduction"], 0, 1, low_closed=False),
            init_lr_distance=checks.first_step("init_lr_distance", init_lr_distance),
            mu_init=checks.in_range("mu_init", o["mu_init"], MU_MIN, MU_MAX),
            rho_init=checks.positive("rho_init", o["rho_init"]),
            check_steps=checks.integer_at_least("check_steps", o["check_steps"], 1),
            tau=checks.in_range("tau", o["tau"], 0, 1),
            gamma=checks.in_range("gamma", o["gamma"], 1, math.inf, low_closed=False),
            alpha=alpha,
            alpha_rms=fraction("alpha_rms", alpha),
            momentum=fraction("momentum", alpha),
            logit_tolerance=checks.in_range("logit_tolerance", o["logit_tolerance"], 0, math.inf),
            levels=checks.optional(checks.integer_at_least, "levels", o["levels"], 2),
            compile=o["compile"],
        )

    def record(self) -> Dict[str, Any]:
        """The settings as JSON-able values: what results are stored and matched with."""
        record: Dict[str, Any] = {
            "attack": "ALMA",
            "distance": repr(self.distance),
            "penalty": self.penalty.name,
        }
        for name in self.RECORDED:
            record[name] = getattr(self, name)
        return record


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

    The settings are validated once and frozen (:attr:`settings`, an :class:`ALMASettings`; read
    them as attributes: ``attack.steps``, ``attack.alpha``...); make a new object to change them.

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
            steps. ``"auto"``: the first step moves each input the L2 distance
            ``distance.auto_first_step`` (the paper's L2 setting 0.1, for inputs in [0, 1];
            LPIPS 0.01) whatever the distance, and the Lagrangian measures the distance in that
            step's units (``(D / unit) ** (1 / degree)``, per sample, read from D at the step and
            at twice the step), so that nothing depends on the distance's units or power. None
            takes the distance's default (L1 0.5, L2 0.1, CIEDE2000 1.0, ``"auto"`` for SSIM,
            MS-SSIM, LPIPS and for distances of one's own); 0 switches the finder off and uses
            ``lr_init``.
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
            ``jax.jit`` on JAX (traced once per model, input shape, dtype and settings, then
            reused by every later call, also from other ALMA objects with the same settings).
            ``"auto"`` (default) and True compile there; False runs every step eagerly. PyTorch
            always runs eagerly. Step 0 shares the compiled gradient; its checks and learning-rate
            finder run eagerly.

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
        init_lr_distance: Optional[FirstStep] = None,
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
        arguments = locals()  # as given: the defaults live in this signature alone
        self.settings = ALMASettings.create(
            {field.name: arguments[field.name] for field in dataclasses.fields(ALMASettings)}
        )
        self.progress = bool(progress)
        self.trace_count = 0  # how often this object traced a compiled step (tests, curiosity)

    @property
    def distance(self) -> AttackDistance:
        return self.settings.distance

    def __getattr__(self, name: str) -> Any:
        """The settings as attributes (``attack.steps``, ``attack.alpha``, ...)."""
        settings = self.__dict__.get("settings")
        if settings is not None and name in ALMASettings.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ALMASettings.__dataclass_fields__:
            raise AttributeError(
                f"ALMA's settings are frozen (validated once, and the key of its compiled "
                f"steps): make a new ALMA(..., {name}={value!r}) instead of setting {name}"
            )
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"{type(self).__name__}(distance={s.distance.name!r}, steps={s.steps}, "
            f"penalty={s.penalty.name!r}, init_lr_distance={s.init_lr_distance!r})"
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
        criterion = checks.as_criterion(criterion, x)
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
        criterion_ = checks.as_criterion(criterion, x)
        del inputs, criterion, kwargs, early_stop

        checks.check_model_has_gradients(model, x)
        checks.check_inputs(x, model)
        targeted, classes = checks.read_criterion(criterion_)
        checks.check_classes(classes, len(x), targeted)
        if len(x) == 0:
            return restore_type(x)

        lo, hi = model.bounds
        problem = _Problem(
            model=model,
            targeted=targeted,
            lo=lo,
            scale=hi - lo,
            distance_fn=self.distance.bind(model.bounds, getattr(model, "data_format", None)),
            distance_scale=(hi - lo) if self.distance.homogeneous else 1.0,
        )
        bar = tqdm(
            total=self.steps, desc="ALMA", unit="step", disable=not self.progress, leave=False
        )
        try:
            # Line 1: x~(0) = x, with rho(0), mu(0) and the optimiser's state.
            state = self._initial_state(x)
            state = self._first_iteration(problem, state, x, classes)
            bar.update(1)  # the bar counts all N steps, step 0 included
            step = self._step_function(problem, x, classes)
            for i in range(1, self.steps):  # Line 2
                state = step(state, i, x, classes)
                bar.update(1)
                if self.progress and ((i + 1) % self.check_steps == 0 or i == self.steps - 1):
                    bar.set_postfix(success=f"{state.adv_found.float32().mean().item():.1%}")
        finally:
            bar.close()
        return restore_type(state.best_adv)  # Line 17

    # -- Algorithm 2 ----------------------------------------------------------------------------

    def _initial_state(self, x: ep.Tensor) -> "ALMAState":
        n, s = len(x), self.settings

        def per_sample(value: float) -> ep.Tensor:
            return ep.full(x, (n,), value).astype(x.dtype)

        square_avg, momentum_buffer = rmsprop_init(x)
        return ALMAState(
            x_adv=x,
            rho=per_sample(s.rho_init),
            mu=per_sample(s.mu_init),
            prev_dlr=per_sample(0.0),
            logit_scale=per_sample(1.0),
            distance_unit=per_sample(1.0),
            distance_exponent=per_sample(1.0),
            lr=per_sample(s.lr_init),
            square_avg=square_avg,
            momentum_buffer=momentum_buffer,
            adv_found=ep.zeros(x, (n,)).bool(),
            step_found=per_sample(s.steps + 1),  # no decay until found
            best_dist=per_sample(math.inf),
            best_adv=x,
        )

    def _iteration(
        self,
        p: "_Problem",
        state: "ALMAState",
        i: Any,
        x: ep.Tensor,
        classes: ep.Tensor,
        first: bool = False,
        gradient: Optional[Tuple[ep.Tensor, Tuple[ep.Tensor, ...]]] = None,
    ) -> "ALMAState":
        """Iteration ``i`` of Algorithm 2: a pure function of the state (``i`` a Python int, or a
        0-d tensor when the step is compiled). ``first`` (step 0) also checks the logits, leaves
        the distance out of the loss (it has no useful gradient, for L2 a NaN, at a zero
        perturbation) and finds each sample's learning rate; its ``gradient`` may come compiled
        (:meth:`_first_iteration`)."""
        s = self.settings
        # Lines 3-8: g = dL/dx~ of the augmented Lagrangian, and what it measured on the way.
        if gradient is None:
            gradient = self._gradient(p, x, classes, state, i, first=first)
        grad, (dlr, dist, rho, mu, prev_dlr, logit_scale, _) = gradient
        if first:  # each sample's first step moves it a set distance
            grad, state = _first_step_size(p, s, x, grad, state)
        lr, unit, exponent = state.lr, state.distance_unit, state.distance_exponent
        # Line 17's bookkeeping: the closest adversarial so far, and when each was first found.
        ndim = grad.ndim
        is_adv = dlr < 0
        is_both = ep.logical_and(is_adv, dist < state.best_dist)
        newly_found = ep.logical_and(is_adv, ep.logical_not(state.adv_found))
        step_found = ep.where(newly_found, i * ep.ones_like(state.step_found), state.step_found)
        # Line 9: an RMSProp step with momentum, its learning rate decaying from the step the
        # sample was first found, projected onto the box (and quantised when asked).
        step_lr = exponential_decay(lr, s.lr_reduction, i, step_found, s.steps)
        x_adv, (square_avg, momentum_buffer) = _rmsprop_step(p, s, state, grad, step_lr)
        return ALMAState(
            x_adv=x_adv,
            rho=rho,
            mu=mu,
            prev_dlr=prev_dlr,
            logit_scale=logit_scale,
            distance_unit=unit,
            distance_exponent=exponent,
            lr=lr,
            square_avg=square_avg,
            momentum_buffer=momentum_buffer,
            adv_found=ep.logical_or(state.adv_found, is_adv),
            step_found=step_found,
            best_dist=ep.where(is_both, dist, state.best_dist),
            best_adv=ep.where(batch_view(is_both, ndim), state.x_adv, state.best_adv),
        )

    def _gradient(
        self,
        p: "_Problem",
        x: ep.Tensor,
        classes: ep.Tensor,
        state: "ALMAState",
        i: Any,
        *,
        first: Any,
        traced: bool = False,
    ) -> Tuple[ep.Tensor, Tuple[ep.Tensor, ...]]:
        """Lines 3-8 of iteration ``i``: the gradient of the augmented Lagrangian in the [0, 1]
        coordinates, with the constraint's value, the distance, the new rho and mu, the value of
        d at the last check, the 2-class logit scale and the logits.

        ``first`` (step 0: no distance in the loss, no update of mu, d becomes the reference for
        the first check) is a Python bool when eager; compiled, it is a 0-d boolean tensor, so
        that one compiled function, one trace of the model, serves every step."""
        s = self.settings
        check = _and(_not(first), (i + 1) % s.check_steps == 0)  # a tensor when compiled

        def lagrangian(x_adv: ep.Tensor) -> Tuple[ep.Tensor, Tuple[ep.Tensor, ...]]:
            # Lines 3-4: the logits z = f(x~) and the constraint d = DLR+(z, y) (tDLR+ targeted).
            logits = p.model(x_adv)
            if first is True and not traced:  # a compiled step's logits are checked on its results
                checks.check_logits(logits, len(x))
                checks.check_classes_range(classes, logits.shape[-1], p.targeted)
            logit_scale = state.logit_scale
            if first is not False and logits.shape[-1] == 2:  # constraints: the clean logit gap
                logit_scale = _select(first, stop_gradient(two_class_gap(logits)), logit_scale)
            constraint = targeted_dlr_plus if p.targeted else dlr_plus
            dlr = constraint(logits, classes, s.logit_tolerance, logit_scale)
            # D at step 0 has no useful gradient (for L2 a NaN at a zero perturbation): it is
            # measured there on x~ without its gradient, so that no NaN reaches g when compiled.
            dist = p.distance_fn(x, _select(first, stop_gradient(x_adv), x_adv)) / p.distance_scale
            d = stop_gradient(dlr)
            # Lines 10-13, placed before lines 5-6 as in adv_lib (module docstring): rho grows
            # every M steps while no adversarial is found and d did not fall below tau * d(i-M).
            rho, prev_dlr = state.rho, _select(first, d, state.prev_dlr)
            if check is not False:  # eagerly, only on check steps; compiled, a select
                improved = d < s.tau * state.prev_dlr
                kept = ep.logical_or(state.adv_found, improved)
                rho = _select(check, ep.where(kept, rho, s.gamma * rho), rho)
                prev_dlr = _select(check, d, prev_dlr)
            # Lines 5-6: mu follows an EMA of dP/dd, projected onto [mu_min, mu_max] (from i = 1).
            mu = state.mu
            if first is not True:
                mu_hat = s.penalty.grad(d, rho, state.mu)
                updated = ep.clip(s.alpha * state.mu + (1 - s.alpha) * mu_hat, MU_MIN, MU_MAX)
                mu = _select(first, mu, updated)
            # Line 7: the augmented Lagrangian L = D(x~, x) + P(d, rho, mu), D in the units of
            # the first step under "auto" (a monotone map per sample: the same minimiser).
            penalty = s.penalty(dlr, rho, mu)
            loss = penalty
            if first is not True:
                scaled = _in_step_units(dist, state) if s.init_lr_distance == AUTO else dist
                loss = _select(first, penalty, scaled + penalty)
            aux = (d, stop_gradient(dist), rho, mu, prev_dlr, logit_scale, stop_gradient(logits))
            return loss.sum(), aux

        # Line 8: g = dL/dx~, in the [0, 1] coordinates (module docstring).
        _, aux, grad = value_aux_and_grad(lagrangian, state.x_adv)
        return grad * p.scale, aux

    def _first_iteration(
        self, p: "_Problem", state: "ALMAState", x: ep.Tensor, classes: ep.Tensor
    ) -> "ALMAState":
        """Step 0. Where the steps are compiled, it runs through the same two compiled functions
        as every later step (eager, it would cost several compiled steps on TensorFlow and tens
        of them on JAX), with only the learning-rate finder (:func:`_first_step_size`, whose
        distance :mod:`.distances._backend` compiles) eager in between. Should the gradient not
        trace, the eager step runs instead, and raises the clear error about the model or labels,
        if any."""
        compiled = self._compiled(p, x, classes)
        if compiled is None:
            return self._iteration(p, state, 0, x, classes, first=True)
        gradient, update = compiled
        index = _index(x, 0)
        try:
            grad, aux = gradient(state, index, x, classes, _flag(x, True))
        except Exception:  # the eager step says what is wrong
            return self._iteration(p, state, 0, x, classes, first=True)
        logits = aux[-1]
        checks.check_logits(logits, len(x))
        checks.check_classes_range(classes, logits.shape[-1], p.targeted)
        grad, state = _first_step_size(p, self.settings, x, grad, state)
        return update(state, index, x, classes, (grad, aux))

    # -- compilation --------------------------------------------------------------------------

    def _step_function(
        self, problem: "_Problem", x: ep.Tensor, classes: ep.Tensor
    ) -> Callable[..., "ALMAState"]:
        """The step to call for i >= 1: compiled where asked and possible (:meth:`_compiled`),
        else eager."""
        compiled = self._compiled(problem, x, classes)
        if compiled is None:

            def eager(state: "ALMAState", i: int, x: ep.Tensor, classes: ep.Tensor) -> "ALMAState":
                return self._iteration(problem, state, i, x, classes)

            return eager
        gradient, update = compiled
        later = _flag(x, False)

        def call(state: "ALMAState", i: int, x: ep.Tensor, classes: ep.Tensor) -> "ALMAState":
            index = _index(x, i)
            return update(state, index, x, classes, gradient(state, index, x, classes, later))

        return call

    def _traced(
        self, kind: str, p: "_Problem", state: "ALMAState", i: ep.Tensor, x: ep.Tensor,
        classes: ep.Tensor, extra: Any,
    ) -> Any:  # fmt: skip
        """What a compiled function computes: ``"gradient"``, lines 3-8 (``extra``: the step-0
        flag), or ``"update"``, the rest of the step (``extra``: the gradient and its aux)."""
        if kind == "gradient":
            return self._gradient(p, x, classes, state, i, first=extra, traced=True)
        return self._iteration(p, state, i, x, classes, gradient=extra)

    def _compiled(
        self, problem: "_Problem", x: ep.Tensor, classes: ep.Tensor
    ) -> Optional[Tuple[Callable[..., Any], Callable[..., Any]]]:
        """A step compiled with tf.function / jax.jit as two functions, the gradient (the model's
        passes, traced once for every step, step 0 included) and the update (Algorithm 2's
        bookkeeping and line 9); None where the framework has no compiler or ``compile=False``.
        Compiled functions live in :data:`foolbox_alma._compile.STEPS`, per model, input shape,
        dtype and settings, so later batches, shards and ALMA objects with the same settings
        reuse the trace. The cache holds models weakly, and so do the compiled functions (a
        strong reference would keep every attacked model alive)."""
        framework = framework_name(x)
        if self.compile is False or framework not in ("tensorflow", "jax"):
            return None
        key = (framework, tuple(x.shape), str(x.dtype), str(classes.dtype), problem.targeted)

        def maker(kind: str) -> Callable[[], Callable[..., Any]]:
            def make() -> Callable[..., Any]:
                model = weakref.ref(problem.model)
                template = problem._replace(model=None)

                def traced(*args: Any) -> Any:
                    self.trace_count += 1  # runs once per trace, not per call
                    STEPS.traces += 1
                    return self._traced(kind, template._replace(model=model()), *args)

                return compile_step(traced, framework)

            return make

        gradient, update = (
            STEPS.get(problem.model, (kind,) + key + (self.settings,), maker(kind))
            for kind in ("gradient", "update")
        )
        return gradient, update


class ALMAState(NamedTuple):
    """Everything that changes from one step to the next, per sample (explicit state, so that a
    step is a pure function and can be compiled)."""

    x_adv: ep.Tensor  # current iterate, in the model's units
    rho: ep.Tensor  # penalty parameter
    mu: ep.Tensor  # penalty multiplier
    prev_dlr: ep.Tensor  # constraint value at the last check
    logit_scale: ep.Tensor  # 2-class normaliser (ones otherwise)
    distance_unit: ep.Tensor  # under "auto", D per L2 length ** degree along the first step
    distance_exponent: ep.Tensor  # under "auto", 1 / that degree (ones otherwise)
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
    scale: float  # hi - lo: the attack runs in [0, 1] coordinates
    distance_fn: Callable[[ep.Tensor, ep.Tensor], ep.Tensor]
    distance_scale: float  # hi - lo for the Lp norms, 1 for distances of [0, 1] images


def _select(condition: Any, if_true: ep.Tensor, if_false: ep.Tensor) -> ep.Tensor:
    """``if_true`` where ``condition`` holds: a Python bool (eager) or a 0-d tensor (compiled)."""
    if isinstance(condition, bool):
        return if_true if condition else if_false
    return ep.where(condition, if_true, if_false)


def _not(condition: Any) -> Any:
    """Logical not of a Python bool (eager) or a 0-d boolean tensor (compiled)."""
    return not condition if isinstance(condition, bool) else ep.logical_not(condition)


def _and(a: Any, b: Any) -> Any:
    """Logical and of Python bools (eager) or 0-d boolean tensors (compiled), a bool if it can."""
    for known, other in ((a, b), (b, a)):
        if isinstance(known, bool):
            return other if known else False
    return ep.logical_and(a, b)


def _index(x: ep.Tensor, i: int) -> ep.Tensor:
    """The step index as a 0-d tensor of the inputs' dtype (a compiled step's argument)."""
    return ep.full(x, (), i).astype(x.dtype)


def _flag(x: ep.Tensor, value: bool) -> ep.Tensor:
    """A 0-d boolean tensor (a compiled step's argument: one trace for both values)."""
    return ep.full(x, (), float(value)).astype(x.dtype) > 0


def _first_step_size(
    p: _Problem, s: ALMASettings, x: ep.Tensor, grad: ep.Tensor, state: "ALMAState"
) -> Tuple[ep.Tensor, "ALMAState"]:
    """Step 0's gradient (vanishing ones replaced by random directions) and the state with each
    sample's learning rate (and, under ``"auto"``, D's unit and exponent) set from it, unless the
    finder is off (``init_lr_distance=0``)."""
    if s.init_lr_distance == 0:
        return grad, state
    grad = _replace_vanishing_gradients(grad)
    lr = _initial_lr(p, s, x, grad)
    unit, exponent = state.distance_unit, state.distance_exponent
    if s.init_lr_distance == AUTO:
        unit, exponent = _step_units(p, x, grad, lr)
    return grad, state._replace(lr=lr, distance_unit=unit, distance_exponent=exponent)


def _initial_lr(p: _Problem, s: ALMASettings, x: ep.Tensor, grad: ep.Tensor) -> ep.Tensor:
    """Each sample's learning rate: its first (plain gradient) step moves it ``init_lr_distance``
    in the distance D, or, with ``"auto"``, ``D.auto_first_step`` in L2 (in [0, 1] coordinates,
    as the paper's L2 setting), which measures no D at all: no value in D's units to tune."""
    u = (x - p.lo) / p.scale
    if s.init_lr_distance == AUTO:
        return find_initial_lr(lambda v: l2_distances(u, v), u, grad, s.distance.auto_first_step)
    return find_initial_lr(
        lambda v: p.distance_fn(x, p.lo + p.scale * v) / p.distance_scale,
        u,
        grad,
        float(s.init_lr_distance),
    )


def _step_units(
    p: _Problem, x: ep.Tensor, grad: ep.Tensor, lr: ep.Tensor
) -> Tuple[ep.Tensor, ep.Tensor]:
    """D's unit and inverse degree along each sample's first step, from two evaluations of D (at
    the step and at twice the step; no model pass), so that ``(D / unit) ** exponent`` grows like
    the L2 length along the step and equals it there.

    The degree ``k`` is read from ``D(2 s) / D(s) = 2^k`` (1 for norms and CIEDE2000, 2 for SSIM
    and LPIPS near the input); the unit is ``D(s) / |s|^k``. Where D does not grow along the step
    (zero, flat or not finite) the sample keeps D as it is (unit 1, exponent 1)."""
    u = (x - p.lo) / p.scale
    sizes, values = [], []
    for factor in (1.0, 2.0):
        v = ep.clip(u - factor * batch_view(lr, grad.ndim) * grad, 0, 1)
        sizes.append(l2_distances(u, v))
        values.append(p.distance_fn(x, p.lo + p.scale * v) / p.distance_scale)
    valid = ep.logical_and(values[0] > 0, values[1] > values[0])
    valid = ep.logical_and(valid, sizes[1] > sizes[0])
    ones = ep.ones_like(lr)
    # elsewhere 1 and 2 for both: degree 1, unit 1, and no log of 0 anywhere
    value, value_2, size, size_2 = (
        ep.where(valid, t, fallback * ones)
        for t, fallback in zip((*values, *sizes), (1.0, 2.0, 1.0, 2.0))
    )
    degree = ep.clip(ep.log(value_2 / value) / ep.log(size_2 / size), 0.25, 4.0)
    unit = ep.exp(ep.log(value) - degree * ep.log(size))
    valid = ep.logical_and(valid, ep.logical_not(ep.logical_or(ep.isnan(unit), ep.isinf(unit))))
    return ep.where(valid, unit, ones), ep.where(valid, 1 / degree, ones)


def _in_step_units(dist: ep.Tensor, state: "ALMAState") -> ep.Tensor:
    """D as an L2-like length per sample, ``(D / unit) ** exponent``: the L2 length of the first
    step there, growing like L2 along it, whatever D's units and power (:func:`_step_units`)."""
    ratio = ep.maximum(dist / state.distance_unit, 1e-30)
    return ep.exp(ep.log(ratio) * state.distance_exponent)


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


def _rmsprop_step(
    p: _Problem, s: ALMASettings, state: "ALMAState", grad: ep.Tensor, step_lr: ep.Tensor
) -> Tuple[ep.Tensor, RMSPropState]:
    """Line 9 of Algorithm 2: the next ``x_adv`` (an RMSProp step with momentum at the learning
    rates ``step_lr``, projected onto the box, quantised when asked) and RMSProp's next state."""
    direction, rms = rmsprop_update(
        grad, RMSPropState(state.square_avg, state.momentum_buffer), s.alpha_rms, s.momentum
    )
    x_adv = ep.clip(
        state.x_adv - p.scale * batch_view(step_lr, grad.ndim) * direction, p.lo, p.lo + p.scale
    )
    if s.levels is not None:
        x_adv = _quantise(x_adv, p.lo, p.scale, s.levels)
    return x_adv, rms


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
