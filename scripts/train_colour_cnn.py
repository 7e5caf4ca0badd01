"""Train a colour CNN of the zoo on colour MNIST (seeded, deterministic, CPU, one thread).

The digits are MNIST t10k images 0..8999, coloured by :func:`foolbox_alma.zoo.colour_mnist` (3x32x32
RGB); the model is evaluated on the disjoint images 9000..9999, coloured the same way (seed 0) and
shipped as ``<data set>_heldout.npz``. The network is the zoo's SmallCNN built by
:func:`foolbox_alma.zoo.smallcnn_torch` from freshly initialised weights of the requested
:class:`foolbox_alma.zoo.Architecture`, so training and the shipped builders share one code path.
Each epoch after the first recolours the training digits with new colours (the generator's seed is
the epoch) and shifts them by up to 2 pixels: the model has to learn digits, not colours.

    python scripts/train_colour_cnn.py --name colour-cnn                       # colour-mnist
    python scripts/train_colour_cnn.py --name colour-cnn-b --dataset colour-mnist-texture \\
        --widths 16 32 --hidden 100 --seed 1

Writes ``<out>/<name>.npz`` (float32 weights in PyTorch ``state_dict`` naming and layout, plus a
``meta`` JSON string with the data set, seed, epochs, held-out accuracy and the weights' sha256) and
``<out>/<data set>_heldout.npz`` (uint8 ``(1000, 3, 32, 32)`` images and labels of t10k 9000..9999).
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from train_smallcnn import (
    HELDOUT_RANGE,
    MAX_SHIFT,
    TRAIN_RANGE,
    accuracy,
    load_mnist_t10k,
    random_shift,
    seed_everything,
)

from foolbox_alma import zoo
from foolbox_alma.zoo.colour_mnist import DATASETS, IMAGE_SIZE

REPO_ROOT = Path(__file__).resolve().parents[1]


def initial_weights(arch: zoo.Architecture, generator: torch.Generator) -> "dict[str, np.ndarray]":
    """adv_lib's SmallCNN initialisation: He-normal convolutions with zero bias, PyTorch's default
    (uniform +-1/sqrt(fan_in)) for the hidden linear layers, a zero last layer."""
    weights = {}
    for key, shape in zoo.parameter_shapes(arch).items():
        if key.startswith("classifier.fc3") or (key.endswith("bias") and "conv" in key):
            value = torch.zeros(shape)
        elif "conv" in key:
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)
        else:
            fan_in = zoo.parameter_shapes(arch)[key.replace("bias", "weight")][1]
            bound = 1.0 / math.sqrt(fan_in)
            value = (torch.rand(shape, generator=generator) * 2 - 1) * bound
        weights[key] = value.numpy()
    return weights


def coloured(digits: np.ndarray, start: int, scheme: str, seed: int) -> torch.Tensor:
    indices = np.arange(start, start + len(digits))
    images = zoo.colour_mnist(digits, indices, scheme, seed=seed)
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="colour-cnn", help="zoo name (<out>/<name>.npz)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="colour-mnist")
    parser.add_argument("--widths", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--mnist-dir", type=Path, default=REPO_ROOT / ".." / "shared/data/mnist")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "foolbox_alma/zoo/data")
    args = parser.parse_args()

    generator = seed_everything(args.seed, args.threads)
    scheme = DATASETS[args.dataset]

    digits, labels = load_mnist_t10k(args.mnist_dir)
    train_digits = digits[slice(*TRAIN_RANGE)]
    y_train = torch.from_numpy(labels[slice(*TRAIN_RANGE)].astype(np.int64))
    heldout = zoo.colour_mnist(
        digits[slice(*HELDOUT_RANGE)], np.arange(*HELDOUT_RANGE), scheme, seed=0
    )
    x_held = torch.from_numpy(heldout.astype(np.float32) / 255.0)
    y_held = torch.from_numpy(labels[slice(*HELDOUT_RANGE)].astype(np.int64))

    arch = zoo.Architecture(3, IMAGE_SIZE, tuple(args.widths), args.hidden, 10)
    model = zoo.smallcnn_torch(initial_weights(arch, generator)).to(
        memory_format=torch.channels_last
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(train_digits) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )

    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(args.epochs):
        # epoch 0 sees the data set itself (seed 0); later epochs fresh colours of the same digits
        x_train = coloured(train_digits, TRAIN_RANGE[0], scheme, seed=epoch)
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total_loss = 0.0
        for i in range(0, len(x_train), args.batch_size):
            idx = order[i : i + args.batch_size]
            batch = random_shift(x_train[idx], generator, edge=True).contiguous(
                memory_format=torch.channels_last
            )
            loss = F.cross_entropy(model(batch), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
        held = accuracy(model, x_held, y_held)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total_loss / len(x_train):.4f}, "
            f"held-out accuracy {held:.4f}, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start

    model = model.to(memory_format=torch.contiguous_format)
    weights = {
        k: np.ascontiguousarray(v.numpy(), np.float32) for k, v in model.state_dict().items()
    }
    meta = {
        "architecture": f"SmallCNN family, 3x{IMAGE_SIZE}x{IMAGE_SIZE} inputs: {arch._asdict()}",
        "layout": "PyTorch state_dict names; conv OIHW, linear (out, in); fc1 input is C,H,W-flat",
        "dataset": f"{args.dataset}: MNIST t10k coloured by foolbox_alma.zoo.colour_mnist "
        f"(scheme {scheme!r}, seed 0)",
        "train_images": list(TRAIN_RANGE),
        "heldout_images": list(HELDOUT_RANGE),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"Adam, one-cycle lr max {args.lr}",
        "augmentation": f"recoloured every epoch (generator seed = epoch), random shifts of "
        f"+-{MAX_SHIFT} px (edge filled)",
        "heldout_accuracy": accuracy(model, x_held, y_held),
        "train_accuracy": accuracy(model, coloured(train_digits, 0, scheme, 0), y_train),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "threads": args.threads,
        "weights_sha256": zoo.weights_sha256(weights),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"{args.name}.npz", meta=np.array(json.dumps(meta)), **weights)
    np.savez_compressed(
        args.out / f"{args.dataset}_heldout.npz",
        images=heldout,
        labels=labels[slice(*HELDOUT_RANGE)],
        indices=np.arange(*HELDOUT_RANGE, dtype=np.int64),
    )
    print(json.dumps(meta, indent=1))
    print(f"wrote {os.path.relpath(args.out / args.name)}.npz and {args.dataset}_heldout.npz")


if __name__ == "__main__":
    main()
