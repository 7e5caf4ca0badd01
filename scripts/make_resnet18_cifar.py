"""Make the shipped part of ``resnet18-cifar``: seeded kernels, a few trained parts (CPU, seeded).

The network is the zoo's CIFAR ResNet-18 (:func:`foolbox_alma.zoo.resnet.resnet18_torch`, so the
script and the shipped builders share one code path). Its kernels start as the seeded He-normal
ones of :func:`foolbox_alma.zoo.resnet.seeded_kernels`; then, on colour-MNIST t10k images 0..8999
(:func:`foolbox_alma.zoo.colour_mnist`, recoloured every epoch after the first and shifted by up
to 2 pixels, as ``scripts/train_colour_cnn.py`` does), Adam trains

* the stem and ``layer1`` kernels in full (they ship: 150K parameters),
* for every kernel of ``layer2``..``layer4``, a scale of its seeded kernel and a rank-``--rank``
  correction ``u @ v`` (``kernel = scale * seeded + u @ v``; the seeded kernel stays fixed and is
  not shipped),
* every BatchNorm's affine parameters and the ``linear`` readout.

After training, the full weights are rebuilt from the archive exactly as the package rebuilds them
(:func:`foolbox_alma.zoo.resnet.expand`), the BatchNorm running statistics are calibrated on the
training images (seed-0 colours, no augmentation; cumulative averages over the whole set) and the
held-out accuracy (images 9000..9999) is measured with the package's model in eval mode.

    python scripts/make_resnet18_cifar.py                      # 3 epochs, 2 threads

Writes ``<out>/resnet18-cifar.npz``: the shipped arrays (see :mod:`foolbox_alma.zoo.resnet`) and a
``meta`` JSON string (seed, what was trained, epochs, held-out accuracy, digest of the full weights).
"""

import argparse
import json
import math
import time
from datetime import date
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
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
from foolbox_alma.zoo import resnet

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINED_IN_FULL = ("conv1", "layer1.")
"""Kernels trained and shipped in full: the stem and layer1 (prefixes of convolution names)."""


class LowRankCorrection(nn.Module):
    """``kernel = scale * seeded + u @ v``: the parametrisation of a seeded kernel while training."""

    def __init__(self, seeded: np.ndarray, rank: int, generator: torch.Generator):
        super().__init__()
        self.register_buffer("seeded", torch.from_numpy(np.array(seeded)))
        fan_in = int(np.prod(seeded.shape[1:]))
        self.base_scale = nn.Parameter(torch.ones(()))
        self.lowrank_u = nn.Parameter(torch.zeros(seeded.shape[0], rank))  # starts at the seeded
        self.lowrank_v = nn.Parameter(
            torch.randn(rank, fan_in, generator=generator) / math.sqrt(fan_in)
        )

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        correction = (self.lowrank_u @ self.lowrank_v).view_as(self.seeded)
        return self.base_scale * self.seeded + correction


def initial_weights(seed: int) -> Dict[str, np.ndarray]:
    """Seeded kernels, identity BatchNorms (weight 1, bias 0, mean 0, var 1), a zero readout."""
    weights = dict(resnet.seeded_kernels(seed))
    for key, shape in resnet.PARAMETER_SHAPES.items():
        if key not in weights:
            unit = key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1)
            weights[key] = np.full(shape, 1.0 if unit else 0.0, np.float32)
    return weights


def corrected(conv: str) -> bool:
    return not conv.startswith(TRAINED_IN_FULL)


def add_corrections(net: nn.Module, seed: int, rank: int, generator: torch.Generator) -> None:
    seeded = resnet.seeded_kernels(seed)
    for conv in resnet.convolutions():
        if corrected(conv):
            module = net.get_submodule(conv)
            correction = LowRankCorrection(seeded[f"{conv}.weight"], rank, generator)
            parametrize.register_parametrization(module, "weight", correction, unsafe=True)
            module.parametrizations["weight"].original.requires_grad_(False)  # unused


def archive_arrays(net: nn.Module) -> Dict[str, np.ndarray]:
    """What ships: full stem/layer1 kernels, the corrections, BN affine parameters, readout."""
    arrays = {}
    for conv in resnet.convolutions():
        module = net.get_submodule(conv)
        if corrected(conv):
            correction = module.parametrizations["weight"][0]
            for part in resnet.CORRECTION_KEYS:
                arrays[f"{conv}.{part}"] = getattr(correction, part).detach().numpy()
        else:
            arrays[f"{conv}.weight"] = module.weight.detach().numpy()
        bn = net.get_submodule(resnet.batch_norm_of(conv))
        for part in ("weight", "bias"):
            arrays[f"{resnet.batch_norm_of(conv)}.{part}"] = getattr(bn, part).detach().numpy()
    arrays["linear.weight"] = net.linear.weight.detach().numpy()
    arrays["linear.bias"] = net.linear.bias.detach().numpy()
    return {k: np.array(v, np.float32) for k, v in arrays.items()}


