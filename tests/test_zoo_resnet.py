"""``resnet18-cifar``: its seeded and shipped weights, and the network in each framework.

Oracles: the digests of the seeded kernels (recorded here) and of the full weights (recorded in
the archive's ``meta`` by ``scripts/make_resnet18_cifar.py``); the published parameter count of
the CIFAR ResNet-18 (11,173,962); PyTorch's logits stored by ``scripts/make_reference_logits.py``
(for environments with one framework) and PyTorch live where it is installed next to TensorFlow or
JAX; the held-out labels (accuracy). A ResNet-18 forward costs ~20 ms per image on these CPUs, so
logits are compared on the first 64 held-out images and the 1000-image accuracy runs are slow.

Tolerance: the builds' logits agree within ``LOGIT_RTOL`` (1e-5) of the largest logit. Measured on
the first 200 held-out images (logits up to 13.2): TensorFlow and JAX both 5.7e-6 from PyTorch's,
4.4e-7 of the scale; the bound leaves room for other CPUs' kernels. The broken builds of
``test_the_tolerance_catches_broken_builds`` move them by 7.6e-3 (Keras's BatchNorm epsilon) to 1.4
(kernels with H and W swapped) of the scale.
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
)

from foolbox_alma import zoo
from foolbox_alma.zoo import resnet

NAME = "resnet18-cifar"
LOGIT_IMAGES = 64
LOGIT_RTOL = 1e-5
"""Largest logit difference allowed between builds, relative to the largest logit."""
MIN_HELDOUT_ACCURACY = 0.9
PARAMETERS = 11_173_962
"""Learnable parameters of kuangliu/pytorch-cifar's and RobustBench's ResNet18 (10 classes)."""
SEEDED_SHA256 = "7e807b0468117a2fcd1c7175965d202f90640159760f9963980ca425b907d413"
"""``weights_sha256(resnet.seeded_kernels(0))``, recorded when the archive was made."""


def logits_of(framework: str, data_format: Optional[str], n: int = LOGIT_IMAGES) -> np.ndarray:
    """Logits of the zoo model on its first ``n`` held-out images, computed once."""
    return zoo_logits(NAME, framework, data_format, n)


def reference() -> Dict[str, Any]:
    """PyTorch's logits on the 1000 held-out images, stored by make_reference_logits.py."""
    return reference_logits(NAME)


# --- the architecture and the weights (no framework) ----------------------------------------------


def test_architecture_is_the_cifar_resnet18() -> None:
    """Oracle: the published parameter count and layer list. Catches a missing shortcut
    projection, an ImageNet stem (7x7 conv) or a wrong width."""
    shapes = resnet.PARAMETER_SHAPES
    learnable = sum(
        int(np.prod(s))
        for k, s in shapes.items()
        if not k.endswith(("running_mean", "running_var"))
    )
    assert learnable == PARAMETERS
    assert shapes["conv1.weight"] == (64, 3, 3, 3)
    assert shapes["linear.weight"] == (10, 512)
    projections = [k for k in shapes if k.endswith("shortcut.0.weight")]
    assert projections == [f"layer{i}.0.shortcut.0.weight" for i in (2, 3, 4)]
    assert [b.stride for b in resnet.blocks()] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert len(resnet.convolutions()) == 20


def test_seeded_kernels_are_he_normal_deterministic_and_built_once() -> None:
    """Oracle: a recorded digest and the He-normal standard deviation. Catches a generator or order
    change (every shipped correction and statistic would then belong to other kernels), a fan-out
    scale, and regeneration per call (the cache)."""
    kernels = resnet.seeded_kernels(0)
    assert zoo.weights_sha256(kernels) == SEEDED_SHA256
    assert resnet.seeded_kernels(0) is kernels  # built once per process
    big = kernels["layer4.1.conv2.weight"]
    assert big.dtype == np.float32 and not big.flags.writeable
    assert big.std() == pytest.approx(np.sqrt(2 / (512 * 9)), rel=0.01)
    other = resnet.seeded_kernels(1)["layer4.1.conv2.weight"]
    assert abs(np.corrcoef(big.ravel()[:10000], other.ravel()[:10000])[0, 1]) < 0.05


def test_weights_are_the_same_in_a_fresh_process_and_load_no_framework() -> None:
    """Oracle: this process's digests. Catches generation that depends on process state (a global
    NumPy seed, hash order) and a framework imported to make the weights."""
    code = (
        "import sys; from foolbox_alma import zoo; from foolbox_alma.zoo import resnet; "
        f"w = zoo.load_weights({NAME!r}); "
        "print(zoo.weights_sha256(resnet.seeded_kernels(0)), zoo.weights_sha256(w), "
        "sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))"
    )
    seeded, full, frameworks = run_python(code).split(" ", 2)
    assert seeded == zoo.weights_sha256(resnet.seeded_kernels(0))
    assert (
        full
        == zoo.weights_sha256(zoo.load_weights(NAME))
        == zoo.weights_info(NAME)["weights_sha256"]
    )
    assert frameworks == "[]"


