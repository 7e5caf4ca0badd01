"""Runs the attacks on one model and one set of images, and keeps what each one did.

For every attack and every batch: the framework's seed is reset, half of the floor passes are
timed, the attack runs with its passes counted (see :mod:`foolbox_alma.counting`), the other half
of the floor passes are timed; then the returned points are checked with the model (untimed,
uncounted) and their distances measured in float64. Each attack's result is saved as one JSON file
when an output folder is given, and a later run with the same settings reuses it.
"""

import contextlib
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import eagerpy as ep
import foolbox as fb
import numpy as np
from tqdm.auto import tqdm

from .. import _runtime, metrics
from .._dispatch import framework_name
from ..counting import counted_model, torch_module_of
from ..evaluation.engine import attack_batch, predict, score_batch
from ..evaluation.engine import measure as measure_distance
from .attacks import AttackSpec, select
from .timing import StepSampler, floor_pass, time_passes

RESULT_VERSION = 1
TIMINGS = ("auto", "steps", "around")


@dataclass
class AttackResult:
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

    @property
    def asr(self) -> float:
        return metrics.success_rate(self.success)

    @property
    def median(self) -> float:
        return metrics.median_distance(self.distances, self.success)

    def median_in(self, distance: str) -> float:
        """Median in another distance (``measured``; the own one when it is ``distance``),
        failures as +inf; NaN when not measured."""
        if distance in self.measured:
            return metrics.median_distance(self.measured[distance], self.success)
        return self.median if distance == self.distance else math.nan

    @property
    def distances_with_failures(self) -> np.ndarray:
        return metrics.distances_with_failures(self.distances, self.success)

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
        seed: Framework seed, reset before every attack and batch.
        out: Folder for one JSON file per attack (``attacks/<name>@<steps>.json``); with
            ``resume`` an attack whose file holds the same settings is not run again.
        resume: Reuse saved results with the same settings.
        floor_passes: At most this many plain passes timed per batch; None times as many as
            the budget allows (the fairest, most costly); 0 times none (no time ratio).
        timing: How the floor is interleaved with the attack (see :mod:`.timing`): ``"steps"``
            (a floor pass between attack steps; PyTorch modules only), ``"around"`` (half of
            the floor passes before each batch, half after) or ``"auto"`` (steps where possible).
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
    data_digest = _digest(x, y)
    out_dir = Path(out) / "attacks" if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    run_info = machine_info()
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
        data_sha256=data_digest,
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        load_average_start=_load_average(),
    )
    run_info.update(info or {})

    results: List[AttackResult] = []
    with _frozen_parameters(fmodel), _runtime.threads(framework, threads):
        run_info["threads"] = _runtime.current_threads(framework)
        y_np = y.numpy()
        clean_predictions = predict(fmodel, x, batch_size)
        clean_accuracy = float((clean_predictions == y_np).mean()) if n else math.nan
        for budget in budgets:
            done: Dict[str, AttackResult] = {}
            pending = []
            for spec in specs:
                run_fn, settings = spec.build(budget)
                identity = {
                    "attack": spec.name,
                    "settings": _jsonable(settings),
                    "model": model_name,
                    "framework": framework,
                    "images": n,
                    "data_sha256": data_digest,
                    "batch_size": batch_size,
                    "seed": seed,
                    "floor_passes": floor_passes,
                    "timing": timing,
                    "threads": threads,
                }
                if repeats != 1:  # (absent from the results saved before repeats existed)
                    identity["repeats"] = repeats
                if rulers:  # (likewise)
                    identity["measure"] = rulers
                path = out_dir / f"{spec.name}@{budget}.json" if out_dir is not None else None
                cached = _load(path, identity) if (resume and path is not None) else None
                if cached is not None:
                    if progress:
                        tqdm.write(f"{spec.name}@{budget}: reusing {path}")
                    done[spec.name] = cached
                else:
                    pending.append((spec, run_fn, settings, identity, path))
            # repeats go round all the attacks, so that a change of load hits them alike
            runs: Dict[str, List[AttackResult]] = {spec.name: [] for spec, *_ in pending}
            for repeat in range(repeats):
                for spec, run_fn, settings, identity, path in pending:
                    runs[spec.name].append(
                        _run_attack(
                            spec,
                            budget,
                            run_fn,
                            settings,
                            fmodel,
                            x,
                            y,
                            batch_size,
                            seed,
                            floor_passes,
                            timing,
                            progress,
                            rulers,
                        )
                    )
                    if repeat == repeats - 1:
                        result = _merge_repeats(runs[spec.name])
                        result.identity = identity
                        if path is not None:
                            _save(path, result)
                        done[spec.name] = result
            results += [done[spec.name] for spec in specs]
    run_info["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    run_info["load_average_end"] = _load_average()
    return BenchmarkRun(results, y_np, clean_accuracy, run_info)


def _run_attack(
    spec: AttackSpec,
    steps: int,
    run_fn: Any,
    settings: Dict[str, Any],
    fmodel: fb.Model,
    x: ep.Tensor,
    y: ep.Tensor,
    batch_size: int,
    seed: int,
    floor_passes: Optional[int],
    timing: str,
    progress: bool,
    rulers: Sequence[str] = (),
) -> AttackResult:
    n = len(x)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    nominal = spec.nominal_passes(steps)
    budget = nominal if not floor_passes else max(1, min(nominal, floor_passes))
    per_side = max(1, budget // 2)  # "around": before and after each batch
    every = math.ceil(nominal / budget)  # "steps": one floor pass every `every` attack steps
    distances, success = [], []
    measured: Dict[str, List[np.ndarray]] = {
        r: [] for r in rulers if r != spec.distance or spec.own_scale is not None
    }
    forwards = backwards = 0
    seconds = floor_seconds = 0.0
    timed = 0
    batches = []
    bar = tqdm(
        total=nominal,
        desc=f"{spec.name}@{steps}",
        unit="step",
        disable=not progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]",
    )
    with counted_model(fmodel) as (model, module, counting):
        mode = timing if timing != "auto" else ("steps" if module is not None else "around")
        if floor_passes == 0:
            mode = "none"
        if mode == "steps" and module is None:
            raise ValueError("timing='steps' needs a PyTorch model (module hooks)")
        for lo in range(0, n, batch_size):
            xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
            # through the model the attack gets, so that both pay for the counting
            floor = floor_pass(model, xb.raw, yb.raw) if mode != "none" else None
            before = time_passes(floor, per_side) if floor and mode == "around" else 0.0

            _runtime.seed_framework(framework_name(x), seed)
            counting.counter.listener = lambda samples: bar.update(samples / n)
            sampler = (
                StepSampler(module, floor, every, counting.counter)
                if floor and mode == "steps"
                else None
            )
            done = attack_batch(
                (model, module, counting),
                lambda m, mod, xs, ys, _targeted: run_fn(m, mod, xs, ys),
                xb.raw,
                yb.raw,
                around=sampler,
            )
            counting.counter.listener = None
            adv, elapsed = done.adversarials, done.seconds
            fw_batch, bw_batch = done.forwards, done.backwards
            forwards += fw_batch
            backwards += bw_batch

            if sampler is not None:
                seconds_batch = elapsed - sampler.seconds
                floor_timed, floor_time = sampler.passes, sampler.seconds
                after = 0.0
            else:
                seconds_batch = elapsed
                after = time_passes(floor, per_side) if floor and mode == "around" else 0.0
                floor_timed = 2 * per_side if mode == "around" else 0
                floor_time = before + after
            seconds += seconds_batch
            per_pass = floor_time / floor_timed if floor_timed else 0.0
            floor_batch = per_pass * bw_batch / len(xb)
            floor_seconds += floor_batch
            timed += floor_timed
            batches.append(
                {
                    "images": len(xb),
                    "seconds": seconds_batch,
                    "floor_seconds": floor_batch,
                    "timing": mode,
                    "floor_passes_timed": floor_timed,
                    "floor_seconds_timed": floor_time,
                    "floor_before": before,
                    "floor_after": after,
                    "forward_samples": fw_batch,
                    "backward_samples": bw_batch,
                    "load_average": _load_average(),
                }
            )

            own = spec.distance if spec.own_scale is None else "none"
            if isinstance(adv, np.ndarray):  # (the attack's points, as attack_batch keeps them)
                adv = _runtime.to_native(fmodel, adv)
            score = score_batch(fmodel, own, xb.raw, adv, yb.numpy())
            success.append(score.success)
            if spec.own_scale is not None:
                distances.append(np.asarray(spec.own_scale(fmodel, xb.raw, adv), np.float64))
            else:
                distances.append(score.distances)
            for ruler, parts in measured.items():
                parts.append(measure_distance(ruler, fmodel, xb.raw, adv))
            bar.n = backwards / n
            bar.refresh()
    bar.close()
    return AttackResult(
        name=spec.name,
        label=spec.label,
        source=spec.source,
        distance=spec.distance,
        steps=steps,
        budget=spec.budget(steps),
        settings=_jsonable(settings),
        distances=np.concatenate(distances) if distances else np.zeros(0),
        success=np.concatenate(success) if success else np.zeros(0, bool),
        forwards=forwards / n if n else math.nan,
        backwards=backwards / n if n else math.nan,
        seconds=seconds,
        floor_seconds=floor_seconds,
        floor_passes_timed=timed,
        batches=batches,
        started=started,
        finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        measured={r: np.concatenate(p) if p else np.zeros(0) for r, p in measured.items()},
    )


def _rulers(measure: Sequence[str]) -> List[str]:
    """The distances to measure in, checked and without repeats (names as given, lower case)."""
    from ..distances import get_distance

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


@contextlib.contextmanager
def _frozen_parameters(fmodel: fb.Model) -> Iterator[None]:
    """PyTorch parameters without gradients during the run (as adv_lib's benchmarks do): every
    attack and the floor then differentiate with respect to the inputs only."""
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


def _digest(x: ep.Tensor, y: ep.Tensor) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x.numpy()).tobytes())
    h.update(np.ascontiguousarray(y.numpy()).astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _load(path: Optional[Path], identity: Dict[str, Any]) -> Optional[AttackResult]:
    if path is None or not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("version") != RESULT_VERSION or record.get("identity") != identity:
        return None
    result = AttackResult.from_json(record)
    result.loaded = True
    return result


def _save(path: Path, result: AttackResult) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=1))
    os.replace(tmp, path)


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


def machine_info() -> Dict[str, Any]:
    """CPU, cores, Python and framework versions (what the timings depend on)."""
    import importlib.metadata

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
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info
