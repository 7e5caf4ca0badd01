"""Behaviour unchanged across a refactoring: the same evaluations and benchmark runs, made by two
checkouts of this repository, must give identical per-sample results.

Each checkout runs, in its own subprocess (``PYTHONPATH`` set to it), a fixed list of
``foolbox-alma evaluate`` and ``foolbox-alma bench`` commands with fixed seeds on the shipped
models and held-out data, into a temporary folder. Then, per command:

* evaluate: ``samples.csv`` must be byte for byte the same (indices, labels, targets, clean and
  adversarial predictions, success, the distance's repr, shard);
* bench: for every attack of ``results.json``, the per-image distances and successes and the
  counted forward/backward passes must be equal (times are not compared).

Usage::

    git worktree add /tmp/before <commit>         # the revision before the change
    python scripts/check_unchanged.py /tmp/before .   [--quick]

Exits 0 when every command agrees, 1 otherwise (printing what differs).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

EVALUATIONS: List[Tuple[str, List[str]]] = [
    (
        "smallcnn-l2-torch",
        ["--model", "smallcnn", "--data", "mnist-heldout", "--limit", "24", "--steps", "30"],
    ),
    (
        "smallcnn-l1-targeted-shards",
        ["--model", "smallcnn", "--data", "mnist-heldout", "--limit", "24", "--steps", "30",
         "--distance", "l1", "--targeted", "--shard-size", "8", "--batch-size", "8",
         "--epsilons", "1,5"],
    ),
    (
        "colour-ciede2000-jax",
        ["--model", "colour-cnn", "--data", "colour-cnn-heldout", "--limit", "12", "--steps",
         "20", "--distance", "ciede2000", "--framework", "jax"],
    ),
    (
        "smallcnn-ddn-tf",
        ["--model", "smallcnn", "--data", "mnist-heldout", "--limit", "12", "--steps", "20",
         "--attack", "ddn", "--framework", "tensorflow"],
    ),
]  # fmt: skip
BENCHES: List[Tuple[str, List[str]]] = [
    (
        "bench-smallcnn",
        ["--model", "smallcnn", "--images", "16", "--steps", "20", "--attacks",
         "alma-l1,alma-l2,ddn,fmn-l2,fmn-l1", "--floor-passes", "0"],
    ),
    (
        "bench-colour-measure",
        ["--model", "colour-cnn", "--images", "8", "--steps", "15", "--attacks",
         "alma-ssim,alma-l2", "--measure", "ciede2000,ssim", "--floor-passes", "0"],
    ),
]  # fmt: skip


def run_all(checkout: Path, out: Path, quick: bool) -> None:
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve()), CUDA_VISIBLE_DEVICES="")
    jobs = [("evaluate", name, args) for name, args in EVALUATIONS]
    jobs += [("bench", name, args) for name, args in BENCHES]
    if quick:
        jobs = jobs[:1] + jobs[-2:-1]
    for command, name, args in jobs:
        target = out / name
        cmd = [sys.executable, "-m", "foolbox_alma", command, *args, "--out", str(target)]
        cmd += ["--no-progress"]
        print(f"[{checkout}] {' '.join(cmd[2:])}", flush=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out)
        if done.returncode != 0:
            raise SystemExit(f"{checkout}: {name} failed:\n{done.stdout}\n{done.stderr}")


def compare(before: Path, after: Path) -> List[str]:
    problems: List[str] = []
    for name, _ in EVALUATIONS:
        a, b = before / name / "samples.csv", after / name / "samples.csv"
        if not a.exists() and not b.exists():
            continue
        if a.read_bytes() != b.read_bytes():
            problems.append(f"{name}: samples.csv differs")
    for name, _ in BENCHES:
        a, b = before / name / "results.json", after / name / "results.json"
        if not a.exists() and not b.exists():
            continue
        problems += [f"{name}: {p}" for p in _bench_differences(a, b)]
    return problems


def _bench_differences(a: Path, b: Path) -> List[str]:
    def per_attack(path: Path) -> Dict[str, dict]:
        return {f"{r['name']}@{r['steps']}": r for r in json.loads(path.read_text())["results"]}

    old, new = per_attack(a), per_attack(b)
    problems = [] if set(old) == set(new) else [f"attacks {sorted(old)} vs {sorted(new)}"]
    for key in sorted(set(old) & set(new)):
        for field in ("distances", "success", "forwards", "backwards", "measured"):
            if old[key].get(field) != new[key].get(field):
                problems.append(f"{key}: {field} differs")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="checkout of the revision before the change")
    parser.add_argument("after", type=Path, help="checkout after the change (e.g. .)")
    parser.add_argument("--quick", action="store_true", help="one evaluation and one bench")
    parser.add_argument("--keep", type=Path, help="write the runs here instead of a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for label, checkout in (("before", args.before), ("after", args.after)):
            (root / label).mkdir(parents=True, exist_ok=True)
            run_all(checkout, root / label, args.quick)
        problems = compare(root / "before", root / "after")
    for problem in problems:
        print("DIFFERS:", problem)
    print("unchanged" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
