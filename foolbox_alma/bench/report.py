"""The benchmark's outputs: a Markdown table laid out like the paper's, a JSON file with the
per-sample distances and settings, a PNG of robust accuracy versus epsilon, and a Markdown report
(the table with the command, machine, date and findings) that :func:`collect` gathers into
``BENCHMARKS.md``.
"""

import json
import math
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .. import metrics
from .._io import write_atomic
from ..registry import ATTACKS, STANDARD_RULER
from .runner import AttackResult, BenchmarkRun

DISTANCE_ORDER = ("l1", "l2")
DISTANCE_LABELS = {
    "none": "Calibration",
    "l1": "L1",
    "l2": "L2",
    "ciede2000": "CIEDE2000",
    "ssim": "SSIM",
    "msssim": "MS-SSIM",
    "lpips": "LPIPS",
    "ciede2000-adv_lib": "CIEDE2000 (adv_lib's scale)",
    "lpips-adv_lib": "LPIPS (adv_lib's, no linear layers)",
}
RULER_ORDER = ("l1", "l2", "linf", "ciede2000", "ssim", "msssim", "lpips")
SOURCE_LABELS = {
    "foolbox-alma": "foolbox-alma (ours)",
    "foolbox": "Foolbox",
    "adv_lib": "adv_lib",
    "benchmark": "the floor's passes",
}

TABLE_HEADER = (
    "| Distance | Attack | Implementation | Budget | ASR (%) | Median | Forwards | Backwards "
    "| Seconds | Time / fwd+bwd | Optimality |"
)

PREAMBLE = """# Benchmarks

Written by `foolbox-alma bench` (module `foolbox_alma.bench`) from the runs listed below; each
section states its command, machine and date. Re-run a section with its command; `--collect`
rebuilds this file from the runs' output folders.

Columns (per attack, on the same images, with the same seed):

* **ASR**: share of the images for which the attack returned an adversarial (the model's own
  verdict on the returned point; images the model already misclassifies count, at distance 0).
* **Median**: median distance over all images, failures counted as +inf ("-" when ASR < 50%).
* **Forwards / Backwards**: passes through the model per image, counted (PyTorch: module hooks;
  TensorFlow and JAX: an identity with a custom gradient in front of the model, counting inside
  compiled code too).
* **Seconds**: wall-clock time of the attack calls.
* **Time / fwd+bwd**: the attack's time over the time of as many plain forward+backward passes
  (gradient of a cross-entropy loss with respect to the inputs, through the same Foolbox model)
  as it made backward passes, on the same batches; 1.00 means the attack costs nothing beyond its
  model passes. The plain passes are timed interleaved with the attack, so that the machine's
  load affects both sides alike: on PyTorch between the attack's steps (a forward pre-hook runs
  a timed plain pass before every k-th gradient-carrying forward of the attack, and that time is
  subtracted from the attack's), elsewhere half just before and half just after each batch. On
  TensorFlow and JAX the attack's time includes compiling its step. With `--repeats R` every
  attack runs R times (round-robin over the attacks): Seconds is the median and the ratio is the
  median of the R ratios, followed by their [min, max]. A "Plain passes" calibration row (the
  floor's own passes timed as if they were an attack) shows the method's bias and noise.
* **Optimality** (AttackBench, Cinà et al. 2024): with `RA_d(eps)` the share of images whose
  distance exceeds `eps` (robust accuracy), `best` the per-image minimum over all attacks of the
  run for that distance, `eps_max` the largest finite `best`, and
  `A(d) = integral_0^eps_max RA_d(eps) deps = mean_i min(d_i, eps_max)`:
  `optimality = (clean_accuracy * eps_max - A(attack)) / (clean_accuracy * eps_max - A(best))`.
  1.00: as good as the best attack at every budget; 0: no better than an attack that finds
  nothing below `eps_max`. It is relative to the attacks in the same table.
"""


