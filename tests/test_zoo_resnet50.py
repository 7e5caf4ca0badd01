"""``resnet50-imagenet``: its seeded and shipped weights, its images and labels, and the network in
each framework.

Oracles: torchvision's ``resnet50`` (names, shapes, parameter count 25,557,032, and its logits with
our weights, where torchvision is installed: the ``oracles`` tox env); the digests of the seeded
weights (recorded here) and of the full weights and decoded images (recorded in the archive's
``meta`` by ``scripts/make_resnet50_imagenet.py``); ``foolbox.utils.samples`` (the images); PyTorch's
logits on the 20 images stored by ``scripts/make_reference_logits.py`` (for environments with one
framework) and PyTorch live where it is installed next to TensorFlow or JAX.

A ResNet-50 forward at 224x224 costs about 0.5 s per image on these 2 CPU cores, so the logits are
compared on the first ``LOGIT_IMAGES`` images; the 20-image checks in each framework are slow.

Tolerance: the builds' logits agree within ``LOGIT_RTOL`` (1e-4) of the largest logit compared.
Measured on all 20 images (logits up to 6.85) against PyTorch's: TensorFlow (either layout) 5.0e-5
and JAX (either layout) 6.4e-5 at most (``MEASURED_ABS``), 9.4e-6 of that scale; on the first 4
images, whose largest logit is 1.81, that is 2.8e-5 of their scale. Each of the three is as far
from PyTorch in float64 (up to 1.1e-5 of the scale): float32 rounding through 50 layers, grown by
the ``fc`` bias cancelling the logits' common part. The broken builds of
``test_the_tolerance_catches_broken_builds`` move them by 0.16 (Keras's BatchNorm epsilon) to 1.6
(no input normalisation) of the scale, over 1000 times the bound.
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional

import eagerpy as ep
import numpy as np
import pytest
from helpers import (
    FRAMEWORKS,
    LAYOUTS,
    MODULE,
    assert_logits_close,
    available,
    reference_logits,
    run_python,
    zoo_logits,
    zoo_model,
)

from foolbox_alma import zoo
from foolbox_alma.zoo import resnet, resnet50

NAME = "resnet50-imagenet"
ARCH = resnet50.RESNET50_IMAGENET
LOGIT_IMAGES = 4
LOGIT_RTOL = 1e-4
"""Largest logit difference allowed between builds, relative to the largest logit."""
MEASURED_ABS = 6.5e-5
"""The largest logit difference measured between two builds on the 20 images (docstring)."""
GRADIENT_RTOL = 0.05
"""Input gradients of two builds: largest L2 distance allowed, relative to PyTorch's norm."""
PARAMETERS = 25_557_032
"""Learnable parameters of torchvision's ``resnet50`` (1000 classes)."""
SEEDED_SHA256 = "ed254e49390f655b9158fa39739172cc7274950aef67f3efcb971e893a5fef86"
"""``weights_sha256(resnet.seeded_kernels(0, ARCH))``, recorded when the archive was made."""


def fmodel_of(framework: str, data_format: Optional[str]) -> Any:
    """The zoo model, built once."""
    return zoo_model(NAME, framework, data_format)


def logits_of(framework: str, data_format: Optional[str], n: int = LOGIT_IMAGES) -> np.ndarray:
    """Logits of :func:`fmodel_of` on the first ``n`` images, batches of 4, computed once."""
    return zoo_logits(NAME, framework, data_format, n, batch=4)


def reference() -> Dict[str, Any]:
    """PyTorch's logits on the 20 images, stored by make_reference_logits.py."""
    return reference_logits(NAME)


# --- the architecture and the weights (no framework) ----------------------------------------------


