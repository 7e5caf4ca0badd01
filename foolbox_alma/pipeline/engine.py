"""The pipeline's unit of work: one shard of the data, attacked batch by batch. The one batch loop.

:func:`run_shard` is what every worker runs, in-process or as a Ray task, for every view
(``evaluate``, ``bench``, ``compare``, ``demo``): it rebuilds the model from its spec (once per
process), seeds the framework with a seed derived from the run's seed and the shard's index,
attacks the shard batch by batch with the passes counted, and scores the returned points with the
model (clean and adversarial predictions, success, distances in float64, and the other distances
asked for). Because everything a shard's result depends on travels with the shard (spec,
settings, seed, data), a shard computed in this process and one computed on another machine are
identical.

What a view adds to the loop goes through :class:`Hooks`, not through a loop of its own: the
benchmark times plain forward+backward passes around (or between the steps of) every batch's
attack call and records them in the shard's ``info``; the evaluation counts samples for its
progress bar.
"""

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ContextManager, Dict, Iterator, Optional, Tuple

import eagerpy as ep
import numpy as np

from .. import _runtime
from ..counting import counted_model, torch_module_of
from ..registry import AttackConfig, BuiltAttack
from . import fingerprint as fingerprints
from .errors import EvaluationError
from .models import device_of, model_of
from .sanity import zero_gradient_count

AttackCall = Callable[[Optional[ContextManager[Any]]], "BatchAttack"]
"""Runs the attack on the current batch, timed, with an optional context manager around it."""


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs besides the shard's data (picklable: specs, not live objects,
    except for a :class:`~foolbox_alma.pipeline.models.LiveModel`, which runs in-process only).

    ``rulers`` are distances the returned points are also measured in (the benchmark's
    ``measure``), by name. ``fingerprint`` is the model's (:mod:`.fingerprint`) when the run
    started: a worker whose model differs (a model file changed since) loads it again, and
    stops the run if it still differs. ``check_gradients`` counts, before each batch's attack,
    the samples whose input gradient is zero (:mod:`.sanity`).
    """

    model: Any  # a ModelSpec or a LiveModel
    attack: AttackConfig
    targeted: bool = False
    seed: int = 0
    batch_size: int = 100
    threads: Optional[int] = None
    keep_adversarials: bool = False
    rulers: Tuple[str, ...] = ()
    fingerprint: Optional[Dict[str, Any]] = None
    check_gradients: bool = False


@dataclass
class Shard:
    """Consecutive samples of the dataset: ``start`` is the first one's position."""

    index: int
    start: int
    x: np.ndarray
    labels: np.ndarray
    targets: Optional[np.ndarray]
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ShardResult:
    """What one shard gave, per sample, plus its counts, times and the hooks' records.

    ``distance`` is the distance of each returned point (finite also where it is not
    adversarial: failures count as +inf only in the metrics); ``measured`` holds the rulers'.
    """

    index: int
    indices: np.ndarray  # int64: positions in the data source
    labels: np.ndarray  # int64
    targets: np.ndarray  # int64 (-1 when untargeted)
    clean_prediction: np.ndarray  # int64
    adversarial_prediction: np.ndarray  # int64
    success: np.ndarray  # bool: the returned point is adversarial
    distance: np.ndarray  # float64
    forwards: int  # counted forward passes, in samples, over the shard
    backwards: int
    seconds: float  # the attack's time, without model loading and scoring
    started: str
    finished: str
    worker: str
    adversarials: Optional[np.ndarray] = None
    measured: Dict[str, np.ndarray] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)  # JSON-able (the hooks' records)

    ARRAYS = (
        "indices",
        "labels",
        "targets",
        "clean_prediction",
        "adversarial_prediction",
        "success",
        "distance",
    )
    SCALARS = {"index": int, "forwards": int, "backwards": int, "seconds": float}
    TEXTS = ("started", "finished", "worker")

    def __len__(self) -> int:
        return len(self.labels)

    def to_arrays(self) -> Dict[str, np.ndarray]:
        """The result as named arrays (what a shard file holds)."""
        out = {name: getattr(self, name) for name in self.ARRAYS}
        for name in (*self.SCALARS, *self.TEXTS):
            out[name] = np.asarray(getattr(self, name))
        for ruler, values in self.measured.items():
            out[f"measured:{ruler}"] = values
        out["info"] = np.asarray(json.dumps(self.info))
        if self.adversarials is not None:
            out["adversarials"] = self.adversarials
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> "ShardResult":
        values: Dict[str, Any] = {name: np.asarray(arrays[name]) for name in cls.ARRAYS}
        values.update({name: kind(arrays[name]) for name, kind in cls.SCALARS.items()})
        values.update({name: str(arrays[name]) for name in cls.TEXTS})
        values["adversarials"] = arrays["adversarials"] if "adversarials" in arrays else None
        values["measured"] = {
            key.split(":", 1)[1]: np.asarray(arrays[key])
            for key in arrays
            if key.startswith("measured:")
        }
        values["info"] = json.loads(str(arrays["info"]))
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass
class BatchAttack:
    """One batch attacked: the returned points and what it cost."""

    adversarials: np.ndarray
    forwards: int
    backwards: int
    seconds: float


