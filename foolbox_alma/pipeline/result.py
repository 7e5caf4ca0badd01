"""The merged result of an evaluation: per-sample arrays, the summary, and the files people read.

Robust accuracy at epsilon is the share of samples that are classified correctly and whose
adversarial is farther than epsilon: a sample the model already misclassifies has distance 0, and
one for which no adversarial was found has distance +inf (robust at every epsilon).
"""

import csv
import io
import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .. import metrics
from .._io import json_text, markdown_table, write_atomic
from .engine import ShardResult

TITLE_WIDTH = 70
"""Characters per line of the plot's title (6-inch figure, 9-point font)."""


@dataclass
class EvaluationResult(metrics.PerSampleMetrics):
    """Per-sample results, in the data's order, and the run's summary."""

    DISTANCES = "distance"

    indices: np.ndarray
    labels: np.ndarray
    targets: Optional[np.ndarray]
    clean_prediction: np.ndarray
    adversarial_prediction: np.ndarray
    success: np.ndarray
    distance: np.ndarray  # +inf where no adversarial was found
    shard: np.ndarray
    epsilons: List[float]
    summary: Dict[str, Any] = field(default_factory=dict)
    adversarials: Optional[np.ndarray] = None
    out: Optional[Path] = None
    files: Optional[List[str]] = None  # an image folder's file of each sample

    @classmethod
    def merge(
        cls,
        shards: Sequence[ShardResult],
        epsilons: Sequence[float],
        targeted: bool,
    ) -> "EvaluationResult":
        ordered = sorted(shards, key=lambda s: s.index)

        def cat(name: str, dtype: Any) -> np.ndarray:
            parts = [np.asarray(getattr(s, name)) for s in ordered]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        adversarials = None
        if ordered and all(s.adversarials is not None for s in ordered):
            adversarials = np.concatenate([s.adversarials for s in ordered])
        return cls(
            indices=cat("indices", np.int64),
            labels=cat("labels", np.int64),
            targets=cat("targets", np.int64) if targeted else None,
            clean_prediction=cat("clean_prediction", np.int64),
            adversarial_prediction=cat("adversarial_prediction", np.int64),
            success=cat("success", bool),
            distance=metrics.distances_with_failures(
                cat("distance", np.float64), cat("success", bool)
            ),
            shard=np.concatenate([np.full(len(s.labels), s.index) for s in ordered]).astype(
                np.int64
            )
            if ordered
            else np.zeros(0, np.int64),
            epsilons=[float(e) for e in epsilons],
            adversarials=adversarials,
        )

    # -- metrics ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_prediction == self.labels).mean()) if len(self) else math.nan

    # -- files ------------------------------------------------------------------------------

    def samples_csv(self) -> str:
        """One row per input: ``index,[file,]label,[target,]clean_prediction,
        adversarial_prediction,success,distance,shard`` (distance ``inf`` where no adversarial
        was found; ``file`` for an image folder, relative to it)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = ["index"] + (["file"] if self.files is not None else []) + ["label"]
        if self.targets is not None:
            header.append("target")
        header += ["clean_prediction", "adversarial_prediction", "success", "distance", "shard"]
        writer.writerow(header)
        for i in range(len(self)):
            row: List[Any] = [int(self.indices[i])]
            if self.files is not None:
                row.append(self.files[i])
            row.append(int(self.labels[i]))
            if self.targets is not None:
                row.append(int(self.targets[i]))
            row += [
                int(self.clean_prediction[i]),
                int(self.adversarial_prediction[i]),
                bool(self.success[i]),
                repr(float(self.distance[i])),
                int(self.shard[i]),
            ]
            writer.writerow(row)
        return buffer.getvalue()

    def plot(self, path: Union[str, Path, None] = None, title: Optional[str] = None) -> Any:
        """Robust accuracy against epsilon (the asked epsilons marked); writes ``path`` when
        given and returns the matplotlib figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        finite = self.distance[np.isfinite(self.distance)]
        top = max([float(finite.max()) if finite.size else 1.0] + self.epsilons) * 1.1 or 1.0
        grid = np.linspace(0, top, 800)
        fig, ax = plt.subplots(figsize=(6, 4))
        # the clean accuracy first, dashed and dark: visible where the curve starts on it (100%)
        ax.axhline(
            100 * self.clean_accuracy,
            color="0.35",
            linestyle="--",
            linewidth=1.2,
            zorder=1,
            label=f"clean accuracy {100 * self.clean_accuracy:.1f}%",
        )
        ax.step(grid, 100 * self.robust_accuracy(grid), where="post", linewidth=1.5, zorder=2)
        for eps, ra in zip(self.epsilons, self.robust_accuracy(self.epsilons)):
            ax.plot([eps], [100 * ra], "o", color="C3", zorder=3)
            ax.annotate(  # below and right of the point: clear of the title at 100%
                f"{100 * ra:.1f}%",
                (eps, 100 * ra),
                textcoords="offset points",
                xytext=(5, -12),
                fontsize=8,
            )
        distance = self.summary.get("distance", "distance")
        ax.set_xlim(0, top)
        ax.set_ylim(0, 105)
        ax.set_xlabel(f"{distance} budget epsilon")
        ax.set_ylabel("robust accuracy (%)")
        ax.grid(True, linestyle="--", color="lightgray")
        ax.legend(fontsize=8)
        # wrapped: a run's title (attack, model path, data) is often wider than the figure
        title = title or self.summary.get("title", "robust accuracy")
        ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=9)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig

    def report_markdown(self, figure: Optional[str] = "robust_accuracy.png") -> str:
        s = self.summary
        lines = [f"# {s.get('title', 'Evaluation')}", ""]
        lines.append(f"* model: `{s['model'].get('text')}`")
        lines.append(f"* data: `{s['data'].get('name')}`, {len(self)} samples")
        lines.append(f"* attack: {json.dumps(s['settings']['attack'])}")
        lines.append(f"* finished {s.get('finished')}; {s['execution']['description']}")
        shards = s["shards"]
        if shards["loaded"]:
            lines.append(
                f"* {shards['loaded']} of {shards['total']} shards were loaded from an earlier "
                f"run in this folder, {shards['computed']} computed now"
            )
        lines += ["", format_table(self), ""]
        flags = s.get("flags") or []
        if flags:
            lines += ["Sanity flags (these numbers may not be trustworthy as they are):", ""]
            lines += [
                f"* **{f['flag']}**: {f['seen']}. {f['meaning']} {f['advice']}" for f in flags
            ]
            lines.append("")
        if figure:
            lines += [f"![robust accuracy]({figure})", ""]
        return "\n".join(lines)

    def write(self, folder: Any, save_adversarials: bool = False) -> Dict[str, Path]:
        """Writes samples.csv, summary.json, robust_accuracy.png, report.md (and
        adversarials.npz) into the run folder (atomically)."""
        paths = {
            "samples": folder.write_text("samples.csv", self.samples_csv()),
            "summary": folder.write_text("summary.json", json_text(self.summary)),
        }
        png = folder.path / "robust_accuracy.png"
        tmp = folder.path / ".robust_accuracy.png.tmp.png"
        self.plot(tmp)
        tmp.replace(png)
        paths["plot"] = png
        paths["report"] = folder.write_text("report.md", self.report_markdown())
        if save_adversarials and self.adversarials is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, adversarials=self.adversarials, indices=self.indices)
            write_atomic(folder.path / "adversarials.npz", buffer.getvalue())
            paths["adversarials"] = folder.path / "adversarials.npz"
        return paths


def format_table(result: EvaluationResult) -> str:
    """The summary as a Markdown table: one row, robust accuracy (RA, %) at each epsilon; attack
    seconds are summed over the shards (those loaded from an earlier run included)."""
    s = result.summary
    eps_cols = [f"RA @ {e:g}" for e in result.epsilons]
    distance = s.get("distance", "")
    distance = distance.upper() if distance in ("l1", "l2", "linf") else distance
    header = ["samples", "clean acc. (%)", "ASR (%)", f"median {distance}".strip()]
    header += eps_cols + ["fwd / bwd per sample", "attack seconds"]
    ra = result.robust_accuracy(result.epsilons) if result.epsilons else np.zeros(0)
    row = [
        str(len(result)),
        f"{100 * result.clean_accuracy:.2f}",
        f"{100 * result.asr:.2f}",
        metrics.format_median(result.median),
    ]
    row += [f"{100 * v:.2f}" for v in ra]
    row += [
        f"{s.get('forwards_per_sample', math.nan):.0f} / {s.get('backwards_per_sample', math.nan):.0f}",
        f"{s.get('seconds', {}).get('attack', math.nan):.1f}",
    ]
    return markdown_table(header, [row])