@torch.no_grad()
def calibrate_batch_norms(net: nn.Module, images: torch.Tensor, batch_size: int = 500) -> None:
    """Running statistics = averages over ``images`` of the batch statistics (momentum None)."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    for i in range(0, len(images), batch_size):
        net(images[i : i + batch_size])
    net.eval()


def coloured(digits: np.ndarray, start: int, seed: int) -> torch.Tensor:
    indices = np.arange(start, start + len(digits))
    images = zoo.colour_mnist(digits, indices, "gradient", seed=seed)
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def train(
    net: nn.Module,
    digits: np.ndarray,
    labels: torch.Tensor,
    held: "tuple[torch.Tensor, torch.Tensor]",
    args: argparse.Namespace,
    generator: torch.Generator,
) -> List[str]:
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr)
    steps_per_epoch = -(-len(digits) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )
    log, start = [], time.perf_counter()
    for epoch in range(args.epochs):
        x_train = coloured(digits, TRAIN_RANGE[0], seed=epoch)
        order = torch.randperm(len(x_train), generator=generator)
        total_loss = 0.0
        for step, i in enumerate(range(0, len(x_train), args.batch_size)):
            net.train()
            idx = order[i : i + args.batch_size]
            batch = random_shift(x_train[idx], generator, edge=True)
            loss = F.cross_entropy(
                net(batch.contiguous(memory_format=torch.channels_last)), labels[idx]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
            if (step + 1) % args.log_every == 0:
                held_acc = accuracy(net, held[0][:300], held[1][:300])
                line = (
                    f"epoch {epoch + 1} step {step + 1}/{steps_per_epoch}: loss {loss.item():.3f}, "
                    f"held-out[:300] {held_acc:.3f} (running BN), {time.perf_counter() - start:.0f} s"
                )
                print(line, flush=True)
                log.append(line)
        line = f"epoch {epoch + 1}: mean loss {total_loss / len(x_train):.4f}"
        print(line, flush=True)
        log.append(line)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist-dir", type=Path, default=REPO_ROOT / ".." / "shared/data/mnist")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kernels and training")
    parser.add_argument("--rank", type=int, default=resnet.RANK)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument(
        "--train-images", type=int, default=TRAIN_RANGE[1], help="the first N (a quick check)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "foolbox_alma/zoo/data")
    args = parser.parse_args()

    generator = seed_everything(args.seed, args.threads)
    digits, all_labels = load_mnist_t10k(args.mnist_dir)
    train_range = (TRAIN_RANGE[0], min(args.train_images, TRAIN_RANGE[1]))
    train_digits = digits[slice(*train_range)]
    labels = torch.from_numpy(all_labels[slice(*train_range)].astype(np.int64))
    held_images, held_labels = zoo.load_heldout(resnet.NAME)
    held = (torch.from_numpy(held_images), torch.from_numpy(held_labels))

    net = resnet.resnet18_torch(initial_weights(args.seed))
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    add_corrections(net, args.seed, args.rank, generator)
    net = net.to(memory_format=torch.channels_last)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    print(f"{trainable} trainable parameters", flush=True)

    start, cpu_start = time.perf_counter(), time.process_time()
    log = train(net, train_digits, labels, held, args, generator)
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    shipped = archive_arrays(net)
    model = resnet.resnet18_torch(resnet.expand(_with_unit_statistics(shipped), args.seed))
    calibrate_batch_norms(model, coloured(train_digits, TRAIN_RANGE[0], seed=0))
    for conv in resnet.convolutions():
        bn_name = resnet.batch_norm_of(conv)
        bn = model.get_submodule(bn_name)
        shipped[f"{bn_name}.running_mean"] = bn.running_mean.numpy().astype(np.float32)
        shipped[f"{bn_name}.running_var"] = bn.running_var.numpy().astype(np.float32)
    weights = resnet.expand(dict(shipped), args.seed)
    model = resnet.resnet18_torch(weights)
    heldout_accuracy = accuracy(model, *held)
    meta = {
        "architecture": "CIFAR ResNet-18 (kuangliu/pytorch-cifar, RobustBench ResNet18), "
        "3x32x32 inputs in [0, 1], 10 classes",
        "layout": "PyTorch state_dict names; kernels OIHW, linear (out, in)",
        "weights": f"kernels seeded He-normal, numpy default_rng([seed, index of the "
        f"convolution]); trained and shipped: conv1 and layer1 kernels in full, for layer2..layer4 "
        f"kernel = base_scale * seeded + lowrank_u @ lowrank_v (rank {args.rank}), BatchNorm "
        "affine parameters, linear; BatchNorm running statistics calibrated after training on "
        "the training images (seed-0 colours)",
        "dataset": "colour-mnist: MNIST t10k coloured by foolbox_alma.zoo.colour_mnist "
        "(scheme 'gradient', seed 0)",
        "train_images": list(train_range),
        "heldout_images": list(HELDOUT_RANGE),
        "seed": args.seed,
        "rank": args.rank,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"Adam, one-cycle lr max {args.lr}",
        "augmentation": f"recoloured every epoch (generator seed = epoch), random shifts of "
        f"+-{MAX_SHIFT} px (edge filled)",
        "trained_parameters": trainable,
        "shipped_parameters": int(sum(v.size for v in shipped.values())),
        "heldout_accuracy": heldout_accuracy,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "threads": args.threads,
        "log": log,
        "weights_sha256": zoo.weights_sha256(weights),
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{resnet.NAME}.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **shipped)
    print(json.dumps({k: v for k, v in meta.items() if k != "log"}, indent=1))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def _with_unit_statistics(shipped: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``shipped`` plus placeholder running statistics (mean 0, var 1) for the calibration."""
    arrays = dict(shipped)
    for conv, shape in resnet.convolutions().items():
        bn = resnet.batch_norm_of(conv)
        arrays[f"{bn}.running_mean"] = np.zeros(shape[0], np.float32)
        arrays[f"{bn}.running_var"] = np.ones(shape[0], np.float32)
    return arrays


if __name__ == "__main__":
    main()
