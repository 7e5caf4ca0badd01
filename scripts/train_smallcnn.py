"""Train the MNIST SmallCNN shipped in ``foolbox_alma/zoo/data`` (seeded, deterministic, CPU).

The architecture is the SmallCNN of DDN (Rony et al., CVPR 2019), TRADES and adv_lib, the model the
ALMA paper attacks on MNIST. Only the official MNIST *test* files are available offline, so the
model is trained on t10k images 0..8999 and evaluated on the disjoint images 9000..9999, which are
also shipped (``mnist_heldout.npz``) as the evaluation set of the examples and tests.

    python scripts/train_smallcnn.py --epochs 30 --seed 0

Writes ``<out>/smallcnn.npz`` (float32 weights in PyTorch ``state_dict`` naming and layout, plus a
``meta`` JSON string) and ``<out>/mnist_heldout.npz`` (uint8 images/labels of t10k 9000..9999).
"""

import argparse
import gzip
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_RANGE = (0, 9000)
HELDOUT_RANGE = (9000, 10000)
MAX_SHIFT = 2  # pixels, augmentation
CHANNELS_LAST = torch.channels_last


def read_idx(path: Path) -> np.ndarray:
    """Parse an MNIST idx file: magic (0, 0, dtype code, ndim), big-endian dims, then data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {shape} bytes of data, found {data.size}")
    return data.reshape(shape)


def load_mnist_t10k(mnist_dir: Path) -> "tuple[np.ndarray, np.ndarray]":
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    if images.shape != (10000, 28, 28) or labels.shape != (10000,):
        raise ValueError(f"unexpected MNIST t10k shapes {images.shape}, {labels.shape}")
    return images, labels


class SmallCNN(nn.Module):
    """DDN / TRADES / adv_lib SmallCNN; parameter names match their checkpoints and the zoo."""

    def __init__(self, drop: float = 0.5):
        super().__init__()
        self.feature_extractor = nn.Sequential()
        self.feature_extractor.add_module("conv1", nn.Conv2d(1, 32, 3))  # 28 -> 26
        self.feature_extractor.add_module("relu1", nn.ReLU())
        self.feature_extractor.add_module("conv2", nn.Conv2d(32, 32, 3))  # 26 -> 24
        self.feature_extractor.add_module("relu2", nn.ReLU())
        self.feature_extractor.add_module("maxpool1", nn.MaxPool2d(2, 2))  # 24 -> 12
        self.feature_extractor.add_module("conv3", nn.Conv2d(32, 64, 3))  # 12 -> 10
        self.feature_extractor.add_module("relu3", nn.ReLU())
        self.feature_extractor.add_module("conv4", nn.Conv2d(64, 64, 3))  # 10 -> 8
        self.feature_extractor.add_module("relu4", nn.ReLU())
        self.feature_extractor.add_module("maxpool2", nn.MaxPool2d(2, 2))  # 8 -> 4
        self.classifier = nn.Sequential()
        self.classifier.add_module("fc1", nn.Linear(64 * 4 * 4, 200))
        self.classifier.add_module("relu1", nn.ReLU())
        self.classifier.add_module("drop", nn.Dropout(drop))
        self.classifier.add_module("fc2", nn.Linear(200, 200))
        self.classifier.add_module("relu2", nn.ReLU())
        self.classifier.add_module("fc3", nn.Linear(200, 10))
        # adv_lib's initialisation: He-normal convolutions with zero bias, zero-bias last layer.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.classifier.fc3.weight)
        nn.init.zeros_(self.classifier.fc3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.feature_extractor(x).flatten(1))


def random_shift(x: torch.Tensor, generator: torch.Generator, edge: bool = False) -> torch.Tensor:
    """Translate each (square) image by an integer offset in [-MAX_SHIFT, MAX_SHIFT]^2, zero
    filled, or edge filled with ``edge`` (a coloured background continues; zero fill would draw
    a black frame the test images never have)."""
    n, c, size = x.shape[0], x.shape[1], x.shape[-1]
    padded = F.pad(x, (MAX_SHIFT,) * 4, mode="replicate" if edge else "constant")
    dy, dx = torch.randint(0, 2 * MAX_SHIFT + 1, (2, n), generator=generator)
    span = torch.arange(size)
    rows = (dy[:, None] + span)[:, None, :, None].expand(n, c, size, size + 2 * MAX_SHIFT)
    cols = (dx[:, None] + span)[:, None, None, :].expand(n, c, size, size)
    return padded.gather(2, rows).gather(3, cols)


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Seeds Python, NumPy and PyTorch, makes PyTorch deterministic on ``threads`` threads, and
    returns the generator the training draws its order and shifts from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    model.eval()
    correct = sum(
        (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
        for i in range(0, len(x), batch_size)
    )
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist-dir", type=Path, default=REPO_ROOT / ".." / "shared/data/mnist")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "foolbox_alma/zoo/data")
    args = parser.parse_args()

    generator = seed_everything(args.seed, args.threads)

    images, labels = load_mnist_t10k(args.mnist_dir)
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    y = torch.from_numpy(labels.astype(np.int64))
    x_train, y_train = x[slice(*TRAIN_RANGE)], y[slice(*TRAIN_RANGE)]
    x_held, y_held = x[slice(*HELDOUT_RANGE)], y[slice(*HELDOUT_RANGE)]

    # channels_last is ~20% faster for these convolutions on CPU (oneDNN); the weights are saved
    # in the ordinary contiguous layout below.
    model = SmallCNN().to(memory_format=CHANNELS_LAST)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )

    start = time.perf_counter()
    bar = tqdm(range(args.epochs), desc="epochs")
    for _ in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total_loss = 0.0
        for i in range(0, len(x_train), args.batch_size):
            idx = order[i : i + args.batch_size]
            batch = random_shift(x_train[idx], generator).contiguous(memory_format=CHANNELS_LAST)
            loss = F.cross_entropy(model(batch), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
        held = accuracy(model, x_held, y_held)
        bar.set_postfix(loss=f"{total_loss / len(x_train):.4f}", heldout_acc=f"{held:.4f}")
    train_seconds = time.perf_counter() - start

    held_accuracy = accuracy(model, x_held, y_held)
    train_accuracy = accuracy(model, x_train, y_train)
    meta = {
        "architecture": "SmallCNN (DDN / TRADES / adv_lib MNIST)",
        "layout": "PyTorch state_dict names; conv OIHW, linear (out, in); fc1 input is C,H,W-flat",
        "dataset": "MNIST t10k",
        "train_images": list(TRAIN_RANGE),
        "heldout_images": list(HELDOUT_RANGE),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"Adam, one-cycle lr max {args.lr}",
        "augmentation": f"random integer shifts of +-{MAX_SHIFT} px",
        "heldout_accuracy": held_accuracy,
        "train_accuracy": train_accuracy,
        "train_seconds": round(train_seconds, 1),
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    model = model.to(memory_format=torch.contiguous_format)
    state = model.state_dict()
    weights = {k: np.ascontiguousarray(v.numpy(), np.float32) for k, v in state.items()}
    np.savez(args.out / "smallcnn.npz", meta=np.array(json.dumps(meta)), **weights)
    np.savez_compressed(
        args.out / "mnist_heldout.npz",
        images=images[slice(*HELDOUT_RANGE)],
        labels=labels[slice(*HELDOUT_RANGE)],
        indices=np.arange(*HELDOUT_RANGE, dtype=np.int64),
    )
    print(json.dumps(meta, indent=1))
    print(f"wrote {os.path.relpath(args.out / 'smallcnn.npz')} and mnist_heldout.npz")


if __name__ == "__main__":
    main()
