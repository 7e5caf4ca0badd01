"""One attack, one model, three frameworks: ALMA L2 on the SmallCNN in PyTorch, TensorFlow and JAX.

python examples/cross_framework.py [--images 20] [--steps 100] [--model smallcnn-robust]

The model zoo builds the same network from one weight archive in every installed framework
(TensorFlow in its native channels-last layout); ALMA, written once in EagerPy, attacks each on the
same held-out images. The frameworks differ only by float32 rounding, so they find the same
adversarials: the table shows it, and the per-sample disagreement below it how closely.
(``foolbox-alma compare`` is the same with more options.)
"""

import argparse

from foolbox_alma.compare import compare_frameworks, format_table

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--images", type=int, default=20)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--model", default="smallcnn")
args = parser.parse_args()

comparison = compare_frameworks(args.model, "l2", steps=args.steps, images=args.images)
print(f"ALMA L2, {args.steps} steps, {args.images} held-out images, model {args.model}")
print(format_table(comparison))
for run in comparison.runs:
    print(f"{run.framework}: adversarial classes {run.predictions[:10].tolist()}")
