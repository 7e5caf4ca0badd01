"""Make the shipped part of ``resnet50-imagenet``: BatchNorm statistics calibrated on Foolbox's 20
ImageNet samples, the ``fc`` bias, and the network's own labels of those samples.

Nothing is trained. The network is the zoo's ResNet-50 (:func:`foolbox_alma.zoo.resnet.torch_resnet`
of :data:`foolbox_alma.zoo.resnet50.RESNET50_IMAGENET`, so the script and the shipped builders
share one code path) with the seeded He-normal kernels and ``fc`` weight of
:func:`foolbox_alma.zoo.resnet.seeded_kernels`, BatchNorms at torchvision's initialisation
(weight 1, bias 0) and:

1. **BatchNorm statistics.** One forward in float64, eval mode, of the 20 sample images
   (:func:`foolbox_alma.zoo.resnet50.decode_samples`, in [0, 1]); a hook before each BatchNorm sets
   its running mean and biased variance to its input's, per channel over the 20 images and every
   pixel, before the layer runs, so each layer is calibrated on the output of the calibrated
   layers before it: every BatchNorm outputs zero mean and unit variance on these images.
2. **fc bias.** With no bias, the random readout maps every image to one class (the pooled
   features of all images share a large common part); ``fc.bias = -fc.weight @ mean feature``
   centres the 20 images' logits, leaving their differences. The weight stays the seeded one.
3. **Labels.** The full float32 weights are rebuilt as the package rebuilds them
   (:func:`foolbox_alma.zoo.resnet.expand`), and the package's PyTorch model's predictions on the
   20 images (float32, as :func:`foolbox_alma.zoo.load_heldout` gives them) are their labels. The
   script stops if they are all one class.

    python scripts/make_resnet50_imagenet.py            # ~30 s on 2 CPU threads

Writes ``<out>/resnet50-imagenet.npz``: every BatchNorm array, ``fc.bias``, ``heldout_labels``
(int64, 20) and a ``meta`` JSON string (seed, how it was made, logit statistics, the digests of the
full weights and of the decoded images, versions, date).
"""

import argparse
import json
import time
from datetime import date
from pathlib import Path
from typing import Dict, List

import numpy as np
import PIL
import torch
from torch import nn

from foolbox_alma import zoo
from foolbox_alma.zoo import resnet, resnet50

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCH = resnet50.RESNET50_IMAGENET


def initial_weights(seed: int) -> Dict[str, np.ndarray]:
    """Seeded kernels and fc weight; BatchNorms at torchvision's initialisation (weight 1, bias 0,
    mean 0, var 1); a zero fc bias."""
    weights = dict(resnet.seeded_kernels(seed, ARCH))
    for key, shape in ARCH.parameter_shapes().items():
        if key not in weights:
            unit = key.endswith(("running_var", ".weight"))  # BN weight; kernels are seeded
            weights[key] = np.full(shape, 1.0 if unit else 0.0, np.float32)
    return weights


