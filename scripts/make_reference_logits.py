"""Store the PyTorch logits of each zoo model on its held-out images for torch-free tests.

    python scripts/make_reference_logits.py                  # every model of zoo.ARCHITECTURES
    python scripts/make_reference_logits.py --models smallcnn-robust
    python scripts/make_reference_logits.py --models colour-cnn colour-cnn-b
    python scripts/make_reference_logits.py --models resnet18-cifar
    python scripts/make_reference_logits.py --models resnet50-imagenet

Writes ``tests/data/<model>_reference_logits.npz`` per model: ``logits`` float32 (1000, 10), or
(20, 1000) for ``resnet50-imagenet``, ``labels``, ``indices`` (of its held-out set,
:func:`foolbox_alma.zoo.load_heldout`: MNIST t10k indices, or Foolbox's sample indices 0..19)
and ``weights_sha256``
(:func:`foolbox_alma.zoo.weights_sha256` of the weights used), so ``tests/test_zoo.py`` can check
TensorFlow or JAX against PyTorch in an environment without torch, and notice when the weights
changed but this file was not regenerated. Rerun it (for that model only) whenever
``scripts/train_smallcnn.py``, ``scripts/train_robust_smallcnn.py``, ``scripts/train_colour_cnn.py``,
``scripts/make_resnet18_cifar.py`` or ``scripts/make_resnet50_imagenet.py`` rewrites the shipped
weights.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from foolbox_alma import zoo

REPO_ROOT = Path(__file__).resolve().parents[1]
TORCH_BUILDERS = {
    "smallcnn": zoo.smallcnn_torch,
    "resnet": zoo.resnet18_torch,
    "resnet50": zoo.resnet50_torch,
}
"""The PyTorch builder of each zoo family (:func:`foolbox_alma.zoo.registry.family`)."""


def reference_path(model: str, folder: Path = REPO_ROOT / "tests/data") -> Path:
    return folder / f"{model}_reference_logits.npz"


def write_reference(model: str, path: Path) -> None:
    weights = zoo.load_weights(model)
    net = TORCH_BUILDERS[zoo.registry.family(model)](weights)
    images, labels = zoo.load_heldout(model)
    with torch.no_grad():
        batch = 200 if len(images) > 20 else 4  # a ResNet-50 at 224x224: a few images at a time
        batches = [
            net(torch.from_numpy(images[i : i + batch])) for i in range(0, len(images), batch)
        ]
        logits = torch.cat(batches).numpy().astype(np.float32)
    heldout = zoo.weights_info(model)["heldout_images"]

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        logits=logits,
        labels=labels,
        indices=np.arange(*heldout, dtype=np.int64),
        weights_sha256=np.array(zoo.weights_sha256(weights)),
    )
    accuracy = float((logits.argmax(1) == labels).mean())
    print(f"wrote {path} ({model}, {len(logits)} images, PyTorch accuracy {accuracy:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", choices=zoo.ARCHITECTURES, default=list(zoo.ARCHITECTURES)
    )
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "tests/data")
    args = parser.parse_args()

    torch.set_num_threads(2)
    for model in args.models:
        write_reference(model, reference_path(model, args.out_dir))


if __name__ == "__main__":
    main()
