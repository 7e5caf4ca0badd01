"""``foolbox-alma evaluate``: attack every sample of a data set, resumably, in-process or on Ray.

Example::

    import foolbox_alma
    result = foolbox_alma.evaluate("my_model.py:build", "test_set.npz", distance="l2",
                                   steps=1000, epsilons=[0.5, 1, 2], out="eval/my_model")
    result.robust_accuracy([0.5, 1, 2]); result.plot("ra.png")

or ``foolbox-alma evaluate --model my_model.py:build --data test_set.npz --out eval/my_model``.

How it works: the data is split into shards (``shard_size`` samples, by default one batch).
Each shard is attacked by the pipeline's one batch loop
(:func:`~foolbox_alma.pipeline.engine.run_shard`), which rebuilds the model from its *spec*
(:mod:`foolbox_alma.pipeline.models`: a zoo name, a Python function, a TorchScript or Keras
file), seeds the framework with a seed derived from ``(seed, shard index)``, runs the attack
batch by batch with its forward and backward passes counted, and scores the returned points with
the model. Finished shards are written to the output folder atomically
(:mod:`foolbox_alma.pipeline.store`), so a run that is interrupted loses only the shards in
progress, and a rerun with the same settings computes only the missing ones. With ``ray`` the
shards are Ray tasks (:mod:`foolbox_alma.pipeline.executor`), one per shard, retried when a
worker dies; the driver writes what they return. A shard's result depends only on what travels
with it, so an in-process run and a Ray run with the same settings give identical per-sample
results. The merged result (:mod:`foolbox_alma.pipeline.result`) holds per-sample arrays, the
summary, and writes ``samples.csv``, ``summary.json``, ``robust_accuracy.png`` and
``report.md``.
"""

from ..pipeline.errors import EvaluationError
from ..pipeline.result import EvaluationResult, format_table
from .run import evaluate

__all__ = ["EvaluationError", "EvaluationResult", "evaluate", "format_table"]