class Hooks:
    """What a view adds to the batch loop of :func:`run_shard` (the defaults add nothing)."""

    def attack(
        self, counted: Tuple[Any, Any, Any], x: Any, labels: Any, call: AttackCall
    ) -> Tuple[BatchAttack, Dict[str, Any]]:
        """Runs ``call`` (the attack on batch ``x``) and returns its result and a JSON-able
        record of the batch for the shard's ``info["batches"]`` (empty: none kept)."""
        return call(None), {}

    def batch_done(self, samples: int) -> None:
        """Called after every batch with its number of samples (progress bars)."""


def attack_batch(
    counted: Tuple[Any, Any, Any],
    run: Callable[..., Any],
    x: Any,
    classes: Any,
    targeted: bool = False,
    *,
    around: Optional[ContextManager[Any]] = None,
) -> BatchAttack:
    """Runs ``run`` on one batch through a counted model (:func:`foolbox_alma.counting.counted_model`'s
    triple) and returns the adversarials as NumPy (waiting for them), the passes counted and the
    seconds. ``around``, a context manager, wraps the timed call (the benchmark's floor sampler)."""
    model, module, counting = counted
    counter = counting.counter
    fw0, bw0 = counter.forward_samples, counter.backward_samples
    with around if around is not None else contextlib.nullcontext():
        start = time.perf_counter()
        adv = run(model, module, x, classes, targeted)
        adv = np.array(ep.astensor(adv).numpy())  # waits for the result
        seconds = time.perf_counter() - start
    counter = counting.counter
    return BatchAttack(adv, counter.forward_samples - fw0, counter.backward_samples - bw0, seconds)