def test_architecture_is_torchvisions_resnet50() -> None:
    """Oracle: torchvision's parameter count and layer list. Catches the stride on the first 1x1
    of a bottleneck (ResNet v1, not torchvision's v1.5), a missing ``downsample``, a CIFAR stem."""
    shapes = resnet50.PARAMETER_SHAPES
    learnable = sum(
        int(np.prod(s))
        for k, s in shapes.items()
        if not k.endswith(("running_mean", "running_var"))
    )
    assert learnable == PARAMETERS
    assert len(shapes) == 267 and len(ARCH.convolutions()) == 53
    assert shapes["conv1.weight"] == (64, 3, 7, 7) and ARCH.stem.stride == 2 and ARCH.max_pool
    assert shapes["fc.weight"] == (1000, 2048)
    assert [
        len([b for b in ARCH.blocks if b.prefix.startswith(f"layer{i}.")]) for i in (1, 2, 3, 4)
    ] == [3, 4, 6, 3]
    projections = [k for k in shapes if k.endswith("downsample.0.weight")]
    assert projections == [f"layer{i}.0.downsample.0.weight" for i in (1, 2, 3, 4)]
    strides = {c.name: c.stride for c in ARCH.convolutions() if c.stride != 1}
    assert strides == {
        "conv1": 2,
        **{f"layer{i}.0.{conv}": 2 for i in (2, 3, 4) for conv in ("conv2", "downsample.0")},
    }
    assert shapes["layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["layer4.2.conv3.weight"] == (2048, 512, 1, 1)


@pytest.mark.oracle
def test_torchvision_resnet50_has_our_names_and_computes_our_logits() -> None:
    """Oracle: torchvision's ``resnet50`` (no download: random init, then our weights). Its
    ``state_dict`` has our names, order and shapes; ours loads it strictly; with our weights and
    ImageNet normalisation applied by hand it computes our PyTorch build's logits. Catches a
    renamed layer, a misplaced stride and a normalisation that differs from torchvision's."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    reference_net = torchvision.models.resnet50(weights=None)
    state = reference_net.state_dict()
    names = [k for k in state if not k.endswith("num_batches_tracked")]
    assert names == list(resnet50.PARAMETER_SHAPES)
    assert {k: tuple(state[k].shape) for k in names} == resnet50.PARAMETER_SHAPES
    ours = zoo.resnet50_torch()
    ours.load_state_dict(state, strict=True)  # torchvision's own checkpoint loads as it is

    weights = zoo.load_weights(NAME)
    reference_net.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False
    )
    images = torch.from_numpy(zoo.load_heldout(NAME, n=2)[0])
    mean = torch.tensor(resnet50.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(resnet50.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference_net.eval()((images - mean) / std).numpy()
        actual = zoo.resnet50_torch(weights)(images).numpy()
    assert_logits_close(actual, expected, LOGIT_RTOL)


def test_seeded_weights_are_he_normal_deterministic_and_built_once() -> None:
    """Oracle: a recorded digest and the He-normal standard deviation. Catches a generator or order
    change (the shipped statistics would then belong to other kernels), a fan-out scale, a head not
    seeded, and regeneration per call (the cache)."""
    kernels = resnet.seeded_kernels(0, ARCH)
    assert zoo.weights_sha256(kernels) == SEEDED_SHA256
    assert resnet.seeded_kernels(0, ARCH) is kernels  # built once per process
    assert list(kernels) == [f"{c.name}.weight" for c in ARCH.convolutions()] + ["fc.weight"]
    big = kernels["layer4.2.conv2.weight"]
    assert big.dtype == np.float32 and not big.flags.writeable
    assert big.std() == pytest.approx(np.sqrt(2 / (512 * 9)), rel=0.01)
    assert kernels["fc.weight"].std() == pytest.approx(np.sqrt(2 / 2048), rel=0.01)
    assert set(kernels) | set(resnet50.SHIPPED_KEYS) == set(resnet50.PARAMETER_SHAPES)


def test_weights_are_the_same_in_a_fresh_process_and_load_no_framework() -> None:
    """Oracle: this process's digests. Catches generation that depends on process state (a global
    NumPy seed, hash order) and a framework imported to make the weights or read the images."""
    code = (
        "import sys; from foolbox_alma import zoo; from foolbox_alma.zoo import resnet, resnet50; "
        f"w = zoo.load_weights({NAME!r}); x, y = zoo.load_heldout({NAME!r}); "
        "print(zoo.weights_sha256(resnet.seeded_kernels(0, resnet50.RESNET50_IMAGENET)), "
        "zoo.weights_sha256(w), resnet50.images_sha256(resnet50.sample_images()), "
        "sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))"
    )
    seeded, full, images, frameworks = run_python(code).split(" ", 3)
    meta = zoo.weights_info(NAME)
    assert seeded == SEEDED_SHA256
    assert full == zoo.weights_sha256(zoo.load_weights(NAME)) == meta["weights_sha256"]
    assert images == meta["images_sha256"]
    assert frameworks == "[]"


def test_shipped_archive_holds_only_statistics_labels_and_meta() -> None:
    """The archive is small and holds every BatchNorm array, ``fc.bias``, the 20 labels and a meta
    record; nothing seeded ships."""
    from foolbox_alma.zoo._common import data_file, read_npz

    path = data_file(f"{NAME}.npz")
    assert Path(str(path)).stat().st_size < 400_000
    arrays = read_npz(path)
    meta = json.loads(str(arrays.pop("meta")))
    labels = arrays.pop(resnet50.LABELS_KEY)
    assert labels.shape == (20,) and labels.dtype == np.int64
    assert sorted(arrays) == sorted(resnet50.SHIPPED_KEYS)
    for key, array in arrays.items():
        assert array.shape == resnet50.PARAMETER_SHAPES[key] and array.dtype == np.float32
    bns = {k.rpartition(".")[0] for k in arrays if k.endswith("running_var")}
    assert len(bns) == 53
    for bn in bns:  # torchvision's initialisation; statistics calibrated
        np.testing.assert_array_equal(arrays[f"{bn}.weight"], 1.0)
        np.testing.assert_array_equal(arrays[f"{bn}.bias"], 0.0)
        assert (arrays[f"{bn}.running_var"] > 0).all()
    assert sum(a.size for a in arrays.values()) == meta["shipped_parameters"] < 110_000
    assert meta["generated_parameters"] == sum(
        v.size for v in resnet.seeded_kernels(0, ARCH).values()
    )
    assert meta["seed"] == 0 and meta["heldout_images"] == [0, 20]
    assert meta["without_fc_bias"]["distinct_labels"] == 1  # why the fc bias is calibrated
    assert meta["distinct_labels"] == len(np.unique(labels)) >= 10
    assert {"date", "weights", "dataset", "architecture", "images_sha256", "torch"} <= set(meta)


def test_load_weights_rebuilds_every_parameter() -> None:
    weights = zoo.load_weights(NAME)
    assert list(weights) == list(resnet50.PARAMETER_SHAPES)
    for key, shape in resnet50.PARAMETER_SHAPES.items():
        assert weights[key].shape == shape and weights[key].dtype == np.float32
        assert np.isfinite(weights[key]).all()
    seeded = resnet.seeded_kernels(0, ARCH)
    assert weights["layer4.2.conv3.weight"] is seeded["layer4.2.conv3.weight"]  # no copy
    assert zoo.load_weights(NAME)["fc.bias"] is weights["fc.bias"]  # shipped: read once


def test_archive_errors_and_full_state_dicts(tmp_path: Path) -> None:
    """An archive whose rebuilt weights do not match its recorded digest is an error that says so;
    a complete ``state_dict`` (e.g. torchvision's converted to NumPy) loads from a path."""
    from foolbox_alma.zoo._common import data_file, read_npz

    arrays = read_npz(data_file(f"{NAME}.npz"))
    meta = json.loads(str(arrays["meta"]))
    reseeded = dict(arrays, meta=np.array(json.dumps(dict(meta, seed=1))))
    np.savez(tmp_path / "reseeded.npz", **reseeded)
    with pytest.raises(ValueError, match="seeded kernels differ.*make_resnet50_imagenet"):
        zoo.load_weights(NAME, path=tmp_path / "reseeded.npz")
    weights = zoo.load_weights(NAME)
    np.savez(tmp_path / "full.npz", **weights)
    assert zoo.weights_sha256(zoo.load_weights(NAME, path=tmp_path / "full.npz")) == (
        zoo.weights_sha256(weights)
    )
    broken = {k: v for k, v in weights.items() if k != "fc.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['fc.bias'\]"):
        zoo.resnet50_torch(broken)


# --- images and labels ------------------------------------------------------------------------------


def test_images_are_foolboxs_imagenet_samples() -> None:
    """Oracle: ``foolbox.utils.samples`` (its files and its resize), and the digest the archive
    records of the pixels its labels were made on (another Pillow or libjpeg may decode the JPEGs
    differently: the loader then warns)."""
    import foolbox as fb

    installed = next(f for f in FRAMEWORKS if available(f))
    images, labels = zoo.load_heldout(NAME)
    assert images.shape == (20, 3, 224, 224) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1 and labels.dtype == np.int64
    smallcnn = zoo.foolbox_model(installed, "smallcnn", data_format="channels_first")
    expected, imagenet_labels = fb.utils.samples(
        smallcnn, dataset="imagenet", batchsize=20, shape=(224, 224), data_format="channels_first"
    )
    np.testing.assert_array_equal(images, ep.astensor(expected).numpy())
    assert (
        ep.astensor(imagenet_labels).numpy().tolist() == zoo.weights_info(NAME)["imagenet_labels"]
    )
    assert (
        resnet50.images_sha256(resnet50.sample_images()) == zoo.weights_info(NAME)["images_sha256"]
    )
    some, some_labels = zoo.load_heldout(NAME, n=3, offset=17)
    np.testing.assert_array_equal(some, images[17:])
    np.testing.assert_array_equal(some_labels, labels[17:])
    with pytest.raises(ValueError, match="outside the 20 images"):
        zoo.load_heldout(NAME, n=4, offset=17)


def test_labels_are_the_stored_pytorch_predictions() -> None:
    """Oracle: PyTorch's stored logits of the shipped weights. Catches labels that are not the
    model's predictions (ImageNet's, or another network's) and a network that collapsed to one
    class; the smallest top-2 margin is far above the builds' disagreement."""
    stored = reference()
    assert str(stored["weights_sha256"]) == zoo.weights_sha256(zoo.load_weights(NAME)), (
        f"the shipped {NAME} weights changed: rerun scripts/make_reference_logits.py"
    )
    logits = stored["logits"]
    assert logits.shape == (20, 1000)
    labels = zoo.load_heldout(NAME)[1]
    np.testing.assert_array_equal(logits.argmax(1), labels)
    np.testing.assert_array_equal(stored["labels"], labels)
    top2 = np.sort(logits, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    assert margins.min() > 10 * MEASURED_ABS  # measured 0.0029: 45x the builds' disagreement
    meta = zoo.weights_info(NAME)
    assert margins.min() == pytest.approx(meta["top2_margin_min"], abs=1e-4)
    assert np.abs(logits).max() == pytest.approx(meta["logit_abs_max"], abs=1e-3)


def test_zoo_names_and_evaluation_specs() -> None:
    """The name works everywhere a zoo name does: the registry, and the engine's model and data
    specs (``--model resnet50-imagenet --data resnet50-imagenet-heldout``)."""
    from foolbox_alma.pipeline import ModelSpec, load_data, parse_model_spec

    assert NAME in zoo.ARCHITECTURES and zoo.HELDOUT_DATA[NAME] == NAME
    assert zoo.registry.family(NAME) == "resnet50"
    installed = next(f for f in FRAMEWORKS if available(f))
    spec = parse_model_spec(NAME, framework=installed)
    assert isinstance(spec, ModelSpec) and spec.kind == "zoo"
    data = load_data(f"{NAME}-heldout", limit=3)
    expected, labels = zoo.load_heldout(NAME, n=3)
    np.testing.assert_array_equal(data.x, expected)
    np.testing.assert_array_equal(data.y, labels)


# --- each framework ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framework, data_format", LAYOUTS)
def test_logits_match_pytorch_reference(framework: str, data_format: Optional[str]) -> None:
    """Oracle: PyTorch's stored logits (first 4 images). Catches TensorFlow's "same" padding of the
    7x7 stem and stride-2 convolutions or of the max-pooling, kernels transposed (HWIO read as
    OIHW, H and W swapped), BatchNorm on batch statistics or with Keras's epsilon, a missing input
    normalisation, the channels-first TF input not transposed; ``test_the_tolerance_catches_broken
    _builds`` shows how far those move the logits. Also the layout, bounds and output shape."""
    fmodel = fmodel_of(framework, data_format)
    layout = data_format or zoo.DEFAULT_DATA_FORMAT[framework]
    assert fmodel.data_format == layout and tuple(fmodel.bounds) == (0, 1)
    images, _ = zoo.heldout_for(framework, data_format, n=1, model=NAME)
    assert tuple(images.shape) == (
        (1, 3, 224, 224) if layout == "channels_first" else (1, 224, 224, 3)
    )
    logits = logits_of(framework, data_format)
    assert logits.shape == (LOGIT_IMAGES, 1000)
    assert_logits_close(logits, reference()["logits"][:LOGIT_IMAGES], LOGIT_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_every_image_is_classified_as_its_label(framework: str) -> None:
    """All 20 images, live, in every framework (10-20 s each here): the stored labels are the
    model's predictions wherever it runs, and the logits stay within the tolerance."""
    logits = logits_of(framework, None, n=20)
    np.testing.assert_array_equal(logits.argmax(1), zoo.load_heldout(NAME)[1])
    assert_logits_close(logits, reference()["logits"], LOGIT_RTOL)


@pytest.mark.crossframework
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_logits_and_input_gradients_match_pytorch_live(framework: str) -> None:
    """Oracle: PyTorch live. Attacks follow input gradients, so those of a logit difference agree
    too, up to ``GRADIENT_RTOL`` in L2 norm: float32 itself moves this network's input gradients
    by 1.5% (PyTorch float32 against float64; TensorFlow 2.0%, JAX 1.7%; between frameworks
    1.3-1.6%), as rounding decides near-ties of the max-pooling and ReLUs near zero; the
    directions agree to a cosine above 0.9998."""
    pytest.importorskip("torch")
    pytest.importorskip(MODULE[framework])
    assert_logits_close(logits_of(framework, None), logits_of("pytorch", None), LOGIT_RTOL)
    images, labels = zoo.load_heldout(NAME, n=2)
    eye = np.eye(1000, dtype=np.float32)
    weights = eye[labels] - eye[(labels + 1) % 1000]

    def input_gradient(name: str) -> np.ndarray:
        fmodel = fmodel_of(name, "channels_first")
        x = ep.from_numpy(ep.astensor(zoo.heldout_for(name, n=1, model=NAME)[0]), images)
        w = ep.from_numpy(x, weights)
        return ep.value_and_grad(lambda inputs: (fmodel(inputs) * w).sum(), x)[1].numpy()

    grad, expected = input_gradient(framework), input_gradient("pytorch")
    assert np.linalg.norm(grad - expected) <= GRADIENT_RTOL * np.linalg.norm(expected)
    cosine = (grad * expected).sum() / np.linalg.norm(grad) / np.linalg.norm(expected)
    assert cosine > 0.999


def test_tensorflow_batch_norm_stays_in_inference_mode() -> None:
    """Catches Keras BatchNormalization on batch statistics when called with ``training=True``
    (a Keras training loop, or code that forgets the flag): the zoo's BN layers are frozen."""
    pytest.importorskip("tensorflow")
    model = zoo.resnet50_tensorflow()
    images, _ = zoo.heldout_for("tensorflow", n=2, model=NAME)
    np.testing.assert_array_equal(
        model(images, training=True).numpy(), model(images, training=False).numpy()
    )


def test_jax_pure_apply_matches_bound_function() -> None:
    jax = pytest.importorskip("jax")
    forward = zoo.resnet50_jax()
    images, _ = zoo.heldout_for("jax", n=1, model=NAME)
    logits = np.asarray(forward(images))
    np.testing.assert_array_equal(np.asarray(forward.apply(forward.params, images)), logits)
    with jax.disable_jit():
        unjitted = np.asarray(zoo.resnet50_apply(forward.params, images))
    assert_logits_close(unjitted, logits, LOGIT_RTOL)


def test_the_tolerance_catches_broken_builds() -> None:
    """The agreement tolerance is far below what the usual porting mistakes do to the logits,
    shown on PyTorch builds broken on purpose (largest change measured on 2 images, relative to the
    logit scale): TensorFlow's "same" padding on the stride-2 convolutions (the 7x7 stem padded 2
    top/left and 3 bottom/right, the 3x3s 0 and 1; 1.02) or on the max-pooling (0.94), kernels with
    H and W swapped (0.93), BatchNorm on batch statistics (training mode, 1.19), no input
    normalisation (1.61) and BatchNorm with Keras's default epsilon 1e-3 (0.16)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    images = torch.from_numpy(zoo.load_heldout(NAME, n=2)[0])
    weights = zoo.load_weights(NAME)

    def tf_same_padding(net: Any, convolutions: bool, pooling: bool) -> Any:
        for name, module in list(net.named_modules()):
            parent, _, child = name.rpartition(".")
            owner = net.get_submodule(parent) if parent else net
            if convolutions and isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                total = module.kernel_size[0] - 2  # "same" at stride 2 on an even side
                if total > 0:
                    module.padding = (0, 0)
                    before, after = total // 2, total - total // 2
                    pad = nn.ZeroPad2d((before, after, before, after))
                    setattr(owner, child, nn.Sequential(pad, module))
            if pooling and isinstance(module, nn.MaxPool2d):
                module.padding = 0
                pad = nn.ConstantPad2d((0, 1, 0, 1), float("-inf"))
                setattr(owner, child, nn.Sequential(pad, module))
        return net

    with torch.no_grad():
        good = zoo.resnet50_torch(weights)(images).numpy()
        swapped = {k: (v.transpose(0, 1, 3, 2) if v.ndim == 4 else v) for k, v in weights.items()}
        unnormalised = zoo.resnet50_torch(weights)
        unnormalised.input_scale.fill_(1.0)
        unnormalised.input_offset.fill_(0.0)
        keras_epsilon = zoo.resnet50_torch(weights)
        for module in keras_epsilon.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = 1e-3
        broken = {
            "tf same padding, convolutions": tf_same_padding(
                zoo.resnet50_torch(weights), convolutions=True, pooling=False
            ),
            "tf same padding, max-pooling": tf_same_padding(
                zoo.resnet50_torch(weights), convolutions=False, pooling=True
            ),
            "kernels H/W swapped": zoo.resnet50_torch(swapped),
            "batch statistics": zoo.resnet50_torch(weights).train(),
            "no input normalisation": unnormalised,
            "keras epsilon": keras_epsilon,
        }
        scale = np.abs(good).max()
        for what, net in broken.items():
            assert np.abs(net(images).numpy() - good).max() > 1000 * LOGIT_RTOL * scale, what
