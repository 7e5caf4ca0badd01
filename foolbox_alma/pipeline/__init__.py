"""The one batch pipeline under ``evaluate``, ``bench``, ``compare`` and ``demo``.

Stages, each a module:

* :mod:`.models` and :mod:`.data`: model specs (zoo names, Python functions, TorchScript and Keras
  files, live objects) and data specs (the zoo's held-out sets, ``.npz`` files, image folders,
  arrays), checked when parsed, loaded where they run;
* :mod:`.engine`: the shards, and :func:`~.engine.run_shard`, the one batch loop: attack (an
  :class:`~foolbox_alma.registry.AttackConfig`), count, score; what a view adds to it goes through
  :class:`~.engine.Hooks`;
* :mod:`.store`: the run folder, its identity and its shards, written atomically;
* :mod:`.executor`: in this process or on Ray, the only place that knows which;
* :mod:`.result`: the merged per-sample result and the files people read.

Nothing here imports a view (:mod:`foolbox_alma.evaluation`, :mod:`foolbox_alma.bench`,
:mod:`foolbox_alma.compare`, :mod:`foolbox_alma.demo`).
"""

from .data import Dataset, as_dataset, load_data
from .engine import Hooks, Plan, Shard, ShardResult, attack_batch, measure, run_shard, score_batch
from .errors import EvaluationError
from .executor import execute
from .models import LiveModel, ModelSpec, load_model, model_of, parse_model_spec
from .result import EvaluationResult, format_table
from .store import RunFolder

__all__ = [
    "Dataset",
    "EvaluationError",
    "EvaluationResult",
    "Hooks",
    "LiveModel",
    "ModelSpec",
    "Plan",
    "RunFolder",
    "Shard",
    "ShardResult",
    "as_dataset",
    "attack_batch",
    "execute",
    "format_table",
    "load_data",
    "load_model",
    "measure",
    "model_of",
    "parse_model_spec",
    "run_shard",
    "score_batch",
]
