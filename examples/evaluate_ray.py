"""The same evaluation spread over Ray workers: one Ray task per shard, each worker rebuilding the
model from its spec; the per-sample results are identical to an in-process run's.

With no address, a local Ray instance starts on this machine (2 workers of 1 thread here);
give a cluster's address to `ray=` (or set RAY_ADDRESS) to use a cluster instead.

    python examples/evaluate_ray.py [--images 200] [--steps 100] [--workers 2]

From the command line:

    foolbox-alma evaluate --model examples/models/mnist_net.py:build --data mnist-heldout \\
        --limit 200 --steps 100 --ray --workers 2 --threads 1 --out evaluation/mnist_net_ray
"""

import argparse
import os
from pathlib import Path

import numpy as np

import foolbox_alma

HERE = Path(__file__).resolve().parent
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local instance needs no token

parser = argparse.ArgumentParser()
parser.add_argument("--images", type=int, default=200)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--workers", type=int, default=2)
parser.add_argument("--out", default="evaluation/mnist_net_ray")
args = parser.parse_args()

settings = dict(
    data="mnist-heldout",
    limit=args.images,
    distance="l2",
    steps=args.steps,
    epsilons=[1.0, 1.5, 2.0],
    batch_size=50,
    threads=1,
)
model = f"{HERE / 'models' / 'mnist_net.py'}:build"
on_ray = foolbox_alma.evaluate(model, ray=True, workers=args.workers, out=args.out, **settings)
print(foolbox_alma.evaluation.format_table(on_ray))
print(f"Ray start-up {on_ray.summary['execution']['ray_startup_seconds']:.1f} s")

# the same shards in this process: identical per-sample distances
in_process = foolbox_alma.evaluate(model, out=args.out + "_in_process", **settings)
same = np.array_equal(in_process.distance, on_ray.distance)
print(f"in-process and Ray runs identical: {same}")
