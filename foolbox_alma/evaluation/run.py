"""``evaluate()``: a robustness evaluation of any model over a whole data set, resumable, in this
process or on Ray. See :mod:`foolbox_alma.evaluation` for the overview.

It reads as its stages: resolve the inputs (model, data, targets, attack), cut the data into
shards, run the missing ones with the executor (saving each as it finishes), and summarise.
"""

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import foolbox as fb
import numpy as np
from tqdm.auto import tqdm

from .. import _runtime
from ..pipeline import sanity
from ..pipeline.data import Dataset, as_dataset, check_classes, probe
from ..pipeline.engine import Hooks, Plan, Shard, ShardResult
from ..pipeline.errors import EvaluationError, EvaluationInterrupted
from ..pipeline.executor import execute
from ..pipeline.fingerprint import fingerprint
from ..pipeline.models import LiveModel, ModelSpec, model_of, parse_model_spec
from ..pipeline.result import EvaluationResult
from ..pipeline.store import RunFolder, identity_hash
from ..registry import AttackConfig, AttackLike, BuiltAttack, attack_config

IDENTITY_FORMAT = 3  # 3: the model's fingerprint; the data by its arrays, not its name
DEFAULT_ROOT = "evaluation"
AUTO = "auto"


@dataclass
class _Inputs:
    """What :func:`evaluate` resolved its arguments to."""

    spec: Any  # ModelSpec or LiveModel
    dataset: Dataset
    targets: Optional[np.ndarray]
    targets_rule: Optional[str]
    config: AttackConfig
    built: BuiltAttack
    fingerprint: Dict[str, Any]
    signals: Dict[str, Any]


