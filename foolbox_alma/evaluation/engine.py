"""The evaluation engine's unit of work: one shard of the data, attacked in batches.

:func:`run_shard` is what every worker runs, in-process or as a Ray task: it rebuilds the model
from its spec (cached per process), seeds the framework with a seed derived from the run's seed
and the shard's index, attacks the shard batch by batch with the passes counted, and scores the
returned points with the model (clean and adversarial predictions, success, distance in float64).
Because everything a shard's result depends on travels with the shard (spec, settings, seed,
data), a shard computed in this process and one computed on another machine are identical.

:func:`attack_batch` and :func:`score_batch` are the two steps the benchmark shares with it.
"""

import contextlib
import os
import socket
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, ContextManager, Dict, Optional, Tuple

import eagerpy as ep
import numpy as np

from .. import _runtime
from ..counting import counted_model
from .attacks import AttackConfig, BuiltAttack, build


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs besides the shard's data (picklable: specs, not live objects)."""

    model: Any  # a ModelSpec
    attack: AttackConfig
    targeted: bool = False
    seed: int = 0
    batch_size: int = 100
    threads: Optional[int] = None
    keep_adversarials: bool = False


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
    """What one shard gave, per sample, plus its counts and times."""

    index: int
    indices: np.ndarray  # int64: positions in the data source
    labels: np.ndarray  # int64
    targets: np.ndarray  # int64 (-1 when untargeted)
    clean_prediction: np.ndarray  # int64
    adversarial_prediction: np.ndarray  # int64
    success: np.ndarray  # bool: the returned point is adversarial
    distance: np.ndarray  # float64, inf where no adversarial was found
    forwards: int  # counted forward passes, in samples, over the shard
    backwards: int
    seconds: float  # the attack's time, without model loading and scoring
    started: str
    finished: str
    worker: str
    adversarials: Optional[np.ndarray] = None

    ARRAYS = (
        "indices",
        "labels",
        "targets",
        "clean_prediction",
        "adversarial_prediction",
        "success",
        "distance",
    )

    def to_arrays(self) -> Dict[str, np.ndarray]:
        out = {name: getattr(self, name) for name in self.ARRAYS}
        for name in ("index", "forwards", "backwards", "seconds"):
            out[name] = np.asarray(getattr(self, name))
        for name in ("started", "finished", "worker"):
            out[name] = np.asarray(getattr(self, name))
        if self.adversarials is not None:
            out["adversarials"] = self.adversarials
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> "ShardResult":
        values: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "adversarials":
                values[f.name] = arrays["adversarials"] if "adversarials" in arrays else None
            elif f.name in cls.ARRAYS:
                values[f.name] = np.asarray(arrays[f.name])
            elif f.name in ("started", "finished", "worker"):
                values[f.name] = str(arrays[f.name])
            elif f.name == "seconds":
                values[f.name] = float(arrays[f.name])
            else:
                values[f.name] = int(arrays[f.name])
        return cls(**values)


