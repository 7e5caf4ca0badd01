"""Runs the attacks on one model and one set of images, and keeps what each one did.

Each attack at each step budget is one run of the pipeline's batch loop
(:func:`foolbox_alma.pipeline.engine.run_shard`, one shard holding every image) with the
benchmark's :class:`FloorTiming` hooks: around every batch (or between the attack's steps) plain
forward+backward passes are timed, the attack runs with its passes counted (see
:mod:`foolbox_alma.counting`), and the returned points are checked with the model (untimed,
uncounted) and their distances measured in float64. Each attack's result is saved in the
pipeline's store (``<out>/attacks/<attack>@<steps>/``) when an output folder is given, and a
later run with the same settings reuses it.
"""

import dataclasses
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence, Tuple, Union

import eagerpy as ep
import foolbox as fb
import numpy as np
from tqdm.auto import tqdm

from .. import _runtime, metrics
from .._dispatch import framework_name
from .._io import jsonable
from ..distances import get_distance
from ..pipeline.engine import BatchAttack, Hooks, Plan, Shard, ShardResult, predict, run_shard
from ..pipeline.models import LiveModel
from ..pipeline.store import RunFolder
from ..registry import AttackConfig, AttackSpec, select
from ..timing import StepSampler, floor_pass, time_passes

RESULT_VERSION = 2  # 2: stored in the pipeline's run folders
TIMINGS = ("auto", "steps", "around")


@dataclass
class AttackResult(metrics.PerSampleMetrics):
    """What one attack did at one step budget, per sample and in total.

    ``distances`` are those of the returned points (in the model's input units for L1/L2) in the
    distance the attack minimises, on its own scale; ``measured`` holds them in other distances
    (the rulers asked for with ``measure``), by name. ``success`` says which of them the model
    misclassifies. ``seconds`` is the attack's time over
    all batches, ``floor_seconds`` the estimated time of as many plain forward+backward passes as
    the attack made (counted backwards), measured around each batch.
    """

    name: str
    label: str
    source: str
    distance: str
    steps: int
    budget: str
    settings: Dict[str, Any]
    distances: np.ndarray
    success: np.ndarray
    forwards: float
    backwards: float
    seconds: float
    floor_seconds: float
    floor_passes_timed: int
    batches: List[Dict[str, Any]] = field(default_factory=list)
    repeat_seconds: List[float] = field(default_factory=list)
    repeat_ratios: List[float] = field(default_factory=list)
    identity: Dict[str, Any] = field(default_factory=dict)
    started: str = ""  # when this attack itself ran ("" in results saved before dates were kept)
    finished: str = ""
    # read from an earlier run's file instead of computed now (kept in the run's results.json,
    # not in the per-attack file)
    loaded: bool = False
    measured: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.steps}"

    def median_in(self, distance: str) -> float:
        """Median in another distance (``measured``; the own one when it is ``distance``),
        failures as +inf; NaN when not measured."""
        if distance in self.measured:
            return metrics.median_distance(self.measured[distance], self.success)
        return self.median if distance == self.distance else math.nan

    @property
    def overhead(self) -> float:
        """Attack time / time of the same number of plain forward+backward passes (the median
        over repeats when the attack was repeated)."""
        if self.repeat_ratios:
            return float(np.median(self.repeat_ratios))
        return self.seconds / self.floor_seconds if self.floor_seconds > 0 else math.nan

    def to_json(self) -> Dict[str, Any]:
        record = asdict(self)
        record.pop("loaded")
        record["distances"] = [float(d) for d in self.distances]
        record["success"] = [bool(s) for s in self.success]
        record["measured"] = {k: [float(d) for d in v] for k, v in self.measured.items()}
        record["version"] = RESULT_VERSION
        return record

    @classmethod
    def from_json(cls, record: Dict[str, Any]) -> "AttackResult":
        record = dict(record)
        record.pop("version", None)
        record["loaded"] = bool(record.get("loaded", False))
        record["distances"] = np.asarray(record["distances"], dtype=np.float64)
        record["success"] = np.asarray(record["success"], dtype=bool)
        record["measured"] = {
            k: np.asarray(v, dtype=np.float64) for k, v in record.get("measured", {}).items()
        }
        return cls(**record)


