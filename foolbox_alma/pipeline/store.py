"""The pipeline's one store: a run's folder, what run it holds, and its shards, written atomically.

Evaluations write one per run (``--out``); the benchmark one per attack and step budget
(``<out>/attacks/<attack>@<steps>/``).

Layout::

    run.json                 the run's identity (model, data, attack settings, seed, shards...)
    shards/shard-000007.npz  one file per finished shard
    samples.csv, summary.json, robust_accuracy.png, report.md, [adversarials.npz]

A shard file is written to a temporary name in the same folder, flushed to disk and renamed:
a process killed at any moment leaves either the whole file or none under the final name (the
temporary files are removed by the next run). Each shard file also carries the run's identity
hash, and is read back only if it matches and holds the expected samples; anything else is
recomputed. A folder holding another run's results is never overwritten without ``force``, and a
folder holding files that are not an evaluation's is never touched.
"""

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._io import json_text, jsonable, write_atomic
from .engine import ShardResult
from .errors import EvaluationError
from .fingerprint import probe_differs

FORMAT = 1
OUTPUTS = (
    "samples.csv",
    "summary.json",
    "robust_accuracy.png",
    "report.md",
    "adversarials.npz",
)


def identity_hash(identity: Dict[str, Any]) -> str:
    """A short digest of a run's identity (its JSON form, keys sorted)."""
    text = json.dumps(jsonable(identity), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RunFolder:
    """A run's folder (see the module docstring).

    ``identity`` is what the results depend on (hashed: the run's id); ``context`` is kept
    beside it for people (names, paths) and not compared; ``probe`` is the model's outputs on
    the fingerprint's probe, compared with a tolerance (:mod:`.fingerprint`): a folder whose
    run had another model is another run's, even where the parameters cannot be hashed.
    """

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        identity: Dict[str, Any],
        context: Optional[Dict[str, Any]] = None,
        probe: Any = None,
    ):
        self.path = Path(path)
        self.identity = identity
        self.context = context or {}
        self.probe = probe
        self.run_id = identity_hash(identity)
        self.shards = self.path / "shards"

    def open(self, force: bool = False, replace_other: bool = False) -> None:
        """Checks the folder holds this run (or nothing), clears it with ``force``, and
        removes temporary files left by an interrupted run. A folder holding another run's
        results is an error, unless ``force`` or ``replace_other`` (the benchmark, whose
        per-attack folders follow their settings) clears it."""
        run_file = self.path / "run.json"
        if self.path.exists() and not self.path.is_dir():
            raise EvaluationError(f"output folder {self.path} is a file")
        if self.path.is_dir() and not run_file.exists():
            foreign = [p.name for p in self.path.iterdir()]
            if foreign:
                raise EvaluationError(
                    f"output folder {self.path} holds files that are not an evaluation's "
                    f"({', '.join(sorted(foreign)[:5])}{'...' if len(foreign) > 5 else ''}): "
                    "choose an empty or new folder"
                )
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text())
            except (OSError, ValueError) as error:
                raise EvaluationError(
                    f"output folder {self.path} has an unreadable run.json ({error}); use "
                    "force to start over"
                ) from None
            changed, explained = self._why_other(previous)
            if changed and replace_other:
                force = True
            elif changed and not force:
                raise EvaluationError(
                    f"output folder {self.path} holds a different run's results (differs in: "
                    f"{', '.join(changed)}{': ' + '; '.join(explained) if explained else ''}); "
                    "rerun with --force (force=True in Python) to overwrite them, or choose "
                    "another folder (the "
                    "default --out is named after the run's identity, so it never holds "
                    "another run's results)"
                )
        if force:
            self.clear()
        self.shards.mkdir(parents=True, exist_ok=True)
        for tmp in list(self.shards.glob(".*.tmp-*")) + list(self.path.glob(".*.tmp-*")):
            tmp.unlink(missing_ok=True)
        record = {
            "format": FORMAT,
            "run_id": self.run_id,
            "identity": self.identity,
            "context": self.context,
            "probe": self.probe,
        }
        write_atomic(run_file, json_text(record))

    def _why_other(self, previous: Dict[str, Any]) -> Tuple[List[str], List[str]]:
        """How the run recorded in ``previous`` differs from this one: the identity's keys that
        differ, and what that means in words (both empty: the same run)."""
        changed: List[str] = []
        if previous.get("run_id") != self.run_id:
            changed = _differences(previous.get("identity", {}), self.identity) or ["format"]
        if not changed and previous.get("probe") is not None and self.probe is not None:
            gap = probe_differs(previous["probe"], self.probe)
            if gap is not None:
                changed = ["model.probe"]
                return changed, [
                    "the model changed since those results were computed: its outputs on the "
                    f"fingerprint's probe differ by {gap:.3g} (relative)"
                ]
        return changed, _explain(changed)

    def clear(self) -> None:
        """Removes this package's files (shards and outputs), nothing else."""
        if self.shards.is_dir():
            shutil.rmtree(self.shards)
        for name in OUTPUTS + ("run.json",):
            (self.path / name).unlink(missing_ok=True)

    def shard_path(self, index: int) -> Path:
        return self.shards / f"shard-{index:06d}.npz"

    def save(self, result: ShardResult) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, run_id=np.asarray(self.run_id), **result.to_arrays())
        write_atomic(self.shard_path(result.index), buffer.getvalue())

    def load(self, index: int, size: int, need_adversarials: bool) -> Optional[ShardResult]:
        """The saved shard, or None when it is missing or not trustworthy (another run's, a
        damaged file, the wrong size, or without adversarials that are wanted)."""
        path = self.shard_path(index)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if str(arrays["run_id"]) != self.run_id:
                    return None
                result = ShardResult.from_arrays(arrays)
        except Exception:  # noqa: BLE001 - any damage means: compute it again
            return None
        if result.index != index or len(result.labels) != size:
            return None
        if need_adversarials and result.adversarials is None:
            return None
        return result

    def write_text(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)


def _explain(changed: List[str]) -> List[str]:
    """What differences of identity (dotted keys) mean for the user, where it is not obvious."""
    if any(c in ("model.parameters", "model.sha256") for c in changed):
        return ["the model's weights or file changed since those results were computed"]
    if any(c.startswith("data.sha256") for c in changed):
        return ["the data's arrays changed"]
    return []


def _differences(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    keys = sorted(set(old) | set(new))
    out: List[str] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, name + ".")
        elif json.dumps(jsonable(a), sort_keys=True) != json.dumps(jsonable(b), sort_keys=True):
            out.append(name)
    return out