def evaluate(
    model: Any,
    data: Any,
    *,
    attack: AttackLike = None,
    distance: Any = None,
    steps: Optional[int] = None,
    alpha: Optional[float] = None,
    init_lr_distance: Optional[Union[float, str]] = None,
    attack_params: Optional[Dict[str, Any]] = None,
    targeted: bool = False,
    epsilons: Optional[Sequence[float]] = None,
    batch_size: int = 100,
    shard_size: Optional[int] = None,
    threads: Optional[int] = None,
    device: Optional[str] = None,
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
    preprocessing: Any = None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationResult:
    """Attacks every sample of ``data`` and returns per-sample minimal distances, robust accuracy
    and the counts, writing the results to ``out`` shard by shard.

    Args:
        model: A model spec (a zoo name such as ``"smallcnn"``, ``"path/to/file.py:function"``,
            ``"package.module:function"``, a TorchScript ``.pt`` or Keras ``.keras`` file, see
            :func:`~foolbox_alma.pipeline.models.parse_model_spec`), a
            :class:`~foolbox_alma.pipeline.models.ModelSpec`, or a live Foolbox model (this
            process only).
        data: A data spec (``"mnist-heldout"``, an ``.npz`` file with ``x``, ``y`` and optionally
            ``targets``, a folder with one subfolder of images per class, see
            :func:`~foolbox_alma.pipeline.data.load_data`), a
            :class:`~foolbox_alma.pipeline.data.Dataset`, or a tuple ``(x, y)`` /
            ``(x, y, targets)`` of arrays in the model's layout and units.
        attack: None or ``"alma"`` (ALMA with ``distance``, ``steps``, ``alpha``,
            ``init_lr_distance`` and ``attack_params``), a name of the registry
            (``"ddn"``, ``"fmn-l2"``...; with ``steps``), or a Foolbox ``MinimizationAttack``.
        targeted: Attack towards ``data``'s targets (``(label + 1) mod classes`` where it has
            none).
        epsilons: Budgets at which robust accuracy is reported.
        batch_size: Samples per attack call.
        shard_size: Samples per shard, the unit that is saved, resumed and distributed (default:
            ``batch_size``).
        threads: CPU threads of the framework (per worker on Ray, default 1 there).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the model must run (None: where
            it is; zoo models and TorchScript files on the CPU). A model on another device, or
            ``cuda`` without a GPU, is an error; with Ray, one GPU per task.
        out: Output folder (samples.csv, summary.json, robust_accuracy.png, report.md, shards);
            ``"auto"``: ``evaluation/<model>-<data>-<attack>-<steps>-<digest>``, named after the run
            (the digest is the run's identity's: model and its weights, data, attack, seed...),
            so that two different runs never share a folder; None keeps everything in memory.
        ray: False/None: in this process. True or ``"local"``: a local Ray instance (or the
            cluster of ``RAY_ADDRESS``); an address string: join that cluster.
        workers: Ray tasks at a time (default: as many as the shards).
        force: Recompute every shard (and overwrite another run's results in ``out``).
        save_adversarials: Also write ``adversarials.npz`` (and keep them in the result).
        keep_adversarials: Keep the adversarials in the returned result.
        limit, offset, image_size: Select samples and resize images (data specs only).
        bounds: The model's input bounds (model files, functions returning a bare network).
        framework: Framework of a zoo model (default PyTorch).
        preprocessing: ``(mean, std)`` for networks this package wraps (model files, bare
            networks returned by a function): Foolbox's ``preprocessing``, per channel.
        seed: The run's seed; shard ``i`` is seeded with a seed derived from ``(seed, i)``.
        progress: A progress bar over samples.
    """
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    for name, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        _check_positive(name, value, optional=name == "shard_size")
    for name, value in (("threads", threads), ("workers", workers)):
        _check_positive(name, value, optional=True)
    use_ray = ray not in (None, False)
    inputs = _resolve(
        model,
        data,
        targeted,
        use_ray,
        device,
        dict(limit=limit, offset=offset, image_size=image_size),
        dict(bounds=bounds, framework=framework, device=device, preprocessing=preprocessing),
        attack_config(
            attack,
            steps=steps,
            distance=distance,
            alpha=alpha,
            init_lr_distance=init_lr_distance,
            **(attack_params or {}),
        ),
    )
    shard_size = batch_size if shard_size is None else shard_size
    shards = plan_shards(inputs.dataset, inputs.targets, shard_size)
    plan = Plan(
        model=inputs.spec,
        attack=inputs.config,
        targeted=targeted,
        seed=int(seed),
        batch_size=int(batch_size),
        threads=threads if threads is not None else (1 if use_ray else None),
        keep_adversarials=bool(save_adversarials or keep_adversarials),
        fingerprint=inputs.fingerprint,
        check_gradients=True,
    )
    identity = _identity(inputs, plan, shard_size, device)
    if out == AUTO:
        out = default_out(inputs, identity)
    folder = None
    if out is not None:
        context = {"model": inputs.spec.describe(), "data": inputs.dataset.describe()}
        folder = RunFolder(out, identity, context, inputs.fingerprint["probe"])
        folder.open(force=force)
    results = _saved_shards(folder, shards, plan, force)
    todo = [s for s in shards if s.index not in results]
    try:
        execution = _run(plan, shards, todo, results, folder, ray, workers, device, progress)
    except KeyboardInterrupt:
        path = folder.path if folder is not None else None
        raise EvaluationInterrupted(len(results), len(shards), path) from None
    result = EvaluationResult.merge([results[s.index] for s in shards], epsilons or [], targeted)
    result.files = inputs.dataset.files
    if result.adversarials is not None:
        result.adversarials = inputs.dataset.in_source_layout(result.adversarials)
    if not keep_adversarials and not save_adversarials:
        result.adversarials = None
    result.summary = _summary(result, inputs, shards, todo, results, identity, execution)
    result.summary.update(
        seconds=dict(result.summary["seconds"], wall=time.perf_counter() - t0),
        started=started,
        finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
    if folder is not None:
        result.out = folder.path
        result.write(folder, save_adversarials=save_adversarials)
    return result


# -- stages -------------------------------------------------------------------------------------


def _resolve(
    model: Any,
    data: Any,
    targeted: bool,
    use_ray: bool,
    device: Optional[str],
    data_options: Dict[str, Any],
    model_options: Dict[str, Any],
    config: AttackConfig,
) -> _Inputs:
    """The model spec (loaded here once, to read its layout and probe it), the data in the
    model's layout, the targets, and the attack built for the model's framework."""
    spec = _model_spec(model, **model_options)
    if use_ray and isinstance(spec, LiveModel):
        raise EvaluationError(
            "a live model object cannot be sent to Ray workers: give a model spec (a zoo name, "
            "'file.py:function', 'package.module:function', or a .pt/.keras file)"
        )
    probe_spec = spec
    if use_ray and device not in (None, "cpu") and isinstance(spec, ModelSpec):
        probe_spec = dataclasses.replace(spec, device="cpu")  # the driver may have no GPU
    fmodel = model_of(probe_spec, fresh=True)  # this run's weights, not a build kept from before
    dataset = as_dataset(data, fmodel, **data_options)
    if len(dataset.y) == 0:
        raise EvaluationError(
            f"data {dataset.name!r} holds no samples (offset {data_options['offset']})"
        )
    num_classes = probe(fmodel, dataset)
    targets, rule = dataset.targets, "given" if dataset.targets is not None else None
    if targeted and targets is None:
        targets, rule = (dataset.y + 1) % num_classes, "(label + 1) mod classes"
    check_classes("targets", targets, num_classes)
    built = config.build(_runtime.model_framework(fmodel))
    if targeted and not built.supports_targeted:
        raise EvaluationError(f"attack {config.name!r} is untargeted only")
    print_ = fingerprint(fmodel, dataset.x.shape[1:])
    signals = sanity.model_signals(fmodel, dataset.x[: sanity.SIGNAL_SAMPLES])
    return _Inputs(spec, dataset, targets, rule, config, built, print_, signals)


def plan_shards(dataset: Dataset, targets: Optional[np.ndarray], shard_size: int) -> List[Shard]:
    """Consecutive shards of ``shard_size`` samples (the last one may be smaller)."""
    return [
        Shard(
            index=k,
            start=lo,
            x=dataset.x[lo : lo + shard_size],
            labels=dataset.y[lo : lo + shard_size],
            targets=targets[lo : lo + shard_size] if targets is not None else None,
            indices=dataset.indices[lo : lo + shard_size],
        )
        for k, lo in enumerate(range(0, len(dataset.y), shard_size))
    ]


def _identity(
    inputs: _Inputs, plan: Plan, shard_size: int, device: Optional[str]
) -> Dict[str, Any]:
    """What the results depend on: a resumed run must match it (the store compares it)."""
    model = dict(inputs.spec.identity(), parameters=inputs.fingerprint["parameters"])
    return {
        "format": IDENTITY_FORMAT,
        "model": model,
        "data": inputs.dataset.identity(),
        "attack": inputs.built.settings,
        "targeted": plan.targeted,
        "targets": inputs.targets_rule if plan.targeted else None,
        "seed": plan.seed,
        "batch_size": plan.batch_size,
        "shard_size": int(shard_size),
        "device": device,
    }


def _saved_shards(
    folder: Optional[RunFolder], shards: Sequence[Shard], plan: Plan, force: bool
) -> Dict[int, ShardResult]:
    """The shards an earlier run of the same identity finished (none with ``force``)."""
    if folder is None or force:
        return {}
    results = {}
    for shard in shards:
        saved = folder.load(shard.index, len(shard), plan.keep_adversarials)
        if saved is not None:
            results[shard.index] = saved
    return results


class _Progress(Hooks):
    def __init__(self, bar: Any):
        self.bar = bar

    def batch_done(self, samples: int) -> None:
        self.bar.update(samples)


def _run(
    plan: Plan,
    shards: Sequence[Shard],
    todo: Sequence[Shard],
    results: Dict[int, ShardResult],
    folder: Optional[RunFolder],
    ray: Any,
    workers: Optional[int],
    device: Optional[str],
    progress: bool,
) -> Dict[str, Any]:
    """Runs the missing shards (saving each as it finishes); returns how it ran."""
    use_ray = ray not in (None, False)
    bar = tqdm(
        total=sum(len(s) for s in shards),
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

    def finished(result: ShardResult) -> None:
        if folder is not None:
            folder.save(result)
        results[result.index] = result
        if use_ray:  # in this process the hooks count the samples batch by batch
            bar.update(len(result))

    try:
        if todo:
            execute(
                plan,
                todo,
                finished,
                ray=ray,
                hooks=_Progress(bar),
                workers=workers,
                device=device,
                info=execution,
            )
    finally:
        bar.close()
    execution["description"] = (
        f"Ray, {execution['workers'] or 'all'} workers x {plan.threads} thread(s)"
        if use_ray
        else f"in-process, {plan.threads or 'default'} thread(s)"
    )
    return execution


def _summary(
    result: EvaluationResult,
    inputs: _Inputs,
    shards: Sequence[Shard],
    todo: Sequence[Shard],
    results: Dict[int, ShardResult],
    identity: Dict[str, Any],
    execution: Dict[str, Any],
) -> Dict[str, Any]:
    """``summary.json``: the metrics, counts, times, the shards computed and loaded, settings."""
    n = len(result)
    every = [results[s.index] for s in shards]
    computed = {s.index for s in todo}
    loaded = sorted(s.index for s in shards if s.index not in computed)
    return {
        "title": _title(inputs.built, inputs.spec, inputs.dataset, n),
        "distance": inputs.built.distance_name,
        "samples": n,
        "clean_accuracy": result.clean_accuracy,
        "asr": result.asr,
        "median_distance": result.median,
        "robust_accuracy": {
            f"{e:g}": float(v)
            for e, v in zip(result.epsilons, result.robust_accuracy(result.epsilons))
        },
        "forwards_per_sample": sum(s.forwards for s in every) / n,
        "backwards_per_sample": sum(s.backwards for s in every) / n,
        "seconds": {
            "attack": sum(s.seconds for s in every),
            "attack_computed_now": sum(results[s.index].seconds for s in todo),
        },
        "shards": {
            "total": len(shards),
            "computed": len(todo),
            "loaded": len(loaded),
            "computed_indices": [s.index for s in todo],
            "loaded_indices": loaded,
            "first_started": min((s.started for s in every), default=None),
            "last_finished": max((s.finished for s in every), default=None),
        },
        "flags": [f.as_dict() for f in _flags(result, inputs, every)],
        "model": inputs.spec.describe(),
        "data": inputs.dataset.describe(),
        "settings": identity,
        "fingerprint": inputs.fingerprint,
        "execution": dict(execution, **_used(every)),
        "machine": _runtime.machine_info(),
    }


def _flags(
    result: EvaluationResult, inputs: _Inputs, shards: Sequence[ShardResult]
) -> List[sanity.Flag]:
    """The sanity flags of the run (:mod:`foolbox_alma.pipeline.sanity`)."""
    checked = sum(int(s.info.get("gradients_checked", 0)) for s in shards)
    zero = sum(int(s.info.get("zero_gradients", 0)) for s in shards)
    failures = int((~result.success).sum())
    return sanity.flags(inputs.signals, zero, checked, failures, len(result))


def _used(shards: Sequence[ShardResult]) -> Dict[str, Any]:
    """The threads and devices the shards ran with, as their workers reported them."""
    threads = sorted({s.info["threads"] for s in shards if "threads" in s.info})
    devices = sorted({s.info["device"] for s in shards if "device" in s.info})
    return {"threads_used": threads, "devices_used": devices}


def default_out(inputs: _Inputs, identity: Dict[str, Any]) -> str:
    """``evaluation/<model>-<data>-<attack>-<steps>-<digest>``: the model file and function (or zoo
    name), the data, the attack and budget, and 8 hex digits of the run's identity, so that runs
    of other models, weights, data, selections or settings never share a folder."""
    spec, data = inputs.spec, inputs.dataset
    if isinstance(spec, LiveModel):
        model = type(spec.model).__name__
    elif spec.kind in ("file-function", "module-function"):
        where, function = spec.text.rsplit(":", 1)
        model = f"{os.path.splitext(os.path.basename(where))[0].split('.')[-1]}-{function}"
    else:
        model = os.path.splitext(os.path.basename(spec.text.rstrip("/")))[0]
        if spec.kind == "zoo" and spec.framework not in (None, "pytorch"):
            model += f"-{spec.framework}"
    source = os.path.splitext(os.path.basename(data.name.rstrip("/")))[0] or "data"
    settings = inputs.built.settings
    attack = (
        inputs.config.name if inputs.config.name != "alma" else f"alma-{inputs.built.distance_name}"
    )
    steps = settings.get("steps")
    what = f"{attack}-{steps}" if steps else attack
    name = "-".join(_slug(part) for part in (model, source, what, identity_hash(identity)[:8]))
    return os.path.join(DEFAULT_ROOT, name)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]+", "_", text).strip("._") or "x"


# -- inputs -------------------------------------------------------------------------------------


def _title(built: BuiltAttack, spec: Any, dataset: Dataset, n: int) -> str:
    """``ALMA L2, 100 steps, on examples/models/net.py:build, 1000 samples of mnist-heldout``."""
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


def _check_positive(name: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise EvaluationError(f"{name} must be a positive integer, got {value!r}")


def _model_spec(model: Any, **kwargs: Any) -> Any:
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