def test_shipped_archive_is_small_and_holds_only_the_trained_parts() -> None:
    """The archive has the trained stem and layer1 kernels, the low-rank corrections of the other
    kernels, the BatchNorms and the readout, nothing seeded; its meta records how it was made."""
    from foolbox_alma.zoo._common import data_file, read_npz

    path = data_file(f"{NAME}.npz")
    assert Path(str(path)).stat().st_size < 2_000_000
    arrays = read_npz(path)
    meta = json.loads(str(arrays.pop("meta")))
    full = [c for c in resnet.convolutions() if c == "conv1" or c.startswith("layer1.")]
    for conv, shape in resnet.convolutions().items():
        if conv in full:
            assert arrays[f"{conv}.weight"].shape == shape
        else:
            assert f"{conv}.weight" not in arrays
            assert arrays[f"{conv}.base_scale"].shape == ()
            assert arrays[f"{conv}.lowrank_u"].shape == (shape[0], meta["rank"])
            assert arrays[f"{conv}.lowrank_v"].shape == (meta["rank"], int(np.prod(shape[1:])))
    assert sum(a.size for a in arrays.values()) == meta["shipped_parameters"] < 500_000
    assert meta["seed"] == 0
    assert meta["train_images"] == [0, 9000] and meta["heldout_images"] == [9000, 10000]
    assert meta["heldout_accuracy"] >= MIN_HELDOUT_ACCURACY
    assert meta["dataset"].startswith(zoo.HELDOUT_DATA[NAME])
    assert {"date", "epochs", "train_seconds", "weights"} <= set(meta)


def test_load_weights_rebuilds_every_parameter() -> None:
    weights = zoo.load_weights(NAME)
    assert list(weights) == list(resnet.PARAMETER_SHAPES)
    for key, shape in resnet.PARAMETER_SHAPES.items():
        assert weights[key].shape == shape and weights[key].dtype == np.float32
        assert np.isfinite(weights[key]).all()
    assert (weights["layer3.0.bn1.running_var"] > 0).all()
    seeded = resnet.seeded_kernels(0)
    assert weights["layer4.1.conv2.weight"] is not seeded["layer4.1.conv2.weight"]  # corrected


def test_corrected_kernel_is_exact_and_checked() -> None:
    """Oracle: a float64 matrix product. Catches a transposed factor or a reshape in the wrong
    order; the factors are checked against the kernel's shape."""
    rng = np.random.default_rng(5)
    seeded = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    u, v = rng.standard_normal((4, 2)), rng.standard_normal((2, 27))
    kernel = resnet.corrected_kernel(seeded, np.float32(0.5), u, v)
    expected = 0.5 * seeded.astype(np.float64) + (u @ v).reshape(4, 3, 3, 3)
    np.testing.assert_allclose(kernel, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="do not make a"):
        resnet.corrected_kernel(seeded, 1.0, v.T, u.T)


def test_checked_names_missing_unexpected_and_misshapen_arrays() -> None:
    weights = dict(zoo.load_weights(NAME))
    weights["layer1.0.bn1.num_batches_tracked"] = np.array(7)  # PyTorch's counter: ignored
    assert list(resnet.checked(weights)) == list(resnet.PARAMETER_SHAPES)
    broken = dict(weights)
    broken["linear.weight"] = broken["linear.weight"].T
    with pytest.raises(ValueError, match=r"wrong shapes \{'linear.weight': \(512, 10\)\}"):
        resnet.checked(broken)
    del broken["layer2.0.shortcut.1.running_var"]
    broken["fc.weight"] = np.zeros((10, 512), np.float32)
    with pytest.raises(
        ValueError,
        match=r"missing keys \['layer2.0.shortcut.1.running_var'\], unexpected keys \['fc.weight'\]",
    ):
        resnet.checked(broken)


