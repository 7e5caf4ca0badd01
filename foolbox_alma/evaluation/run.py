"""``evaluate()``: a robustness evaluation of any model over a whole data set, resumable, in this
process or on Ray. See :mod:`foolbox_alma.evaluation` for the overview."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import foolbox as fb
import numpy as np
from tqdm.auto import tqdm

from .. import _runtime
from .attacks import AttackLike, attack_config, build
from .engine import Plan, Shard, ShardResult, load_model, run_shard
from .result import EvaluationResult
from .store import EvaluationError, RunFolder

IDENTITY_FORMAT = 1


@dataclass(frozen=True, eq=False)
class LiveModel:
    """A Foolbox model given as an object: usable in this process only (a worker cannot
    rebuild it). Hashed by identity."""

    model: Any

    def load(self) -> Any:
        return self.model

    def describe(self) -> Dict[str, Any]:
        return {
            "text": f"<{type(self.model).__name__} object>",
            "kind": "object",
            "bounds": list(self.model.bounds),
        }


def evaluate(
    model: Any,
    data: Any,
    *,
    attack: AttackLike = None,
    distance: Any = None,
    steps: Optional[int] = None,
    alpha: Optional[float] = None,
    init_lr_distance: Optional[float] = None,
    attack_params: Optional[Dict[str, Any]] = None,
    targeted: bool = False,
    epsilons: Optional[Sequence[float]] = None,
    batch_size: int = 100,
    shard_size: Optional[int] = None,
    threads: Optional[int] = None,
    device: str = "cpu",
    out: Union[str, Path, None] = None,
    ray: Union[bool, str, None] = None,
    workers: Optional[int] = None,
    force: bool = False,
    save_adversarials: bool = False,
    keep_adversarials: bool = False,
    limit: Optional[int] = None,
    offset: int = 0,
    image_size: Optional[int] = None,
    bounds: Optional[Tuple[float, float]] = None,
    framework: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationResult:
    """Attacks every sample of ``data`` and returns per-sample minimal distances, robust accuracy
    and the counts, writing the results to ``out`` shard by shard.

    Args:
        model: A model spec (a zoo name such as ``"smallcnn"``, ``"path/to/file.py:function"``,
            ``"package.module:function"``, a TorchScript ``.pt`` or Keras ``.keras`` file, see
            :func:`~foolbox_alma.evaluation.models.parse_model_spec`), a
            :class:`~foolbox_alma.evaluation.models.ModelSpec`, or a live Foolbox model (this
            process only).
        data: A data spec (``"mnist-heldout"``, an ``.npz`` file with ``x``, ``y`` and optionally
            ``targets``, a folder with one subfolder of images per class, see
            :func:`~foolbox_alma.evaluation.data.load_data`), a
            :class:`~foolbox_alma.evaluation.data.Dataset`, or a tuple ``(x, y)`` /
            ``(x, y, targets)`` of arrays in the model's layout and units.
        attack: None or ``"alma"`` (ALMA with ``distance``, ``steps``, ``alpha``,
            ``init_lr_distance`` and ``attack_params``), a name of the benchmark's registry
            (``"ddn"``, ``"fmn-l2"``...; with ``steps``), or a Foolbox ``MinimizationAttack``.
        targeted: Attack towards ``data``'s targets (``(label + 1) mod classes`` where it has
            none).
        epsilons: Budgets at which robust accuracy is reported.
        batch_size: Samples per attack call.
        shard_size: Samples per shard, the unit that is saved, resumed and distributed (default:
            ``batch_size``).
        threads: CPU threads of the framework (per worker on Ray, default 1 there).
        device: ``"cpu"`` or ``"cuda"`` (PyTorch models; with Ray, one GPU per task).
        out: Output folder (samples.csv, summary.json, robust_accuracy.png, report.md, shards);
            None keeps everything in memory.
        ray: False/None: in this process. True or ``"local"``: a local Ray instance (or the
            cluster of ``RAY_ADDRESS``); an address string: join that cluster.
        workers: Ray tasks at a time (default: as many as the shards).
        force: Recompute every shard (and overwrite another run's results in ``out``).
        save_adversarials: Also write ``adversarials.npz`` (and keep them in the result).
        keep_adversarials: Keep the adversarials in the returned result.
        limit, offset, image_size: Select samples and resize images (data specs only).
        bounds: The model's input bounds (TorchScript and Keras files).
        framework: Framework of a zoo model (default PyTorch).
        seed: The run's seed; shard ``i`` is seeded with a seed derived from ``(seed, i)``.
        progress: A progress bar over samples.
    """
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.perf_counter()
    _check_positive("batch_size", batch_size)
    shard_size = batch_size if shard_size is None else shard_size
    _check_positive("shard_size", shard_size)
    if threads is not None:
        _check_positive("threads", threads)
    if workers is not None:
        _check_positive("workers", workers)
    use_ray = ray not in (None, False)
    address = None if ray in (None, False, True, "local", "") else str(ray)

    spec = _model_spec(model, bounds=bounds, framework=framework, device=device)
    if use_ray and isinstance(spec, LiveModel):
        raise EvaluationError(
            "a live model object cannot be sent to Ray workers: give a model spec (a zoo name, "
            "'file.py:function', 'package.module:function', or a .pt/.keras file)"
        )
    probe_spec = spec
    if use_ray and device != "cpu" and hasattr(spec, "device"):
        import dataclasses

        probe_spec = dataclasses.replace(spec, device="cpu")  # the driver may have no GPU
    fmodel = load_model(probe_spec)
    model_framework = _runtime.model_framework(fmodel)
    dataset = _dataset(data, fmodel, limit=limit, offset=offset, image_size=image_size)
    n = len(dataset.y)
    if n == 0:
        raise EvaluationError(f"data {dataset.name!r} holds no samples (offset {offset})")

    num_classes = _probe(fmodel, dataset)
    targets = dataset.targets
    targets_rule = "given" if targets is not None else None
    if targeted and targets is None:
        targets = (dataset.y + 1) % num_classes
        targets_rule = "(label + 1) mod classes"
    _check_classes("targets", targets, num_classes)

    config = attack_config(
        attack,
        steps=steps,
        distance=distance,
        alpha=alpha,
        init_lr_distance=init_lr_distance,
        **(attack_params or {}),
    )
    built = build(config, model_framework)
    if targeted and not built.supports_targeted:
        raise EvaluationError(f"attack {config.name!r} is untargeted only")

    plan = Plan(
        model=spec,
        attack=config,
        targeted=targeted,
        seed=int(seed),
        batch_size=int(batch_size),
        threads=threads if threads is not None else (1 if use_ray else None),
        keep_adversarials=bool(save_adversarials or keep_adversarials),
    )
    shards = [
        Shard(
            index=k,
            start=lo,
            x=dataset.x[lo : lo + shard_size],
            labels=dataset.y[lo : lo + shard_size],
            targets=targets[lo : lo + shard_size] if targets is not None else None,
            indices=dataset.indices[lo : lo + shard_size],
        )
        for k, lo in enumerate(range(0, n, shard_size))
    ]
    identity = {
        "format": IDENTITY_FORMAT,
        "model": spec.describe(),
        "data": dataset.describe(),
        "attack": built.settings,
        "targeted": bool(targeted),
        "targets": targets_rule if targeted else None,
        "seed": int(seed),
        "batch_size": int(batch_size),
        "shard_size": int(shard_size),
        "device": device,
    }
    folder = RunFolder(out, identity) if out is not None else None
    if folder is not None:
        folder.open(force=force)

    results: Dict[int, ShardResult] = {}
    if folder is not None and not force:
        for shard in shards:
            saved = folder.load(shard.index, len(shard), plan.keep_adversarials)
            if saved is not None:
                results[shard.index] = saved
    loaded = sorted(results)
    todo = [s for s in shards if s.index not in results]
    bar = tqdm(
        total=n,
        initial=sum(len(s) for s in shards if s.index in results),
        desc="evaluate",
        unit="image",
        disable=not progress,
    )
    execution: Dict[str, Any] = {
        "backend": "ray" if use_ray else "in-process",
        "threads": plan.threads,
        "workers": workers if use_ray else 1,
    }

    def finished(result: ShardResult, count_bar: bool) -> None:
        if folder is not None:
            folder.save(result)
        results[result.index] = result
        if count_bar:
            bar.update(len(result.labels))

    try:
        if todo and use_ray:
            from .ray_runner import run_on_ray

            execution["address"] = address or "local (or RAY_ADDRESS)"
            run_on_ray(
                plan,
                todo,
                lambda r: finished(r, True),
                address=address,
                workers=workers,
                device=device,
                info=execution,
            )
        else:
            for shard in todo:
                finished(run_shard(plan, shard, on_batch=bar.update), False)
    finally:
        bar.close()

    result = EvaluationResult.merge(
        [results[s.index] for s in shards], epsilons or [], targeted=targeted
    )
    if not keep_adversarials and not save_adversarials:
        result.adversarials = None
    all_shards = [results[s.index] for s in shards]
    execution["description"] = (
        f"Ray, {execution['workers'] or 'all'} workers x {plan.threads} thread(s)"
        if use_ray
        else f"in-process, {plan.threads or 'default'} thread(s)"
    )
    result.summary = {
        "title": _title(built, spec, dataset, n),
        "distance": built.distance_name,
        "samples": n,
        "clean_accuracy": result.clean_accuracy,
        "asr": result.asr,
        "median_distance": result.median,
        "robust_accuracy": {
            f"{e:g}": float(v)
            for e, v in zip(result.epsilons, result.robust_accuracy(result.epsilons))
        },
        "forwards_per_sample": sum(s.forwards for s in all_shards) / n,
        "backwards_per_sample": sum(s.backwards for s in all_shards) / n,
        "seconds": {
            "wall": time.perf_counter() - t0,
            "attack": sum(s.seconds for s in all_shards),
            "attack_computed_now": sum(results[s.index].seconds for s in todo),
        },
        "shards": {
            "total": len(shards),
            "computed": len(todo),
            "loaded": len(loaded),
            "computed_indices": [s.index for s in todo],
            "loaded_indices": loaded,
            "first_started": min((s.started for s in all_shards), default=None),
            "last_finished": max((s.finished for s in all_shards), default=None),
        },
        "settings": identity,
        "execution": execution,
        "machine": _machine(),
        "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if folder is not None:
        result.out = folder.path
        result.write(folder, save_adversarials=save_adversarials)
    return result


# -- inputs -------------------------------------------------------------------------------------


def _title(built: Any, spec: Any, dataset: Any, n: int) -> str:
    """``ALMA L2, 100 steps, on examples/models/net.py:build, 1000 samples of mnist-heldout``."""
    import os

    attack = built.settings.get("attack", "attack")
    distance = built.distance_name
    distance = distance.upper() if distance in ("l1", "l2", "linf") else distance
    steps = built.settings.get("steps")
    text = spec.describe()["text"]
    if os.path.isabs(text.split(":")[0]):
        relative = os.path.relpath(text)
        text = relative if not relative.startswith("..") else text
    budget = f", {steps} steps" if steps else ""
    return f"{attack} {distance}{budget}, on {text}, {n} samples of {dataset.name}"


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise EvaluationError(f"{name} must be a positive integer, got {value!r}")


def _model_spec(model: Any, **kwargs: Any) -> Any:
    from .models import ModelSpec, parse_model_spec

    if isinstance(model, (ModelSpec, LiveModel)):
        return model
    if isinstance(model, fb.Model):
        return LiveModel(model)
    if isinstance(model, (str, Path)):
        return parse_model_spec(str(model), **kwargs)
    raise EvaluationError(
        "model must be a spec (zoo name, 'file.py:function', 'package.module:function', "
        f".pt or .keras file), a ModelSpec or a Foolbox model, got {type(model).__name__}"
    )


def _dataset(data: Any, fmodel: Any, **kwargs: Any) -> Any:
    from .data import Dataset, load_data

    data_format = getattr(fmodel, "data_format", None) or "channels_first"
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_data(str(data), data_format=data_format, bounds=tuple(fmodel.bounds), **kwargs)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        import eagerpy as ep

        arrays = [
            None
            if a is None
            else np.asarray(ep.astensor(a).numpy() if not isinstance(a, np.ndarray) else a)
            for a in data
        ]
        x, y = arrays[0], arrays[1]
        t = arrays[2] if len(arrays) == 3 else None
        for name, a in (("labels", y), ("targets", t)):
            if a is not None and (a.ndim != 1 or a.dtype.kind not in "iu"):
                raise EvaluationError(
                    f"{name} must be a 1-D integer array, got {a.dtype} {a.shape}"
                )
        if y is None or x is None or len(x) != len(y) or (t is not None and len(t) != len(y)):
            raise EvaluationError(
                "data (x, y[, targets]) must have one label (and target) per input"
            )
        lo = kwargs.get("offset") or 0
        hi = len(y) if kwargs.get("limit") is None else lo + kwargs["limit"]
        sl = slice(lo, hi)
        return Dataset(
            x=np.ascontiguousarray(x[sl]),
            y=y[sl].astype(np.int64),
            targets=t[sl].astype(np.int64) if t is not None else None,
            indices=np.arange(len(y), dtype=np.int64)[sl],
            name="arrays",
            data_format=data_format,
        )
    raise EvaluationError(
        "data must be a spec ('mnist-heldout', a .npz file, an image folder), a Dataset or "
        f"a tuple (x, y[, targets]), got {type(data).__name__}"
    )


def _probe(fmodel: Any, dataset: Any) -> int:
    """Runs the model on two samples: the data's shape and dtype must suit it, the data must lie
    in its bounds and the labels in its classes. Returns the number of classes."""
    lo, hi = fmodel.bounds
    x = dataset.x
    if not np.issubdtype(x.dtype, np.floating):
        raise EvaluationError(f"inputs must be floating point, got {x.dtype}")
    if not np.isfinite(x).all():
        raise EvaluationError("inputs contain NaN or inf")
    if x.min() < lo or x.max() > hi:
        raise EvaluationError(
            f"inputs lie in [{x.min():g}, {x.max():g}], outside the model's bounds ({lo:g}, {hi:g})"
        )
    sample = x[:2]
    try:
        logits = fmodel(_runtime.to_native(fmodel, sample))
        shape = tuple(np.asarray(_numpy(logits)).shape)
    except Exception as error:  # noqa: BLE001 - the model's own error, named
        raise EvaluationError(
            f"the model rejects inputs of shape {tuple(sample.shape)[1:]} ({x.dtype}, "
            f"{getattr(fmodel, 'data_format', None) or 'channels_first'}): "
            f"{type(error).__name__}: {error}"
        ) from error
    if len(shape) != 2 or shape[0] != len(sample):
        raise EvaluationError(
            f"the model returned outputs of shape {shape}; expected (batch, classes)"
        )
    _check_classes("labels", dataset.y, shape[1])
    return shape[1]


def _check_classes(name: str, values: Optional[np.ndarray], num_classes: int) -> None:
    if values is None or not len(values):
        return
    if values.min() < 0 or values.max() >= num_classes:
        raise EvaluationError(
            f"{name} out of range: they span [{values.min()}, {values.max()}] but the model has "
            f"{num_classes} classes (0..{num_classes - 1})"
        )


def _numpy(t: Any) -> Any:
    import eagerpy as ep

    return ep.astensor(t).numpy()


def _machine() -> Dict[str, Any]:
    from ..bench.runner import machine_info

    return machine_info()