@dataclass
class BatchAttack:
    """One batch attacked: the returned points and what it cost."""

    adversarials: np.ndarray
    forwards: int
    backwards: int
    seconds: float


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
    distances (names or objects) as they are computed for the attack."""
    x, adv = ep.astensor(x), ep.astensor(adv)
    from ..distances.lp import LpDistance

    if isinstance(distance, LpDistance):  # measured in float64 like the names
        distance = distance.name
    if isinstance(distance, str) and distance == "none":  # calibration
        return np.zeros(len(x))
    if isinstance(distance, str) and distance in ("l1", "l2", "linf"):
        delta = (adv.numpy().astype(np.float64) - x.numpy().astype(np.float64)).reshape(len(x), -1)
        if distance == "l1":
            return np.abs(delta).sum(1)
        if distance == "l2":
            return np.sqrt((delta**2).sum(1))
        return np.abs(delta).max(1) if delta.shape[1] else np.zeros(len(x))
    from ..distances import get_distance

    fn = get_distance(distance).bind(fmodel.bounds, getattr(fmodel, "data_format", None))
    return fn(x, adv).numpy().astype(np.float64)


@dataclass
class BatchScore:
    predictions: np.ndarray
    success: np.ndarray
    distances: np.ndarray  # float64, as measured (finite even where success is False)


def score_batch(
    fmodel: Any,
    distance: Any,
    x: Any,
    adv: Any,
    labels: np.ndarray,
    targets: Optional[np.ndarray] = None,
) -> BatchScore:
    """Checks returned points with the model (uncounted): adversarial when the prediction differs
    from the label (untargeted) or equals the target; and measures their distances."""
    adv_native = _runtime.to_native(fmodel, adv) if isinstance(adv, np.ndarray) else adv
    predictions = predict(fmodel, adv_native, max(len(labels), 1))
    success = predictions == targets if targets is not None else predictions != labels
    return BatchScore(predictions, success, measure(distance, fmodel, x, adv_native))


# -- one shard --------------------------------------------------------------------------------

_MODELS: Dict[Any, Any] = {}
_ATTACKS: Dict[Tuple[Any, str], BuiltAttack] = {}


def load_model(spec: Any) -> Any:
    """The Foolbox model of ``spec``, built once per process."""
    if spec not in _MODELS:
        _MODELS[spec] = spec.load()
    return _MODELS[spec]


def _built(config: AttackConfig, framework: str) -> BuiltAttack:
    if config.attack is not None:  # objects are not hashable by value: build each time
        return build(config, framework)
    key = (config, framework)
    if key not in _ATTACKS:
        _ATTACKS[key] = build(config, framework)
    return _ATTACKS[key]


def run_shard(
    plan: Plan, shard: Shard, on_batch: Optional[Callable[[int], object]] = None
) -> ShardResult:
    """Attacks one shard (see the module docstring). ``on_batch(samples)`` is called after
    every batch (progress)."""
    started = _now()
    fmodel = load_model(plan.model)
    framework = _runtime.model_framework(fmodel)
    with _runtime.threads(framework, plan.threads):
        attack = _built(plan.attack, framework)
        if plan.targeted and not attack.supports_targeted:
            raise ValueError(f"attack {plan.attack.name!r} cannot run targeted")
        _runtime.seed_framework(framework, _runtime.derived_seed(plan.seed, shard.index))
        n = len(shard)
        clean = np.zeros(n, np.int64)
        adv_pred = np.zeros(n, np.int64)
        success = np.zeros(n, bool)
        distance = np.full(n, np.inf)
        adversarials = np.empty_like(shard.x) if plan.keep_adversarials else None
        forwards = backwards = 0
        seconds = 0.0
        with counted_model(fmodel) as counted:
            for lo in range(0, n, plan.batch_size):
                hi = min(lo + plan.batch_size, n)
                x = _runtime.to_native(fmodel, shard.x[lo:hi])
                labels = shard.labels[lo:hi]
                targets = shard.targets[lo:hi] if shard.targets is not None else None
                if plan.targeted and targets is None:
                    raise ValueError(f"shard {shard.index} of a targeted run has no targets")
                chosen = targets if plan.targeted and targets is not None else labels
                classes = _runtime.to_native(fmodel, chosen)
                clean[lo:hi] = predict(fmodel, x, hi - lo)
                done = attack_batch(counted, attack.run, x, classes, plan.targeted)
                forwards += done.forwards
                backwards += done.backwards
                seconds += done.seconds
                score = score_batch(
                    fmodel,
                    attack.distance,
                    x,
                    done.adversarials,
                    labels,
                    targets if plan.targeted else None,
                )
                adv_pred[lo:hi] = score.predictions
                success[lo:hi] = score.success
                distance[lo:hi] = np.where(score.success, score.distances, np.inf)
                if adversarials is not None:
                    adversarials[lo:hi] = done.adversarials
                if on_batch is not None:
                    on_batch(hi - lo)
    return ShardResult(
        index=shard.index,
        indices=np.asarray(shard.indices, np.int64),
        labels=np.asarray(shard.labels, np.int64),
        targets=np.asarray(shard.targets, np.int64)
        if shard.targets is not None
        else np.full(len(shard), -1, np.int64),
        clean_prediction=clean,
        adversarial_prediction=adv_pred,
        success=success,
        distance=distance,
        forwards=int(forwards),
        backwards=int(backwards),
        seconds=float(seconds),
        started=started,
        finished=_now(),
        worker=f"{socket.gethostname()}:{os.getpid()}",
        adversarials=adversarials,
    )


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
