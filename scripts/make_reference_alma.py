"""Store PyTorch ALMA results on a fixed subset, the cross-framework oracle of single-framework envs.

    python scripts/make_reference_alma.py

The PyTorch run is the reference implementation for TensorFlow and JAX: the tox envs that install
one framework only cannot run PyTorch next to it, so ``tests/test_compare.py`` checks each
framework's ALMA median on these settings against the PyTorch median stored here (within 1%).
Writes ``tests/data/alma_reference_pytorch.json``: per case (zoo model, distance, steps, alpha,
held-out images 0..n-1) the median, ASR, per-sample distances and success of PyTorch ALMA, and the
``weights_sha256`` of the model, so the tests notice weights that changed without this file being
regenerated. Rerun it when the shipped weights change.
"""

import argparse
import json
from pathlib import Path

import torch

from foolbox_alma import zoo
from foolbox_alma.compare import run_alma

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES = 16
STEPS = 100
SEED = 0
CASES = (
    ("smallcnn", "l2"),
    ("smallcnn", "l1"),
    ("smallcnn-robust", "l2"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "tests/data/alma_reference_pytorch.json"
    )
    args = parser.parse_args()

    torch.set_num_threads(2)
    cases = []
    for model, distance in CASES:
        run = run_alma("pytorch", model, distance, STEPS, IMAGES, seed=SEED)
        cases.append(
            {
                "model": model,
                "distance": distance,
                "steps": STEPS,
                "alpha": run.alpha,
                "images": IMAGES,
                "seed": SEED,
                "median": run.median,
                "asr": run.asr,
                "distances": [float(d) for d in run.distances],
                "success": [bool(s) for s in run.success],
                "weights_sha256": zoo.weights_sha256(zoo.load_weights(model)),
            }
        )
        print(f"{model} {distance}: median {run.median:.5f}, ASR {run.asr:.3f}")
    record = {
        "made_by": "scripts/make_reference_alma.py",
        "framework": "pytorch",
        "torch": torch.__version__,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