def predict(fmodel: Any, x: Any, batch_size: int) -> np.ndarray:
    """Classes the model predicts for native or EagerPy ``x``, in batches, as int64 NumPy."""
    x = ep.astensor(x)
    parts = [
        fmodel(x[lo : lo + batch_size]).argmax(axis=-1).numpy()
        for lo in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def measure(distance: Any, fmodel: Any, x: Any, adv: Any) -> np.ndarray:
    """Per-sample distances in float64: L1, L2 and Linf in NumPy (model's units), the package's
    distances (names or objects) as they are computed for the attack; ``"none"``: zeros (the
    benchmark's calibration)."""
    x, adv = ep.astensor(x), ep.astensor(adv)
    from ..distances import LpDistance, get_distance

    if isinstance(distance, LpDistance):  # measured in float64 like the names
        distance = distance.name
    if isinstance(distance, str) and distance == "none":
        return np.zeros(len(x))
    if isinstance(distance, str) and distance in ("l1", "l2", "linf"):
        delta = (adv.numpy().astype(np.float64) - x.numpy().astype(np.float64)).reshape(len(x), -1)
        if distance == "l1":
            return np.abs(delta).sum(1)
        if distance == "l2":
            return np.sqrt((delta**2).sum(1))
        return np.abs(delta).max(1) if delta.shape[1] else np.zeros(len(x))
    fn = get_distance(distance).bind(fmodel.bounds, getattr(fmodel, "data_format", None))
    return fn(x, adv).numpy().astype(np.float64)


@dataclass
class BatchScore:
    predictions: np.ndarray
    success: np.ndarray
    distances: np.ndarray  # float64, as measured (finite even where success is False)
    measured: Dict[str, np.ndarray]


def score_batch(
    fmodel: Any,
    attack: BuiltAttack,
    x: Any,
    adv: Any,
    labels: np.ndarray,
    targets: Optional[np.ndarray] = None,
    rulers: Tuple[str, ...] = (),
) -> BatchScore:
    """Checks returned points with the model (uncounted): adversarial when the prediction differs
    from the label (untargeted) or equals the target; measures their distances, in the attack's
    own (``own_scale`` where it has one) and in each ruler."""
    adv_native = _runtime.to_native(fmodel, adv) if isinstance(adv, np.ndarray) else adv
    predictions = predict(fmodel, adv_native, max(len(labels), 1))
    success = predictions == targets if targets is not None else predictions != labels
    if attack.own_scale is not None:
        own = np.asarray(attack.own_scale(fmodel, x, adv_native), np.float64)
    else:
        own = measure(attack.distance, fmodel, x, adv_native)
    measured = {r: measure(r, fmodel, x, adv_native) for r in rulers}
    return BatchScore(predictions, success, own, measured)


# -- one shard --------------------------------------------------------------------------------

_ATTACKS: Dict[Tuple[Any, str], BuiltAttack] = {}


def _built(config: AttackConfig, framework: str) -> BuiltAttack:
    """The attack of ``config``, built once per process (objects: each time)."""
    if config.attack is not None:  # objects are not hashable by value
        return config.build(framework)
    key = (config, framework)
    if key not in _ATTACKS:
        _ATTACKS[key] = config.build(framework)
    return _ATTACKS[key]


@contextlib.contextmanager
def frozen_parameters(fmodel: Any) -> Iterator[None]:
    """PyTorch parameters without gradients inside the block (as adv_lib's benchmarks do): every
    attack and the benchmark's floor then differentiate with respect to the inputs only, and
    attacks that call ``backward()`` leave no gradients in the caller's model."""
    module = torch_module_of(fmodel)
    if module is None:
        yield
        return
    previous = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in previous:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in previous:
            p.requires_grad_(flag)


class _Collected:
    """The per-sample arrays of a shard, filled batch by batch."""

    def __init__(self, shard: Shard, plan: Plan, rulers: Tuple[str, ...]):
        n = len(shard)
        self.clean = np.zeros(n, np.int64)
        self.predictions = np.zeros(n, np.int64)
        self.success = np.zeros(n, bool)
        self.distance = np.zeros(n, np.float64)
        self.measured = {r: np.zeros(n, np.float64) for r in rulers}
        self.adversarials = np.empty_like(shard.x) if plan.keep_adversarials else None
        self.forwards = self.backwards = 0
        self.seconds = 0.0
        self.batches: list = []
        self.zero_gradients: Optional[int] = None

    def info(self) -> Dict[str, Any]:
        """What the shard's ``info`` keeps besides the threads and device."""
        out: Dict[str, Any] = {"batches": self.batches} if self.batches else {}
        if self.zero_gradients is not None:
            out.update(zero_gradients=self.zero_gradients, gradients_checked=len(self.clean))
        return out

    def add(self, lo: int, hi: int, done: BatchAttack, score: BatchScore) -> None:
        self.forwards += done.forwards
        self.backwards += done.backwards
        self.seconds += done.seconds
        self.predictions[lo:hi] = score.predictions
        self.success[lo:hi] = score.success
        self.distance[lo:hi] = score.distances
        for ruler, values in score.measured.items():
            self.measured[ruler][lo:hi] = values
        if self.adversarials is not None:
            self.adversarials[lo:hi] = done.adversarials


def run_shard(plan: Plan, shard: Shard, hooks: Optional[Hooks] = None) -> ShardResult:
    """Attacks one shard (see the module docstring)."""
    hooks = hooks or Hooks()
    started = _now()
    fmodel = _verified_model(plan, shard)
    framework = _runtime.model_framework(fmodel)
    with _runtime.threads(framework, plan.threads), frozen_parameters(fmodel):
        used = {"threads": _runtime.threads_in_use(framework), "device": device_of(fmodel)}
        attack = _built(plan.attack, framework)
        if plan.targeted and not attack.supports_targeted:
            raise ValueError(f"attack {plan.attack.name!r} cannot run targeted")
        # the rulers other than the distance the attack's points are already measured in
        rulers = tuple(
            r for r in plan.rulers if r != attack.distance_name or attack.own_scale is not None
        )
        _runtime.seed_framework(framework, _runtime.derived_seed(plan.seed, shard.index))
        collected = _Collected(shard, plan, rulers)
        with counted_model(fmodel) as counted:
            for lo in range(0, len(shard), plan.batch_size):
                hi = min(lo + plan.batch_size, len(shard))
                _run_batch(plan, shard, lo, hi, fmodel, attack, counted, hooks, collected)
                hooks.batch_done(hi - lo)
    return ShardResult(
        index=shard.index,
        indices=np.asarray(shard.indices, np.int64),
        labels=np.asarray(shard.labels, np.int64),
        targets=np.asarray(shard.targets, np.int64)
        if shard.targets is not None
        else np.full(len(shard), -1, np.int64),
        clean_prediction=collected.clean,
        adversarial_prediction=collected.predictions,
        success=collected.success,
        distance=collected.distance,
        forwards=int(collected.forwards),
        backwards=int(collected.backwards),
        seconds=float(collected.seconds),
        started=started,
        finished=_now(),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        adversarials=collected.adversarials,
        measured=collected.measured,
        info=dict(used, **collected.info()),
    )


def _verified_model(plan: Plan, shard: Shard) -> Any:
    """The plan's model, checked against the fingerprint the run started with: loaded again
    once if it differs (this process may hold an older build of the same spec)."""
    fmodel = model_of(plan.model)
    if plan.fingerprint is None:
        return fmodel
    shape = shard.x.shape[1:]
    if fingerprints.check(fmodel, plan.fingerprint, shape) is None:
        return fmodel
    fmodel = model_of(plan.model, fresh=True)
    problem = fingerprints.check(fmodel, plan.fingerprint, shape)
    if problem is not None:
        text = plan.model.describe().get("text")
        raise EvaluationError(
            f"the model {text} changed while the run was going ({problem}): its results would "
            "mix two models; rerun once the model stays the same"
        )
    return fmodel


def _run_batch(
    plan: Plan,
    shard: Shard,
    lo: int,
    hi: int,
    fmodel: Any,
    attack: BuiltAttack,
    counted: Tuple[Any, Any, Any],
    hooks: Hooks,
    collected: _Collected,
) -> None:
    """Predicts, attacks (through the hooks) and scores samples ``lo:hi`` of the shard."""
    x = _runtime.to_native(fmodel, shard.x[lo:hi])
    labels = shard.labels[lo:hi]
    targets = shard.targets[lo:hi] if shard.targets is not None else None
    if plan.targeted and targets is None:
        raise ValueError(f"shard {shard.index} of a targeted run has no targets")
    chosen = targets if plan.targeted and targets is not None else labels
    classes = _runtime.to_native(fmodel, chosen)
    collected.clean[lo:hi] = predict(fmodel, x, hi - lo)
    if plan.check_gradients:
        zero = zero_gradient_count(fmodel, x, classes)
        collected.zero_gradients = (collected.zero_gradients or 0) + zero

    def call(around: Optional[ContextManager[Any]]) -> BatchAttack:
        return attack_batch(counted, attack.run, x, classes, plan.targeted, around=around)

    done, record = hooks.attack(counted, x, _runtime.to_native(fmodel, labels), call)
    score = score_batch(
        fmodel,
        attack,
        x,
        done.adversarials,
        labels,
        targets if plan.targeted else None,
        tuple(collected.measured),
    )
    collected.add(lo, hi, done, score)
    if record:
        collected.batches.append(record)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
