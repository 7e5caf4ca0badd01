"""Evaluate your own PyTorch model over a data set: every sample attacked with ALMA L2, minimal
distances per sample, robust accuracy at a few budgets, a plot, resumable.

The model is the file examples/models/mnist_net.py (a function returning a Foolbox model; a
TorchScript .pt file with bounds works too); the data the 1000 held-out MNIST images shipped with
the package (an .npz file with arrays x and y, or a folder of images per class, work the same).

    python examples/evaluate_pytorch_model.py [--images 200] [--steps 100] [--out DIR]

The same from the command line:

    foolbox-alma evaluate --model examples/models/mnist_net.py:build --data mnist-heldout \\
        --limit 200 --steps 100 --epsilons 1,1.5,2

Both write to the folder named after the run (evaluation/mnist_net-build-mnist-heldout-alma-l2-100-
and 8 hex digits of the run's identity), so other settings never land in the same folder.
"""

import argparse
from pathlib import Path

import foolbox_alma

HERE = Path(__file__).resolve().parent

parser = argparse.ArgumentParser()
parser.add_argument("--images", type=int, default=200)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--out", default="auto")  # "auto": named after the run
args = parser.parse_args()

result = foolbox_alma.evaluate(
    f"{HERE / 'models' / 'mnist_net.py'}:build",
    "mnist-heldout",
    limit=args.images,
    distance="l2",
    steps=args.steps,
    epsilons=[1.0, 1.5, 2.0],
    batch_size=100,
    threads=1,
    out=args.out,
)
print(foolbox_alma.evaluation.format_table(result))
print(f"success {result.asr:.0%}, median L2 {result.median:.3f}")
shards = result.summary["shards"]
print(f"{shards['computed']} shards computed, {shards['loaded']} loaded from an earlier run")
print(
    f"per-sample results in {result.out / 'samples.csv'}, plot {result.out / 'robust_accuracy.png'}"
)
