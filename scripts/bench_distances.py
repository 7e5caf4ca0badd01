"""Cost of each distance's value and gradient, relative to a forward and backward of the SmallCNN.

One ALMA step costs one forward and one backward of the model plus one evaluation and gradient of
the distance; this measures the second relative to the first, per backend:

* model: the MNIST SmallCNN of ``foolbox_alma.zoo`` (shipped weights), on a batch of 28 x 28 gray
  images, gradient of the summed logits with respect to the inputs (as the attack takes it);
* distances: L1, L2, CIEDE2000, SSIM, LPIPS on a batch of 3 x 32 x 32 colour images (the same
  batch size), gradient with respect to the perturbed images. LPIPS uses random AlexNet weights
  unless ``--alexnet`` gives torchvision's file (the cost does not depend on the values).

PyTorch runs eagerly; TensorFlow and JAX run compiled (``tf.function``, ``jax.jit``), as ALMA's
steps do on those backends (``--eager`` for eager TF and JAX). Each timing is the median of
``--repeats`` rounds that alternate all the measured functions, which keeps a busy machine's
slow spells from favouring one of them.

    python scripts/bench_distances.py                  # every installed framework
    python scripts/bench_distances.py --frameworks pytorch --batch 64 --threads 1
"""

import argparse
import importlib.util
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Tuple

import eagerpy as ep
import numpy as np

from foolbox_alma import zoo
from foolbox_alma._compile import compile_step
from foolbox_alma.distances import CIEDE2000, LPIPS, SSIM, l1, l2
from foolbox_alma.distances.lpips import ALEXNET_SHAPES

FRAMEWORKS = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
DISTANCE_NAMES = ("l1", "l2", "ciede2000", "ssim", "lpips")


def random_alexnet(seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for index, shape in ALEXNET_SHAPES.items():
        scale = np.sqrt(2 / np.prod(shape[1:]))
        weights[f"features.{index}.weight"] = (rng.standard_normal(shape) * scale).astype("f4")
        weights[f"features.{index}.bias"] = (rng.standard_normal(shape[:1]) * 0.1).astype("f4")
    return weights


def native(framework: str, array: np.ndarray) -> Any:
    if framework == "pytorch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))
    if framework == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


def value_and_grad_fn(
    objective: Callable[[ep.Tensor], ep.Tensor], framework: str, eager: bool
) -> Callable[[ep.Tensor], Tuple[ep.Tensor, ep.Tensor]]:
    """``x -> (sum(objective(x)), gradient)``, compiled on TensorFlow and JAX unless ``eager``."""

    def step(x: ep.Tensor) -> Tuple[ep.Tensor, ep.Tensor]:
        return ep.value_and_grad(lambda t: objective(t).sum(), x)

    if framework == "pytorch" or eager:
        return step
    return compile_step(step, framework)


def measure(functions: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, float]:
    """Median seconds per call of each function, measured in alternating rounds."""
    for fn in functions.values():  # warm-up: compilation, caches
        for _ in range(2):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_framework(framework: str, args: argparse.Namespace) -> Dict[str, float]:
    rng = np.random.default_rng(0)
    fmodel = zoo.foolbox_model(framework)
    digits, _ = zoo.heldout_for(framework, n=args.batch)
    digits = ep.astensor(digits)

    channels_last = framework == "tensorflow"  # each framework's usual image layout
    shape = (args.batch, 32, 32, 3) if channels_last else (args.batch, 3, 32, 32)
    clean = rng.uniform(size=shape).astype(np.float32)
    noisy = np.clip(clean + rng.normal(scale=0.03, size=shape), 0, 1).astype(np.float32)
    reference, perturbed = (
        ep.astensor(native(framework, clean)),
        ep.astensor(native(framework, noisy)),
    )

    alexnet = args.alexnet if args.alexnet else random_alexnet()
    distances = {
        "l1": l1,
        "l2": l2,
        "ciede2000": CIEDE2000(),
        "ssim": SSIM(),
        "lpips": LPIPS(alexnet),
    }

    def synced(fn: Callable[[ep.Tensor], Tuple[ep.Tensor, ep.Tensor]], x: ep.Tensor) -> Callable:
        def call() -> float:
            value, grad = fn(x)
            return float(value.item()) + float(grad.reshape(-1)[0].item())  # waits for results

        return call

    functions = {
        "model": synced(value_and_grad_fn(fmodel, framework, args.eager), digits),
    }
    for name in args.distances:
        distance = distances[name]
        objective = (lambda d: lambda t: d.compute(reference, t))(distance)
        functions[name] = synced(value_and_grad_fn(objective, framework, args.eager), perturbed)
    return measure(functions, args.repeats)


def set_threads(threads: int) -> None:
    if threads <= 0:
        return
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(threads)
    if importlib.util.find_spec("tensorflow"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", choices=sorted(FRAMEWORKS))
    parser.add_argument("--distances", nargs="+", choices=DISTANCE_NAMES, default=DISTANCE_NAMES)
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--eager", action="store_true", help="no tf.function / jax.jit")
    parser.add_argument(
        "--threads", type=int, default=0, help="PyTorch and TensorFlow CPU threads (0: default)"
    )
    parser.add_argument("--alexnet", help="torchvision AlexNet weights for LPIPS (default random)")
    args = parser.parse_args()
    if args.threads > 0:
        os.environ.setdefault(
            "XLA_FLAGS",
            f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={args.threads}",
        )
    set_threads(args.threads)
    frameworks = args.frameworks or [
        name for name, module in FRAMEWORKS.items() if importlib.util.find_spec(module)
    ]

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"batch {args.batch}, median of {args.repeats} rounds, threads "
        f"{args.threads or 'default'}, {'eager' if args.eager else 'TF/JAX compiled'}"
    )
    print("# model: SmallCNN (MNIST, 1 x 28 x 28); distances on 3 x 32 x 32 images")
    header = ["framework", "model fwd+bwd"] + [f"{name} value+grad" for name in args.distances]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for framework in frameworks:
        times = bench_framework(framework, args)
        model = times["model"]
        cells = [framework, f"{1e3 * model:.2f} ms"]
        for name in args.distances:
            cells.append(f"{1e3 * times[name]:.2f} ms ({times[name] / model:.2f}x)")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