@dataclass
class BenchmarkRun:
    """The results of one benchmark run and what it ran on."""

    results: List[AttackResult]
    labels: np.ndarray
    clean_accuracy: float
    info: Dict[str, Any]

    def by_distance(self) -> Dict[str, List[AttackResult]]:
        groups: Dict[str, List[AttackResult]] = {}
        for r in self.results:
            groups.setdefault(r.distance, []).append(r)
        return groups

    def best_distances(self, distance: str) -> np.ndarray:
        """Per-sample best distance over every attack of the run that measures ``distance``."""
        return metrics.best_distances(
            [r.distances_with_failures for r in self.by_distance()[distance]]
        )

    def optimality(self, result: AttackResult) -> float:
        return metrics.optimality(
            result.distances_with_failures,
            self.best_distances(result.distance),
            self.clean_accuracy,
        )

    def to_json(self) -> Dict[str, Any]:
        return {
            "info": self.info,
            "clean_accuracy": self.clean_accuracy,
            "labels": [int(v) for v in self.labels],
            "optimality": {r.key: _finite_or_none(self.optimality(r)) for r in self.results},
            "eps_max": {
                d: _finite_or_none(_largest_finite(self.best_distances(d)))
                for d in self.by_distance()
            },
            # the run's record says which results it loaded (the per-attack files do not)
            "results": [dict(r.to_json(), loaded=r.loaded) for r in self.results],
        }