def ordered(results: Sequence[AttackResult]) -> List[AttackResult]:
    """L1 attacks, then L2, then other distances; by budget, then in registry order."""
    names = list(ATTACKS)

    def key(r: AttackResult) -> tuple:
        if r.distance in DISTANCE_ORDER:
            d = DISTANCE_ORDER.index(r.distance)
        else:  # other distances, then the calibration rows
            d = len(DISTANCE_ORDER) + (r.distance == "none")
        return (d, r.distance, r.steps, names.index(r.name) if r.name in names else len(names))

    return sorted(results, key=key)


def format_table(run: BenchmarkRun) -> str:
    """The paper's columns (plus time ratio and optimality), grouped by distance."""
    lines = [TABLE_HEADER, "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"]
    previous = None
    for r in ordered(run.results):
        distance = DISTANCE_LABELS.get(r.distance, r.distance) if r.distance != previous else ""
        previous = r.distance
        lines.append(
            "| "
            + " | ".join(
                [
                    f"**{distance}**" if distance else "",
                    r.label,
                    SOURCE_LABELS.get(r.source, r.source),
                    r.budget,
                    f"{100 * r.asr:.2f}",
                    metrics.format_median(r.median),
                    _count(r.forwards),
                    _count(r.backwards),
                    f"{r.seconds:.1f}",
                    _ratio(r.overhead)
                    + (
                        f" [{min(r.repeat_ratios):.2f}, {max(r.repeat_ratios):.2f}]"
                        if r.repeat_ratios
                        else ""
                    ),
                    _ratio(run.optimality(r), 3),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def rulers(run: BenchmarkRun) -> List[str]:
    """The distances the run's attacks were also measured in (``run_benchmark(measure=...)``)."""
    names = {d for r in run.results for d in r.measured}
    return sorted(names, key=lambda d: (RULER_ORDER.index(d) if d in RULER_ORDER else 99, d))


def format_measured_table(run: BenchmarkRun) -> str:
    """Every attack's median in the distance it minimises (on its own scale) and in each
    standard distance measured (failures as +inf), per budget: the paper's perceptual table,
    with the L2 attacks measured in the perceptual distances too. In each budget and column the
    smallest median is bold. Empty when nothing was measured."""
    columns = rulers(run)
    if not columns:
        return ""
    header = (
        "| Budget | Attack | Implementation | Minimises | ASR (%) | Median, own scale | "
        + " | ".join(f"Median {DISTANCE_LABELS.get(c, c)}" for c in columns)
        + " |"
    )
    lines = [header, "|" + "---|" * (header.count(" | ") + 1)]
    results = [r for r in ordered(run.results) if r.distance != "none"]
    for steps in sorted({r.steps for r in results}):
        same = [r for r in results if r.steps == steps]
        best = {c: min((r.median_in(c) for r in same), default=math.nan) for c in columns}
        for r in same:
            cells = []
            for c in columns:
                value = r.median_in(c)
                text = metrics.format_median(value) if not math.isnan(value) else "n/a"
                cells.append(f"**{text}**" if value == best[c] and math.isfinite(value) else text)
            lines.append(
                "| "
                + " | ".join(
                    [
                        r.budget,
                        r.label,
                        SOURCE_LABELS.get(r.source, r.source),
                        DISTANCE_LABELS.get(r.distance, r.distance),
                        f"{100 * r.asr:.2f}",
                        metrics.format_median(r.median),
                        *cells,
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def measured_findings(run: BenchmarkRun) -> List[str]:
    """ALMA (ours) against adv_lib's ALMA minimising the same distance, on the standard ruler
    (adv_lib's CIEDE2000 and LPIPS runs measured with the standard distances)."""
    notes = []
    columns = rulers(run)
    for r in run.results:
        if r.source != "adv_lib" or r.label != "ALMA":
            continue
        ruler = STANDARD_RULER.get(r.distance, r.distance)
        if ruler != r.distance and ruler not in columns:
            continue
        ours = [
            o
            for o in run.results
            if o.source == "foolbox-alma" and o.distance == ruler and o.steps == r.steps
        ]
        for o in ours:
            mine, theirs = o.median_in(ruler), r.median_in(ruler)
            name = DISTANCE_LABELS.get(ruler, ruler)
            relative = (
                f" ({100 * (mine / theirs - 1):+.1f}%)"
                if math.isfinite(mine) and math.isfinite(theirs) and theirs > 0
                else ""
            )
            notes.append(
                f"{name}, {r.budget} steps, on the standard scale: ALMA (ours) median "
                f"{metrics.format_median(mine)} vs adv_lib's ALMA minimising "
                f"{DISTANCE_LABELS.get(r.distance, r.distance)} "
                f"{metrics.format_median(theirs)}{relative}; ASR {100 * o.asr:.2f}% vs "
                f"{100 * r.asr:.2f}%."
            )
    return notes


def plot_robust_accuracy(run: BenchmarkRun, path: Union[str, Path]) -> None:
    """Robust accuracy versus epsilon for every attack, one panel per distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {d: ordered(rs) for d, rs in run.by_distance().items() if d != "none"}
    names = sorted(groups, key=lambda d: (DISTANCE_ORDER + (d,)).index(d))
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4), squeeze=False)
    for ax, distance in zip(axes[0], names):
        best = run.best_distances(distance)
        finite = best[np.isfinite(best)]
        eps_max = float(finite.max()) if finite.size else 1.0
        grid = np.linspace(0, 1.5 * eps_max, 600)
        for r in groups[distance]:
            style = "-" if r.source == "foolbox-alma" else ("--" if r.source == "foolbox" else ":")
            label = f"{r.label} {r.budget} ({SOURCE_LABELS.get(r.source, r.source)})"
            ra = metrics.robust_accuracy(r.distances_with_failures, grid)
            ax.step(grid, 100 * ra, where="post", linestyle=style, linewidth=1.2, label=label)
        ax.step(
            grid,
            100 * metrics.robust_accuracy(best, grid),
            where="post",
            color="black",
            linewidth=0.8,
            alpha=0.6,
            label="best per image",
        )
        ax.set_xlim(0, 1.5 * eps_max)
        ax.set_ylim(0, 100)
        ax.set_xlabel(f"{DISTANCE_LABELS.get(distance, distance)} budget epsilon")
        ax.set_ylabel("robust accuracy (%)")
        ax.grid(True, linestyle="--", color="lightgray")
        ax.legend(fontsize=7)
    model = run.info.get("model", "model")
    fig.suptitle(
        f"{model} ({run.info.get('framework')}), {len(run.labels)} images, "
        f"clean accuracy {100 * run.clean_accuracy:.1f}%",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def findings(run: BenchmarkRun) -> List[str]:
    """Plain statements comparing ALMA (ours) with every other attack at the same budget."""
    notes = []
    for distance, results in run.by_distance().items():
        name = DISTANCE_LABELS.get(distance, distance)
        for steps in sorted({r.steps for r in results}):
            same = [r for r in results if r.steps == steps]
            ours = [r for r in same if r.source == "foolbox-alma"]
            if not ours:
                continue
            alma = ours[0]
            notes.append(
                f"{name}, {steps} steps: ALMA (ours) succeeds on {100 * alma.asr:.2f}% of the "
                f"images, median {metrics.format_median(alma.median)}."
            )
            for other in same:
                if other is alma:
                    continue
                who = f"{other.label} {other.budget} ({SOURCE_LABELS.get(other.source)})"
                if other.label == "ALMA" and math.isfinite(other.median) and other.median > 0:
                    notes.append(
                        f"{name}, {steps} steps: ALMA (ours) median is "
                        f"{100 * (alma.median / other.median - 1):+.2f}% relative to {who} "
                        f"({metrics.format_median(alma.median)} vs "
                        f"{metrics.format_median(other.median)}); ASR {100 * alma.asr:.2f}% vs "
                        f"{100 * other.asr:.2f}%."
                    )
                elif other.median < alma.median:
                    cost = ""
                    if other.backwards > 1.1 * alma.backwards:
                        cost = f", with {other.backwards / alma.backwards:.1f}x the backward passes"
                    notes.append(
                        f"**{name}, {steps} steps: {who} beats ALMA (ours)**: median "
                        f"{metrics.format_median(other.median)} vs "
                        f"{metrics.format_median(alma.median)} "
                        f"({100 * (other.median / alma.median - 1):+.2f}%{cost}; ASR "
                        f"{100 * other.asr:.2f}% vs {100 * alma.asr:.2f}%)."
                    )
            for other in same:
                if other.label == "ALMA" and other.source == "adv_lib":
                    notes.append(
                        f"{name}, {steps} steps: time / fwd+bwd {_ratio(alma.overhead)} for ALMA "
                        f"(ours) and {_ratio(other.overhead)} for ALMA (adv_lib)."
                    )
    return notes


def markdown_report(run: BenchmarkRun, title: str, figure: Optional[str] = None) -> str:
    """A section of BENCHMARKS.md: what was run, where, when, the table and the findings."""
    info = run.info
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    lines = [
        f"## {title}",
        "",
        f"Command: `{info.get('command', '(Python API)')}`",
        "",
        f"* Date: {_dates(run)}",
        f"* Machine: {info.get('cpu')}, {info.get('cores')} cores"
        + (f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU")
        + f"; {info.get('platform')}; Python {info.get('python')}; framework threads "
        + f"{info.get('threads') or 'default'}",
        f"* Load average (1, 5, 15 min) at start {info.get('load_average_start')}, at end "
        f"{info.get('load_average_end')} (the cores are shared with other jobs)",
        f"* Versions: {versions}",
        f"* Model: {info.get('model')} on {info.get('framework')}, {len(run.labels)} images "
        f"({info.get('data', 'given by the caller')}), clean accuracy "
        f"{100 * run.clean_accuracy:.2f}%, batch size {info.get('batch_size')}, seed "
        f"{info.get('seed')}",
        f"* Floor timing: {_floor_description(run)}",
        "",
        format_table(run),
        "",
    ]
    measured = format_measured_table(run)
    if measured:
        lines += [
            "The same adversarials measured in the standard distances (median, failures as "
            "+inf; the smallest per budget and column in bold):",
            "",
            measured,
            "",
        ]
    lines += ["Each attack's own run:", ""] + [f"* {d}" for d in attack_dates(run)] + [""]
    if figure:
        lines += [f"![robust accuracy versus epsilon]({figure})", ""]
    notes = findings(run) + measured_findings(run)
    if notes:
        lines += ["Findings:", ""] + [f"* {n}" for n in notes] + [""]
    return "\n".join(lines)


def attack_dates(run: BenchmarkRun) -> List[str]:
    """When each attack's result was computed, and whether this run computed it or loaded it
    from an earlier run's file."""
    lines = []
    for r in ordered(run.results):
        when = f"{r.started} to {r.finished}" if r.started else "date not recorded"
        how = "loaded from an earlier run" if r.loaded else "computed in this run"
        lines.append(f"{r.key}: {when} ({how})")
    return lines


def _dates(run: BenchmarkRun) -> str:
    """The span of the attacks' own run dates (not of the final collection)."""
    dated = [r for r in run.results if r.started]
    loaded = sum(r.loaded for r in run.results)
    if not dated:
        span = (
            f"{run.info.get('started')} to {run.info.get('finished')} (attack dates not recorded)"
        )
    else:
        span = f"{min(r.started for r in dated)} to {max(r.finished for r in dated)}"
        if len(dated) < len(run.results):
            span += f"; {len(run.results) - len(dated)} result(s) without a recorded date"
    if loaded:
        span += f"; {loaded} of {len(run.results)} result(s) loaded from earlier runs"
    return span


def write_outputs(run: BenchmarkRun, out: Union[str, Path], title: str) -> Dict[str, Path]:
    """Writes ``table.md``, ``results.json``, ``robust_accuracy.png`` and ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out / "table.md",
        "json": out / "results.json",
        "png": out / "robust_accuracy.png",
        "report": out / "report.md",
    }
    measured = format_measured_table(run)
    paths["table"].write_text(format_table(run) + "\n" + (f"\n{measured}\n" if measured else ""))
    record = run.to_json()
    record["title"] = title
    paths["json"].write_text(json.dumps(record, indent=1, default=_json_default))
    plot_robust_accuracy(run, paths["png"])
    paths["report"].write_text(markdown_report(run, title, figure=paths["png"].name))
    return paths


def load_run(out: Union[str, Path]) -> "tuple[BenchmarkRun, str]":
    """The run saved by :func:`write_outputs` in ``out`` (and its title)."""
    record = json.loads((Path(out) / "results.json").read_text())
    run = BenchmarkRun(
        results=[AttackResult.from_json(r) for r in record["results"]],
        labels=np.asarray(record["labels"]),
        clean_accuracy=record["clean_accuracy"],
        info=record["info"],
    )
    return run, record.get("title", str(out))


def collect(
    runs: Sequence[Union[str, Path]],
    output: Union[str, Path],
    figures_dir: Union[str, Path, None] = None,
    notes: Union[str, Path, None] = None,
) -> str:
    """Builds ``output`` (BENCHMARKS.md) from the output folders of several runs, copying each
    run's PNG into ``figures_dir`` (relative links) when given; the Markdown file ``notes``, when
    given, goes after the preamble."""
    output = Path(output)
    sections = [PREAMBLE]
    if notes is not None:
        sections.append(Path(notes).read_text())
    for folder in runs:
        run, title = load_run(folder)
        figure = None
        if figures_dir is not None:
            target = Path(figures_dir) / f"bench_{Path(folder).name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(folder) / "robust_accuracy.png", target)
            figure = _relative(target, output.parent)
        sections.append(markdown_report(run, title, figure=figure))
    text = "\n".join(sections)
    output.write_text(text)
    return text


def splice_section(benchmarks: Path, section: str, text: str) -> None:
    """Replaces the ``## `` section of ``benchmarks`` whose title starts with ``section`` (and
    the sections right after it with the same prefix) by ``text``; appends when none does."""
    lines = benchmarks.read_text().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(f"## {section}")), None)
    if start is None:
        new = "\n".join(lines).rstrip() + "\n\n" + text.rstrip() + "\n"
    else:
        end = start + 1
        while end < len(lines) and not (
            lines[end].startswith("## ") and not lines[end].startswith(f"## {section}")
        ):
            end += 1
        new = "\n".join(lines[:start] + text.rstrip().splitlines() + [""] + lines[end:]) + "\n"
    write_atomic(benchmarks, new)


def _floor_description(run: BenchmarkRun) -> str:
    modes = {b.get("timing") for r in run.results for b in r.batches}
    cap = run.info.get("floor_passes")
    amount = "as many plain passes as the budget" if cap is None else f"at most {cap} plain passes"
    parts = []
    if "steps" in modes:
        parts.append(
            f"{amount} per batch, run between the attack's steps (a forward pre-hook runs a "
            "timed plain pass before every k-th gradient forward of the attack; its time is "
            "subtracted from the attack's)"
        )
    if "around" in modes:
        parts.append(f"{amount} per batch, half just before and half just after the attack")
    return "; ".join(parts) or "none (--floor-passes 0): no time ratio"


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def _count(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def _ratio(value: float, digits: int = 2) -> str:
    return f"{value + 0.0:.{digits}f}" if math.isfinite(value) else "-"


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(type(value).__name__)
