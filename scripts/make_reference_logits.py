"""Store the PyTorch SmallCNN's logits on the 1000 held-out MNIST images for torch-free tests.

    python scripts/make_reference_logits.py

Writes ``tests/data/smallcnn_reference_logits.npz``: ``logits`` float32 (1000, 10), ``labels``,
``indices`` (MNIST t10k indices) and ``weights_sha256`` (:func:`foolbox_alma.zoo.weights_sha256` of
the weights used), so ``tests/test_zoo.py`` can check TensorFlow or JAX against PyTorch in an
environment without torch, and notice when the weights changed but this file was not regenerated.
Rerun it whenever ``scripts/train_smallcnn.py`` rewrites the shipped weights.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from foolbox_alma import zoo

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "tests/data/smallcnn_reference_logits.npz"
    )
    args = parser.parse_args()

    torch.set_num_threads(2)
    weights = zoo.load_weights("smallcnn")
    net = zoo.smallcnn_torch(weights)
    images, labels = zoo.load_mnist_heldout()
    with torch.no_grad():
        logits = net(torch.from_numpy(images)).numpy().astype(np.float32)
    heldout = zoo.weights_info("smallcnn")["heldout_images"]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        logits=logits,
        labels=labels,
        indices=np.arange(*heldout, dtype=np.int64),
        weights_sha256=np.array(zoo.weights_sha256(weights)),
    )
    accuracy = float((logits.argmax(1) == labels).mean())
    print(f"wrote {args.out} ({len(logits)} images, PyTorch accuracy {accuracy:.4f})")


if __name__ == "__main__":
    main()
