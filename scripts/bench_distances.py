"""Cost of each distance's value and gradient, relative to a forward and backward of a ResNet-18.

One ALMA step costs one forward and one backward of the model plus one evaluation and gradient of
the distance; this measures the second relative to the first, per backend, for the distance's
generic EagerPy code (``before``) and for what runs by default (``after``: on PyTorch the fast
paths of ``foolbox_alma.distances._fast`` for CIEDE2000 and SSIM; elsewhere the same code):

* model: a ResNet-18 built here with seeded random weights (the cost does not depend on them) in
  each framework, on a batch of 3 x 32 x 32 images, gradient of the summed logits with respect
  to the inputs (as the attack takes it). ``--model resnet18`` is the CIFAR layout (3 x 3 stem,
  no max-pooling); ``resnet18-imagenet-stem`` torchvision's layout (7 x 7 stride-2 stem and a
  max-pooling: 16 times cheaper on 32 x 32 images; issue 16's measurement); ``smallcnn`` the
  zoo's MNIST SmallCNN (its own 28 x 28 gray batch);
* distances: on the same 3 x 32 x 32 batch, gradient with respect to the perturbed images,
  measured against one reference batch (the same tensor at every call, as in ALMA).

PyTorch runs eagerly; TensorFlow and JAX run compiled (``tf.function``, ``jax.jit``), as ALMA's
steps do on those backends (``--eager`` for eager TF and JAX); their trace and compile time is
printed separately. Each timing is the median of ``--repeats`` rounds that alternate all the
measured functions (wall-clock; ``--cpu-time`` for this thread's CPU time on PyTorch), which
keeps a busy machine's slow spells from favouring one of them.

ALMA itself over the model's own passes, with each distance and framework, is measured by
``scripts/bench_speed.py`` (with ``FOOLBOX_ALMA_GENERIC_DISTANCES=1`` for the generic code).

``--torch-compile`` also measures ``torch.compile`` of the PyTorch fast paths (compile time of
the first call, then the compiled calls), which the package does not use (``_fast`` says why).

    python scripts/bench_distances.py --threads 2                      # every installed framework
    python scripts/bench_distances.py --frameworks pytorch --model resnet18-imagenet-stem
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

from foolbox_alma._compile import compile_step
from foolbox_alma.distances import CIEDE2000, LPIPS, MSSSIM, SSIM, _fast, l1, l2
from foolbox_alma.distances.lpips import ALEXNET_SHAPES

FRAMEWORKS = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
DISTANCE_NAMES = ("l1", "l2", "ciede2000", "ssim", "msssim", "lpips")
DEFAULT_DISTANCES = ("l2", "ciede2000", "ssim", "lpips")
FAST_ON_PYTORCH = ("ciede2000", "ssim", "msssim", "lpips")  # the distances with a PyTorch fast path
MODELS = ("resnet18", "resnet18-imagenet-stem", "smallcnn")
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # ResNet-18: two BasicBlocks per stage

Timed = Callable[[], Any]


# -- ResNet-18 in each framework (seeded random weights, inference-mode batch norm) ------------


def torch_resnet18(imagenet_stem: bool, seed: int = 0) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
        conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        return nn.Sequential(conv, nn.BatchNorm2d(cout))

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.first, self.second = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1)
            changes = stride != 1 or cin != cout
            self.shortcut = conv_bn(cin, cout, 1, stride) if changes else nn.Identity()

        def forward(self, x: Any) -> Any:
            out = self.second(torch.relu(self.first(x)))
            return torch.relu(out + self.shortcut(x))

    stem: List[nn.Module] = [conv_bn(3, 64, 7 if imagenet_stem else 3, 2 if imagenet_stem else 1)]
    stem.append(nn.ReLU())
    if imagenet_stem:
        stem.append(nn.MaxPool2d(3, 2, 1))
    blocks: List[nn.Module] = []
    channels = 64
    for width, stride in STAGES:
        blocks += [Block(channels, width, stride), Block(width, width, 1)]
        channels = width
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*stem, *blocks, *head).eval()


def keras_resnet18(imagenet_stem: bool, seed: int = 0) -> Any:
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv_bn(x: Any, cout: int, kernel: int, stride: int) -> Any:
        x = layers.Conv2D(cout, kernel, stride, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x, training=False)

    inputs = keras.Input((32, 32, 3))
    x = conv_bn(inputs, 64, 7 if imagenet_stem else 3, 2 if imagenet_stem else 1)
    x = layers.ReLU()(x)
    if imagenet_stem:
        x = layers.MaxPool2D(3, 2, padding="same")(x)
    channels = 64
    for width, stride in STAGES:
        for block_stride in (stride, 1):
            out = layers.ReLU()(conv_bn(x, width, 3, block_stride))
            out = conv_bn(out, width, 3, 1)
            changes = block_stride != 1 or channels != width
            shortcut = conv_bn(x, width, 1, block_stride) if changes else x
            x = layers.ReLU()(out + shortcut)
            channels = width
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10)(x))


def jax_resnet18(imagenet_stem: bool, seed: int = 0) -> Callable[[Any], Any]:
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(seed)

    def conv(cin: int, cout: int, kernel: int, stride: int) -> Callable[[Any], Any]:
        scale = np.sqrt(2 / (cin * kernel * kernel))
        weight = jnp.asarray(rng.standard_normal((kernel, kernel, cin, cout)) * scale, "f4")
        pad = kernel // 2

        def apply(x: Any) -> Any:
            out = lax.conv_general_dilated(
                x, weight, (stride, stride), [(pad, pad)] * 2,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )  # fmt: skip
            return out * 0.9 + 0.01  # batch norm in inference mode: a per-channel affine map

        return apply

    def block(cin: int, cout: int, stride: int) -> Callable[[Any], Any]:
        first, second = conv(cin, cout, 3, stride), conv(cout, cout, 3, 1)
        changes = stride != 1 or cin != cout
        shortcut = conv(cin, cout, 1, stride) if changes else (lambda x: x)
        return lambda x: jnp.maximum(second(jnp.maximum(first(x), 0)) + shortcut(x), 0)

    stem = conv(3, 64, 7 if imagenet_stem else 3, 2 if imagenet_stem else 1)
    blocks, channels = [], 64
    for width, stride in STAGES:
        blocks += [block(channels, width, stride), block(width, width, 1)]
        channels = width
    dense = jnp.asarray(rng.standard_normal((512, 10)) / np.sqrt(512), "f4")

    def forward(x: Any) -> Any:
        x = jnp.maximum(stem(x), 0)
        if imagenet_stem:
            pads = ((0, 0), (1, 1), (1, 1), (0, 0))
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), pads)
        for apply in blocks:
            x = apply(x)
        return x.mean(axis=(1, 2)) @ dense

    return forward


def model_objective(framework: str, name: str) -> Tuple[Callable[[ep.Tensor], ep.Tensor], Any]:
    """The model as an EagerPy function of a batch, and a batch for it (numpy)."""
    if name == "smallcnn":
        from foolbox_alma import zoo

        fmodel = zoo.foolbox_model(framework)
        digits, _ = zoo.heldout_for(framework, n=ARGS.batch)
        return fmodel, digits
    imagenet_stem = name == "resnet18-imagenet-stem"
    channels_first = framework == "pytorch"
    shape = (ARGS.batch, 3, 32, 32) if channels_first else (ARGS.batch, 32, 32, 3)
    batch = np.random.default_rng(1).uniform(size=shape).astype(np.float32)
    if framework == "pytorch":
        module = torch_resnet18(imagenet_stem)
        return (lambda x: ep.astensor(module(x.raw))), batch
    if framework == "tensorflow":
        keras_model = keras_resnet18(imagenet_stem)
        return (lambda x: ep.astensor(keras_model(x.raw, training=False))), batch
    forward = jax_resnet18(imagenet_stem)
    return (lambda x: ep.astensor(forward(x.raw))), batch


# -- timing -------------------------------------------------------------------------------------


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
    objective: Callable[..., ep.Tensor], framework: str
) -> Callable[..., Tuple[ep.Tensor, ep.Tensor]]:
    """``(x, *rest) -> (sum(objective(x, *rest)), gradient w.r.t. x)``, compiled on TensorFlow
    and JAX unless --eager (``rest``, the distances' reference, is an argument of the compiled
    function, as in ALMA's step: not a constant the compiler could fold)."""

    def step(x: ep.Tensor, *rest: ep.Tensor) -> Tuple[ep.Tensor, ep.Tensor]:
        return ep.value_and_grad(lambda t: objective(t, *rest).sum(), x)

    if framework == "pytorch" or ARGS.eager:
        return step
    return compile_step(step, framework)


def synced(fn: Callable[..., Tuple[Any, Any]], *args: Any, generic: bool = False) -> Timed:
    """A call of ``fn(*args)`` that waits for its results; ``generic`` forces the generic code."""

    def call() -> float:
        if generic:
            with _fast.generic_distances():
                value, grad = fn(*args)
        else:
            value, grad = fn(*args)
        return float(value.sum().item()) + float(grad.reshape(-1)[0].item())

    return call


def clock() -> float:
    return time.thread_time() if ARGS.cpu_time else time.perf_counter()


def measure(functions: Dict[str, Timed], repeats: int, warm_up: bool = True) -> Dict[str, float]:
    """Median seconds per call of each function, measured in alternating rounds after a first
    call (reported as ``first:`` + name: tracing, compilation, caches) and, with ``warm_up``, a
    second one."""
    first: Dict[str, float] = {}
    for name, fn in functions.items():
        start = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - start
        if warm_up:
            fn()
    times: Dict[str, List[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    medians.update({f"first:{name}": seconds for name, seconds in first.items()})
    return medians


def random_alexnet(seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {}
    for index, shape in ALEXNET_SHAPES.items():
        scale = np.sqrt(2 / np.prod(shape[1:]))
        weights[f"features.{index}.weight"] = (rng.standard_normal(shape) * scale).astype("f4")
        weights[f"features.{index}.bias"] = (rng.standard_normal(shape[:1]) * 0.1).astype("f4")
    return weights


def make_distances() -> Dict[str, Any]:
    alexnet = ARGS.alexnet if ARGS.alexnet else random_alexnet()
    return {
        "l1": l1,
        "l2": l2,
        "ciede2000": CIEDE2000(),
        "ssim": SSIM(),
        "msssim": MSSSIM(),
        "lpips": LPIPS(alexnet),
    }


def image_pair(framework: str, side: int) -> Tuple[ep.Tensor, ep.Tensor]:
    """A reference batch and a perturbed copy, in the framework's usual layout."""
    rng = np.random.default_rng(0)
    channels_last = framework != "pytorch"
    shape = (ARGS.batch, side, side, 3) if channels_last else (ARGS.batch, 3, side, side)
    clean = rng.uniform(size=shape).astype(np.float32)
    noisy = np.clip(clean + rng.normal(scale=0.03, size=shape), 0, 1).astype(np.float32)
    return ep.astensor(native(framework, clean)), ep.astensor(native(framework, noisy))


def bench_framework(framework: str) -> Dict[str, float]:
    objective, batch = model_objective(framework, ARGS.model)
    functions: Dict[str, Timed] = {
        "model": synced(
            value_and_grad_fn(objective, framework), ep.astensor(native(framework, batch))
        )
    }
    distances = make_distances()
    for name in ARGS.distances:
        # MS-SSIM needs 161 x 161 images: measured on 161 x 161 (say so in the table)
        reference, perturbed = image_pair(framework, 161 if name == "msssim" else 32)
        distance = distances[name].bind((0, 1))
        step = value_and_grad_fn((lambda d: lambda t, r: d(r, t))(distance), framework)
        functions[f"{name}:before"] = synced(step, perturbed, reference, generic=True)
        if framework == "pytorch" and name in FAST_ON_PYTORCH:
            functions[f"{name}:after"] = synced(step, perturbed, reference)
    if framework == "pytorch" and ARGS.torch_compile:
        functions.update(torch_compile_functions())
    return measure(functions, ARGS.repeats)


def torch_compile_functions() -> Dict[str, Timed]:
    """``torch.compile`` of the fast paths' forward-and-gradient function (the package does not
    do this: the compile time is reported as ``first:``)."""
    import torch

    from foolbox_alma.distances import _torch_ciede2000, _torch_ssim

    reference, perturbed = (t.raw for t in image_pair("pytorch", 32))
    functions: Dict[str, Timed] = {}
    for name, module in (("ciede2000", _torch_ciede2000), ("ssim", _torch_ssim)):
        if name not in ARGS.distances:
            continue
        prepared = module.prepare(reference, 1)
        compiled = torch.compile(module._forward, dynamic=False)
        functions[f"{name}:compiled"] = (lambda c, p: lambda: c(p, perturbed, True))(
            compiled, prepared
        )
    return functions


# -- main -------------------------------------------------------------------------------------


def set_threads(threads: int, frameworks: List[str]) -> None:
    if threads <= 0:
        return
    if "pytorch" in frameworks:
        import torch

        torch.set_num_threads(threads)
    if "tensorflow" in frameworks:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def print_table(framework: str, times: Dict[str, float]) -> None:
    model = times["model"]
    print(
        f"\n{framework}: model fwd+bwd {1e3 * model:.2f} ms (first call {times['first:model']:.2f} s)"
    )
    print(
        "| distance | before value+grad | after value+grad | before / model | after / model | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    for name in ARGS.distances:
        before = times[f"{name}:before"]
        after = times.get(f"{name}:after", before)
        label = name + (" (161 x 161)" if name == "msssim" else "")
        print(
            f"| {label} | {1e3 * before:.2f} ms | {1e3 * after:.2f} ms | {before / model:.3f} | "
            f"{after / model:.3f} | {before / after:.2f}x |"
        )
    if framework != "pytorch":
        first = ", ".join(f"{n} {times[f'first:{n}:before']:.1f} s" for n in ARGS.distances)
        print(f"trace + compile (first call): {first}")
    for name in ("ciede2000", "ssim"):
        if f"{name}:compiled" in times:
            compiled = times[f"{name}:compiled"]
            print(
                f"torch.compile {name}: {1e3 * compiled:.2f} ms per call ({compiled / model:.3f} "
                f"x model), first call (compilation) {times[f'first:{name}:compiled']:.1f} s"
            )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", choices=sorted(FRAMEWORKS))
    parser.add_argument("--distances", nargs="+", choices=DISTANCE_NAMES, default=DEFAULT_DISTANCES)
    parser.add_argument("--model", choices=MODELS, default="resnet18")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--eager", action="store_true", help="no tf.function / jax.jit")
    parser.add_argument("--cpu-time", action="store_true", help="this thread's CPU time")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, 0: all)")
    parser.add_argument("--alexnet", help="torchvision AlexNet weights for LPIPS (default random)")
    parser.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    return parser.parse_args()


def main() -> None:
    if ARGS.threads > 0:
        os.environ.setdefault(
            "XLA_FLAGS",
            f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={ARGS.threads}",
        )
    frameworks = ARGS.frameworks or [
        name for name, module in FRAMEWORKS.items() if importlib.util.find_spec(module)
    ]
    set_threads(ARGS.threads, frameworks)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}, "
        f"batch {ARGS.batch}, model {ARGS.model}, median of {ARGS.repeats} rounds, threads "
        f"{ARGS.threads or 'default'}, {'eager' if ARGS.eager else 'TF/JAX compiled'}, "
        f"{'CPU time' if ARGS.cpu_time else 'wall-clock'}; before: generic code, after: default"
    )
    for framework in frameworks:
        print_table(framework, bench_framework(framework))
    if hasattr(os, "getloadavg"):
        print(f"\n# load average at the end: {os.getloadavg()[0]:.1f}")


ARGS = parse_args() if __name__ == "__main__" else argparse.Namespace()

if __name__ == "__main__":
    main()