def run_benchmark(
    fmodel: fb.Model,
    images: Any,
    labels: Any,
    attacks: Optional[Sequence[Union[str, AttackSpec]]] = None,
    *,
    steps: Union[int, Sequence[int]] = 100,
    batch_size: Optional[int] = None,
    seed: int = 0,
    out: Union[str, Path, None] = None,
    resume: bool = True,
    floor_passes: Optional[int] = None,
    timing: str = "auto",
    threads: Optional[int] = None,
    repeats: int = 1,
    progress: bool = True,
    model_name: str = "custom",
    info: Optional[Dict[str, Any]] = None,
    measure: Sequence[str] = (),
) -> BenchmarkRun:
    """Runs ``attacks`` (untargeted) at each step budget on ``(images, labels)``.

    Args:
        fmodel: Any Foolbox model with gradients (PyTorch, TensorFlow, JAX).
        images: Native tensor of inputs within ``fmodel.bounds``.
        labels: Native tensor of integer labels.
        attacks: Registry names, groups (``"l1"``, ``"foolbox"``...) or :class:`AttackSpec`
            objects; None runs every attack available on the framework.
        steps: One step budget or several (each attack runs once per budget).
        batch_size: Images per attack call (all at once when None).
        seed: The run's seed; every attack runs with the framework seeded from it (the same
            seed for every attack and budget).
        out: Folder for the attacks' results (``attacks/<name>@<steps>/``, the pipeline's run
            folders); with ``resume`` an attack whose folder holds the same settings is not run
            again.
        resume: Reuse saved results with the same settings.
        floor_passes: At most this many plain passes timed per batch; None times as many as
            the budget allows (the fairest, most costly); 0 times none (no time ratio).
        timing: How the floor is interleaved with the attack (see :mod:`foolbox_alma.timing`):
            ``"steps"`` (a floor pass between attack steps; PyTorch modules only), ``"around"``
            (half of the floor passes before each batch, half after) or ``"auto"`` (steps where
            possible).
        threads: CPU threads of the framework during the run (PyTorch: ``set_num_threads``,
            restored afterwards; TensorFlow: intra-op threads, if not yet initialised). On
            cores shared with other jobs one thread can be several times faster than two.
        repeats: Run every attack this many times (round-robin over the attacks) and report the
            median time and time ratio, with their range; the distances are the first run's.
        progress: One progress bar per attack (in passes per sample).
        model_name: Recorded with the results, and part of the settings a resumed run matches.
        info: Extra metadata recorded with the run.
        measure: Distances every attack's returned points are also measured in (names of
            :func:`foolbox_alma.distances.get_distance`: ``"ciede2000"``, ``"ssim"``,
            ``"lpips"``...), as the paper measures its L2 attacks in the perceptual distances
            and adv_lib's CIEDE2000 on the standard scale. Uncounted and untimed.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, got {timing!r}")
    x, y = ep.astensor(images), ep.astensor(labels)
    framework = _framework(x)
    budgets = [steps] if isinstance(steps, int) else list(steps)
    specs = _specs(attacks, framework)
    rulers = _rulers(measure)
    n = len(x)
    batch_size = batch_size or max(n, 1)
    setup = _Setup(
        fmodel, _shard(x, y), model_name, framework, batch_size, seed, floor_passes, timing,
        threads, repeats, rulers, _digest(x, y), Path(out) / "attacks" if out else None,
        progress,
    )  # fmt: skip
    run_info = _runtime.machine_info()
    run_info.update(
        framework=framework,
        model=model_name,
        images=n,
        batch_size=batch_size,
        seed=seed,
        steps=budgets,
        floor_passes=floor_passes,
        timing=timing,
        repeats=repeats,
        data_sha256=setup.data_digest,
        started=_now(),
        load_average_start=_load_average(),
    )
    run_info.update(info or {})
    with _runtime.threads(framework, threads):
        run_info["threads"] = _runtime.current_threads(framework)
        y_np = y.numpy()
        clean_accuracy = float((predict(fmodel, x, batch_size) == y_np).mean()) if n else math.nan
        results: List[AttackResult] = []
        for budget in budgets:
            results += _run_budget(setup, specs, budget, resume)
    run_info["finished"] = _now()
    run_info["load_average_end"] = _load_average()
    return BenchmarkRun(results, y_np, clean_accuracy, run_info)


@dataclass
class _Setup:
    """What every attack of one benchmark run shares."""

    fmodel: Any
    shard: Shard
    model_name: str
    framework: str
    batch_size: int
    seed: int
    floor_passes: Optional[int]
    timing: str
    threads: Optional[int]
    repeats: int
    rulers: List[str]
    data_digest: str
    out: Optional[Path]
    progress: bool

    def identity(self, spec: AttackSpec, settings: Dict[str, Any]) -> Dict[str, Any]:
        """What a saved result must match to be reused."""
        identity = {
            "version": RESULT_VERSION,
            "attack": spec.name,
            "settings": jsonable(settings),
            "model": self.model_name,
            "framework": self.framework,
            "images": len(self.shard),
            "data_sha256": self.data_digest,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "floor_passes": self.floor_passes,
            "timing": self.timing,
            "threads": self.threads,
            "repeats": self.repeats,
            "measure": self.rulers,
        }
        return identity


def _run_budget(
    setup: _Setup, specs: Sequence[AttackSpec], budget: int, resume: bool
) -> List[AttackResult]:
    """Every attack at one budget: saved results reused, the others run ``repeats`` times
    round-robin (so that a change of load hits them alike), each merged and saved as soon as its
    last repeat is done."""
    done: Dict[str, AttackResult] = {}
    pending: List[Tuple[AttackSpec, AttackConfig, Dict[str, Any], Optional[RunFolder]]] = []
    for spec in specs:
        config = AttackConfig.of_spec(spec, budget)
        identity = setup.identity(spec, config.build(setup.framework).settings)
        folder = None
        if setup.out is not None:
            folder = RunFolder(setup.out / f"{spec.name}@{budget}", identity)
            folder.open(force=not resume, replace_other=True)
        cached = _load(folder, spec, len(setup.shard)) if resume else None
        if cached is not None:
            if setup.progress:
                tqdm.write(f"{spec.name}@{budget}: reusing {folder.path if folder else ''}")
            done[spec.name] = cached
        else:
            pending.append((spec, config, identity, folder))
    runs: Dict[str, List[AttackResult]] = {spec.name: [] for spec, *_ in pending}
    for repeat in range(setup.repeats):
        for spec, config, identity, folder in pending:
            runs[spec.name].append(_run_attack(setup, spec, config, budget))
            if repeat == setup.repeats - 1:  # saved as soon as it is complete: an interrupted
                result = _merge_repeats(runs[spec.name])  # run keeps every finished attack
                result.identity = identity
                if folder is not None:
                    _save(folder, result)
                done[spec.name] = result
    return [done[spec.name] for spec in specs]


class FloorTiming(Hooks):
    """The benchmark's hooks on the batch loop: plain forward+backward passes timed around each
    batch's attack call (``"around"``) or between its steps (``"steps"``, PyTorch), the attack's
    own time without them, and a progress bar in passes per sample (see :mod:`foolbox_alma.timing`)."""

    def __init__(
        self, nominal: int, floor_passes: Optional[int], timing: str, bar: Any, images: int
    ):
        budget = nominal if not floor_passes else max(1, min(nominal, floor_passes))
        self.per_side = max(1, budget // 2)  # "around": before and after each batch
        self.every = math.ceil(nominal / budget)  # "steps": a floor pass every `every` steps
        self.floor_passes, self.timing = floor_passes, timing
        self.bar, self.images = bar, images
        self.backwards = 0

    def mode(self, module: Any) -> str:
        if self.floor_passes == 0:
            return "none"
        mode = (
            self.timing if self.timing != "auto" else ("steps" if module is not None else "around")
        )
        if mode == "steps" and module is None:
            raise ValueError("timing='steps' needs a PyTorch model (module hooks)")
        return mode

    def attack(
        self,
        counted: Tuple[Any, Any, Any],
        x: Any,
        labels: Any,
        call: Callable[[Optional[ContextManager[Any]]], BatchAttack],
    ) -> Tuple[BatchAttack, Dict[str, Any]]:
        model, module, counting = counted
        mode = self.mode(module)
        # through the model the attack gets, so that both pay for the counting
        floor = floor_pass(model, x, labels) if mode != "none" else None
        before = time_passes(floor, self.per_side) if floor and mode == "around" else 0.0
        counting.counter.listener = lambda samples: self.bar.update(samples / self.images)
        sampler = (
            StepSampler(module, floor, self.every, counting.counter)
            if floor and mode == "steps"
            else None
        )
        try:
            done = call(sampler)
        finally:
            counting.counter.listener = None
        if sampler is not None:
            seconds, after = done.seconds - sampler.seconds, 0.0
            timed, floor_time = sampler.passes, sampler.seconds
        else:
            seconds = done.seconds
            after = time_passes(floor, self.per_side) if floor and mode == "around" else 0.0
            timed = 2 * self.per_side if mode == "around" else 0
            floor_time = before + after
        per_pass = floor_time / timed if timed else 0.0
        self.backwards += done.backwards
        self.bar.n = self.backwards / self.images
        self.bar.refresh()
        record = {
            "images": len(done.adversarials),
            "seconds": seconds,
            "floor_seconds": per_pass * done.backwards / len(done.adversarials),
            "timing": mode,
            "floor_passes_timed": timed,
            "floor_seconds_timed": floor_time,
            "floor_before": before,
            "floor_after": after,
            "forward_samples": done.forwards,
            "backward_samples": done.backwards,
            "load_average": _load_average(),
        }
        return dataclasses.replace(done, seconds=seconds), record


def _run_attack(setup: _Setup, spec: AttackSpec, config: AttackConfig, steps: int) -> AttackResult:
    """One attack at one budget: the pipeline's batch loop with the floor timing hooks."""
    n = len(setup.shard)
    started = _now()
    nominal = spec.nominal_passes(steps)
    bar = tqdm(
        total=nominal,
        desc=f"{spec.name}@{steps}",
        unit="step",
        disable=not setup.progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]",
    )
    plan = Plan(
        model=LiveModel(setup.fmodel),
        attack=config,
        seed=setup.seed,
        batch_size=setup.batch_size,
        rulers=tuple(setup.rulers),
    )
    hooks = FloorTiming(nominal, setup.floor_passes, setup.timing, bar, n)
    try:
        shard = run_shard(plan, setup.shard, hooks)
    finally:
        bar.close()
    batches = shard.info.get("batches", [])
    built = config.build(setup.framework)
    return AttackResult(
        name=spec.name,
        label=spec.label,
        source=spec.source,
        distance=spec.distance,
        steps=steps,
        budget=spec.budget(steps),
        settings=jsonable(built.settings),
        distances=shard.distance,
        success=shard.success,
        forwards=shard.forwards / n if n else math.nan,
        backwards=shard.backwards / n if n else math.nan,
        seconds=shard.seconds,
        floor_seconds=sum(b["floor_seconds"] for b in batches),
        floor_passes_timed=sum(b["floor_passes_timed"] for b in batches),
        batches=batches,
        started=started,
        finished=_now(),
        measured=dict(shard.measured),
    )


