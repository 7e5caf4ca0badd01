"""The evaluation engine: attack every sample of a data set, resumably, in-process or on Ray.

Example::

    import foolbox_alma
    result = foolbox_alma.evaluate("my_model.py:build", "test_set.npz", distance="l2",
                                   steps=1000, epsilons=[0.5, 1, 2], out="eval/my_model")
    result.robust_accuracy([0.5, 1, 2]); result.plot("ra.png")

or ``foolbox-alma evaluate --model my_model.py:build --data test_set.npz --out eval/my_model``.

How it works: the data is split into shards (``shard_size`` samples, by default one batch).
Each shard is attacked by :func:`~foolbox_alma.evaluation.engine.run_shard`, which rebuilds the
model from its *spec* (:mod:`.models`: a zoo name, a Python function, a TorchScript or Keras
file), seeds the framework with a seed derived from ``(seed, shard index)``, runs the attack
batch by batch with its forward and backward passes counted, and scores the returned points with
the model. Finished shards are written to the output folder atomically (:mod:`.store`), so a run
that is interrupted loses only the shards in progress, and a rerun with the same settings
computes only the missing ones. With ``ray`` the shards are Ray tasks (:mod:`.ray_runner`), one
per shard, retried when a worker dies; the driver writes what they return. A shard's result
depends only on what travels with it, so an in-process run and a Ray run with the same settings
give identical per-sample results. The merged result (:mod:`.result`) holds per-sample arrays,
the summary, and writes ``samples.csv``, ``summary.json``, ``robust_accuracy.png`` and
``report.md``.
"""

from .attacks import AttackConfig, BuiltAttack
from .data import Dataset, load_data
from .engine import Plan, Shard, ShardResult, attack_batch, measure, run_shard, score_batch
from .models import ModelSpec, load_model, parse_model_spec
from .result import EvaluationResult, format_table
from .run import LiveModel, evaluate
from .store import EvaluationError, RunFolder

__all__ = [
    "AttackConfig",
    "BuiltAttack",
    "Dataset",
    "EvaluationError",
    "EvaluationResult",
    "LiveModel",
    "ModelSpec",
    "Plan",
    "RunFolder",
    "Shard",
    "ShardResult",
    "attack_batch",
    "evaluate",
    "format_table",
    "load_data",
    "load_model",
    "measure",
    "parse_model_spec",
    "run_shard",
    "score_batch",
]