def test_archive_errors_name_the_problem(tmp_path: Path) -> None:
    """A correction without its scale, a kernel shipped twice, and an archive whose rebuilt weights
    do not match the digest it records are errors that say so."""
    from foolbox_alma.zoo._common import data_file, read_npz

    arrays = read_npz(data_file(f"{NAME}.npz"))
    meta = json.loads(str(arrays["meta"]))

    def write(changed: Dict[str, Any]) -> Path:
        path = tmp_path / "archive.npz"
        np.savez(path, **changed)
        return path

    partial = {k: v for k, v in arrays.items() if k != "layer2.0.conv1.base_scale"}
    with pytest.raises(ValueError, match="layer2.0.conv1: incomplete correction"):
        zoo.load_weights(NAME, path=write(partial))
    twice = dict(arrays, **{"layer2.0.conv1.weight": np.zeros((128, 64, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="layer2.0.conv1: a kernel and a correction"):
        zoo.load_weights(NAME, path=write(twice))
    reseeded = dict(arrays, meta=np.array(json.dumps(dict(meta, seed=1))))
    with pytest.raises(ValueError, match="the seeded kernels differ on this machine"):
        zoo.load_weights(NAME, path=write(reseeded))


def test_full_state_dict_loads_from_a_path(tmp_path: Path) -> None:
    """A complete ``state_dict`` (e.g. a RobustBench ResNet18 converted to NumPy) needs no seed."""
    weights = zoo.load_weights(NAME)
    path = tmp_path / "full.npz"
    np.savez(path, **weights)
    assert zoo.weights_sha256(zoo.load_weights(NAME, path=path)) == zoo.weights_sha256(weights)


def test_zoo_names_and_data() -> None:
    assert NAME in zoo.ARCHITECTURES and zoo.HELDOUT_DATA[NAME] == "colour-mnist"
    images, labels = zoo.load_heldout(NAME, n=5, offset=3)
    expected, expected_labels = zoo.load_heldout("colour-mnist", n=5, offset=3)
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels, expected_labels)
    with pytest.raises(ValueError, match="unknown zoo model 'resnet50'; available: smallcnn"):
        zoo.foolbox_model("pytorch", "resnet50")


def test_evaluation_specs_take_the_name() -> None:
    """The engine's model and data specs (used by ``evaluate``, ``bench``, ``compare``) read the
    zoo's names: ``resnet18-cifar`` and ``resnet18-cifar-heldout`` (its colour-MNIST images)."""
    from foolbox_alma.pipeline import ModelSpec, load_data, parse_model_spec

    installed = next(f for f in FRAMEWORKS if available(f))
    spec = parse_model_spec(NAME, framework=installed)
    assert isinstance(spec, ModelSpec) and spec.kind == "zoo"
    data = load_data(f"{NAME}-heldout", limit=3)
    np.testing.assert_array_equal(data.x, zoo.load_heldout("colour-mnist", n=3)[0])


def test_reference_logits_belong_to_shipped_weights() -> None:
    stored = reference()
    assert str(stored["weights_sha256"]) == zoo.weights_sha256(zoo.load_weights(NAME)), (
        f"the shipped {NAME} weights changed: rerun scripts/make_reference_logits.py"
    )
    assert stored["logits"].shape == (1000, 10)
    np.testing.assert_array_equal(stored["labels"], zoo.load_heldout(NAME)[1])
    labels = stored["labels"]
    accuracy = (stored["logits"].argmax(1) == labels).mean()
    assert accuracy == pytest.approx(zoo.weights_info(NAME)["heldout_accuracy"], abs=1e-9)


# --- each framework ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framework, data_format", LAYOUTS)
def test_logits_match_pytorch_reference(framework: str, data_format: Optional[str]) -> None:
    """Oracle: PyTorch's stored logits. Catches TensorFlow's "same" padding at stride 2 (pads
    bottom/right only), kernels transposed (HWIO read as OIHW or H and W swapped), BatchNorm on
    batch statistics, Keras's default BatchNorm epsilon, the channels-first TF input not transposed,
    a lost low-rank correction or BatchNorm statistic; see
    ``test_the_tolerance_catches_broken_builds`` for how far those move the logits."""
    logits = logits_of(framework, data_format)
    assert logits.shape == (LOGIT_IMAGES, 10)
    assert_logits_close(logits, reference()["logits"][:LOGIT_IMAGES], LOGIT_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_heldout_accuracy_is_the_recorded_one(framework: str) -> None:
    """All 1000 held-out images: the accuracy the archive records, above the floor, in every
    framework (~20-60 s each on 2 CPU cores)."""
    logits = logits_of(framework, None, n=1000)
    accuracy = (logits.argmax(1) == zoo.load_heldout(NAME)[1]).mean()
    assert accuracy == pytest.approx(zoo.weights_info(NAME)["heldout_accuracy"], abs=1.5e-3)
    assert accuracy >= MIN_HELDOUT_ACCURACY


@pytest.mark.crossframework
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_logits_and_input_gradients_match_pytorch_live(framework: str) -> None:
    """Oracle: PyTorch live. Attacks follow input gradients, so those of a logit difference agree
    too (relative to their largest entry); a ReLU or padding mismatch shows there first."""
    pytest.importorskip("torch")
    pytest.importorskip(MODULE[framework])
    assert_logits_close(logits_of(framework, None), logits_of("pytorch", None), LOGIT_RTOL)
    images, labels = zoo.load_heldout(NAME, n=4)
    eye = np.eye(10, dtype=np.float32)
    weights = eye[labels] - eye[(labels + 1) % 10]

    def input_gradient(name: str) -> np.ndarray:
        fmodel = zoo.foolbox_model(name, NAME, data_format="channels_first")
        x = ep.from_numpy(ep.astensor(zoo.heldout_for(name, n=1, model=NAME)[0]), images)
        w = ep.from_numpy(x, weights)
        return ep.value_and_grad(lambda inputs: (fmodel(inputs) * w).sum(), x)[1].numpy()

    grad, expected = input_gradient(framework), input_gradient("pytorch")
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_layouts_and_bounds(framework: str) -> None:
    pytest.importorskip(MODULE[framework])
    default = zoo.DEFAULT_DATA_FORMAT[framework]
    for data_format in ["channels_first", "channels_last"][: 1 if framework == "pytorch" else 2]:
        fmodel = zoo.foolbox_model(framework, NAME, data_format)
        assert fmodel.data_format == data_format and tuple(fmodel.bounds) == (0, 1)
        images, _ = zoo.heldout_for(framework, data_format, n=2, model=NAME)
        assert tuple(images.shape) == (
            (2, 3, 32, 32) if data_format == "channels_first" else (2, 32, 32, 3)
        )
        assert tuple(ep.astensor(fmodel(images)).shape) == (2, 10)
    assert zoo.foolbox_model(framework, NAME).data_format == default
    if framework == "pytorch":
        with pytest.raises(ValueError, match="channels_first"):
            zoo.foolbox_model(framework, NAME, data_format="channels_last")


def test_tensorflow_batch_norm_stays_in_inference_mode() -> None:
    """Catches Keras BatchNormalization on batch statistics when called with ``training=True``
    (a Keras training loop, or code that forgets the flag): the zoo's BN layers are frozen."""
    tf = pytest.importorskip("tensorflow")
    model = zoo.resnet18_tensorflow()
    images, _ = zoo.heldout_for("tensorflow", n=4, model=NAME)
    np.testing.assert_array_equal(
        model(images, training=True).numpy(), model(images, training=False).numpy()
    )
    assert isinstance(model(tf.zeros((1, 32, 32, 3))), tf.Tensor)


def test_jax_pure_apply_matches_bound_function() -> None:
    pytest.importorskip("jax")
    forward = zoo.resnet18_jax()
    images, _ = zoo.heldout_for("jax", n=2, model=NAME)
    logits = np.asarray(forward(images))
    np.testing.assert_array_equal(np.asarray(forward.apply(forward.params, images)), logits)
    unjitted = np.asarray(zoo.resnet18_apply(forward.params, images))
    assert_logits_close(unjitted, logits, LOGIT_RTOL)


def test_the_tolerance_catches_broken_builds() -> None:
    """The agreement tolerance is far below what the usual porting mistakes do to the logits,
    shown on PyTorch builds broken on purpose: TensorFlow-style "same" padding on the stride-2
    convolutions (one pixel bottom/right, none top/left; measured 0.73 of the logit scale), kernels
    with H and W swapped (1.4), BatchNorm on batch statistics (training mode, 0.17) and BatchNorm
    with Keras's default epsilon 1e-3 instead of PyTorch's 1e-5 (7.6e-3)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    images = torch.from_numpy(zoo.load_heldout(NAME, n=16)[0])
    weights = zoo.load_weights(NAME)
    with torch.no_grad():
        good = zoo.resnet18_torch(weights)(images).numpy()

        same_padding = zoo.resnet18_torch(weights)
        for name, module in list(same_padding.named_modules()):
            if (
                isinstance(module, nn.Conv2d)
                and module.stride == (2, 2)
                and module.kernel_size == (3, 3)
            ):
                module.padding = (0, 0)
                parent, _, child = name.rpartition(".")
                padded = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), module)
                setattr(same_padding.get_submodule(parent), child, padded)
        swapped = {k: (v.transpose(0, 1, 3, 2) if v.ndim == 4 else v) for k, v in weights.items()}
        broken = {
            "tf same padding": same_padding(images).numpy(),
            "kernels H/W swapped": zoo.resnet18_torch(swapped)(images).numpy(),
            "batch statistics": zoo.resnet18_torch(weights).train()(images).numpy(),
        }
        keras_epsilon = zoo.resnet18_torch(weights)
        for module in keras_epsilon.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = 1e-3
        broken["keras epsilon"] = keras_epsilon(images).numpy()
    scale = np.abs(good).max()
    for what, logits in broken.items():
        assert np.abs(logits - good).max() > 100 * LOGIT_RTOL * scale, what