def _rulers(measure: Sequence[str]) -> List[str]:
    """The distances to measure in, checked and without repeats (names as given, lower case)."""
    if isinstance(measure, str):
        measure = [measure]
    rulers: List[str] = []
    for name in measure:
        if not isinstance(name, str):
            raise ValueError(f"measure takes distance names, got {name!r}")
        key = name.strip().lower()
        if key not in ("l1", "l2", "linf"):
            get_distance(key)  # ValueError naming the valid ones
        if key not in rulers:
            rulers.append(key)
    return rulers


def _merge_repeats(runs: List[AttackResult]) -> AttackResult:
    """The first run's distances and counts, the median time and floor over the runs."""
    first = runs[0]
    if len(runs) == 1:
        return first
    first.repeat_seconds = [r.seconds for r in runs]
    first.repeat_ratios = [r.overhead for r in runs]
    first.seconds = float(np.median(first.repeat_seconds))
    first.floor_seconds = float(np.median([r.floor_seconds for r in runs]))
    first.floor_passes_timed = sum(r.floor_passes_timed for r in runs)
    first.batches = [b for r in runs for b in r.batches]
    first.finished = runs[-1].finished
    same = all(np.array_equal(r.distances, first.distances) for r in runs)
    first.settings = dict(first.settings, repeats_identical=same)
    return first