@torch.no_grad()
def calibrate(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Set every BatchNorm's running statistics from its input, in forward order (module
    docstring); returns the pooled features of the calibrated network."""

    def from_input(module: nn.BatchNorm2d, inputs: tuple) -> None:
        (h,) = inputs
        module.running_mean.copy_(h.mean(dim=(0, 2, 3)))
        module.running_var.copy_(h.var(dim=(0, 2, 3), unbiased=False))

    hooks = [
        m.register_forward_pre_hook(from_input)
        for m in net.modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    net.eval()
    try:
        return net.features(images)
    finally:
        for hook in hooks:
            hook.remove()


def shipped_arrays(net: nn.Module) -> Dict[str, np.ndarray]:
    state = net.state_dict()
    return {k: state[k].numpy().astype(np.float32) for k in resnet50.SHIPPED_KEYS}


def logit_report(logits: np.ndarray) -> Dict[str, object]:
    top2 = np.sort(logits, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    return {
        "distinct_labels": int(len(np.unique(logits.argmax(1)))),
        "logit_std": round(float(logits.std()), 4),
        "logit_abs_max": round(float(np.abs(logits).max()), 4),
        "top2_margin_min": round(float(margins.min()), 5),
        "top2_margin_median": round(float(np.median(margins)), 5),
        "top2_margin_max": round(float(margins.max()), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the kernels and fc weight")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "foolbox_alma/zoo/data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    samples = resnet50.decode_samples()
    net = resnet.torch_resnet(ARCH, initial_weights(args.seed)).double()
    features = calibrate(net, torch.from_numpy(samples.astype(np.float64) / 255))
    with torch.no_grad():
        uncentred = net.fc(features).numpy()
        net.fc.bias.copy_(-net.fc.weight @ features.mean(dim=0))
    shipped = shipped_arrays(net)

    weights = resnet.checked(resnet.expand(dict(shipped), args.seed, ARCH), "rebuilt", ARCH)
    model = resnet.torch_resnet(ARCH, weights)
    images = torch.from_numpy(samples.astype(np.float32) / np.float32(255))
    with torch.no_grad():
        logits = model(images).numpy()
    labels = logits.argmax(1).astype(np.int64)
    report = logit_report(logits)
    if report["distinct_labels"] < 2:
        raise SystemExit(f"the network predicts one class for all 20 images: {report}")
    names: List[str] = [f.name for f in resnet50.sample_files()]
    meta = {
        "architecture": "torchvision resnet50 (bottlenecks [3, 4, 6, 3], stride on the 3x3: "
        "v1.5), 3x224x224 inputs in [0, 1] normalised inside the network by ImageNet's mean "
        f"{list(resnet50.IMAGENET_MEAN)} and std {list(resnet50.IMAGENET_STD)}, 1000 classes",
        "layout": "torchvision state_dict names; kernels OIHW, fc (out, in)",
        "weights": "not trained. Seeded (not shipped): every convolution kernel and fc.weight, "
        "He-normal (std sqrt(2 / fan_in)), numpy default_rng([seed, i]) for the i-th in forward "
        "order (fc last). Shipped: every BatchNorm (weight 1, bias 0; running mean and biased "
        "variance of its input over the 20 images, set layer by layer in one float64 eval-mode "
        "forward) and fc.bias = -fc.weight @ (mean pooled feature of the 20 images), which "
        "centres their logits (without it every image is one class)",
        "dataset": "Foolbox's 20 ImageNet samples (foolbox/data, read at run time), RGB, resized "
        "to 224x224 with Pillow's bicubic filter; labels: this network's own predictions "
        "(float32 PyTorch), not ImageNet's",
        "heldout_images": [0, resnet50.HELDOUT_SIZE],
        "files": names,
        "imagenet_labels": [int(n.split(".")[0].rsplit("_", 1)[1]) for n in names],
        "seed": args.seed,
        "without_fc_bias": {"distinct_labels": int(len(np.unique(uncentred.argmax(1))))},
        **report,
        "shipped_parameters": int(sum(v.size for v in shipped.values())),
        "generated_parameters": int(
            sum(v.size for v in resnet.seeded_kernels(args.seed, ARCH).values())
        ),
        "weights_sha256": zoo.weights_sha256(weights),
        "images_sha256": resnet50.images_sha256(samples),
        "seconds": round(time.perf_counter() - start, 1),
        "threads": args.threads,
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{resnet50.NAME}.npz"
    np.savez_compressed(
        path, meta=np.array(json.dumps(meta)), **{resnet50.LABELS_KEY: labels}, **shipped
    )
    rebuilt = resnet50.load_weights(path=path)  # the package's loader: digest checked
    assert zoo.weights_sha256(rebuilt) == meta["weights_sha256"]
    print(json.dumps({k: v for k, v in meta.items() if k not in ("files",)}, indent=1))
    print("labels", labels.tolist())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