def _specs(attacks: Optional[Sequence[Union[str, AttackSpec]]], framework: str) -> List[AttackSpec]:
    if attacks is None:
        return select(None, framework)
    names = [a for a in attacks if isinstance(a, str)]
    specs = select(names, framework) if names else []
    specs += [a for a in attacks if isinstance(a, AttackSpec)]
    return specs


def _framework(x: ep.Tensor) -> str:
    name = framework_name(x)
    if name == "numpy":
        raise TypeError(f"the benchmark needs PyTorch, TensorFlow or JAX tensors, got {type(x)}")
    return name


def _shard(x: ep.Tensor, y: ep.Tensor) -> Shard:
    """All the images as one shard of the pipeline."""
    labels = np.asarray(y.numpy(), np.int64)
    return Shard(0, 0, np.asarray(x.numpy()), labels, None, np.arange(len(labels)))


def _digest(x: ep.Tensor, y: ep.Tensor) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x.numpy()).tobytes())
    h.update(np.ascontiguousarray(y.numpy()).astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def _load(folder: Optional[RunFolder], spec: AttackSpec, n: int) -> Optional[AttackResult]:
    """The attack's saved result in ``folder`` (None: none, or another run's)."""
    shard = folder.load(0, n, False) if folder is not None else None
    if shard is None:
        return None
    record = dict(shard.info, distances=shard.distance, success=shard.success)
    result = AttackResult.from_json(dict(record, measured=shard.measured))
    result.loaded = True
    return result


def _save(folder: RunFolder, result: AttackResult) -> None:
    """The result as the folder's one shard: its arrays, and the rest as the shard's info."""
    info = result.to_json()
    for key in ("distances", "success", "measured"):
        info.pop(key)
    n = len(result.success)
    none = np.full(n, -1, np.int64)
    folder.save(
        ShardResult(
            index=0,
            indices=np.arange(n, dtype=np.int64),
            labels=none,
            targets=none,
            clean_prediction=none,
            adversarial_prediction=none,
            success=result.success,
            distance=result.distances,
            forwards=int(round(result.forwards * n)) if n else 0,
            backwards=int(round(result.backwards * n)) if n else 0,
            seconds=result.seconds,
            started=result.started,
            finished=result.finished,
            worker="",
            measured=result.measured,
            info=jsonable(info),
        )
    )


def _largest_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else math.nan


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
