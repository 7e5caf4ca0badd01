"""The model zoo: shipped data and weights, and each model (MNIST SmallCNN regular and robust, the
colour CNNs) in each framework.

Oracles: the held-out labels (accuracy), PyTorch's logits stored by
``scripts/make_reference_logits.py`` (for environments with one framework), PyTorch live where
it is installed next to TensorFlow or JAX, and for the colour data the shipped gray MNIST digits
(the colour held-out images are the generator applied to them).
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import eagerpy as ep
import numpy as np
import pytest
from helpers import LAYOUTS, MODULE, reference_logits, zoo_logits

from foolbox_alma import zoo
from foolbox_alma.zoo.colour_mnist import DATASETS, GRADIENT_SPREAD, MIN_CONTRAST

LOGIT_ATOL = 1e-4
MIN_HELDOUT_ACCURACY = {
    "smallcnn": 0.985,
    "smallcnn-robust": 0.98,
    "colour-cnn": 0.97,
    "colour-cnn-b": 0.97,
}
COLOUR_MODELS = ("colour-cnn", "colour-cnn-b")
# The SmallCNN family; tests/test_zoo_resnet.py covers resnet18-cifar (fewer images: it costs more).
SMALLCNNS = tuple(name for name in zoo.ARCHITECTURES if zoo.registry.family(name) == "smallcnn")


def heldout_logits(
    framework: str, data_format: Optional[str], name: str = "smallcnn"
) -> np.ndarray:
    """Logits of the zoo model ``name`` on all its held-out images, computed once."""
    return zoo_logits(name, framework, data_format, batch=1000)


def load_reference(name: str) -> Dict[str, Any]:
    """PyTorch's logits of zoo model ``name``, stored by ``scripts/make_reference_logits.py``."""
    return reference_logits(name)


# --- data and weights (no framework) ---------------------------------------------------------------


def test_import_loads_no_framework() -> None:
    code = (
        "import sys, foolbox_alma.zoo; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_heldout_loader_shapes_dtypes_range() -> None:
    images, labels = zoo.load_mnist_heldout()
    assert images.shape == (1000, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (1000,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))

    some, some_labels = zoo.load_mnist_heldout(n=5, offset=10)
    assert some.shape == (5, 1, 28, 28) and some_labels.shape == (5,)
    np.testing.assert_array_equal(some, images[10:15])
    np.testing.assert_array_equal(some_labels, labels[10:15])
    assert zoo.load_mnist_heldout(offset=990)[0].shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match="held-out"):
        zoo.load_mnist_heldout(n=10, offset=995)


def test_colour_heldout_loader_shapes_and_names() -> None:
    for name in COLOUR_MODELS:
        images, labels = zoo.load_heldout(name)
        assert images.shape == (1000, 3, 32, 32) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        # the labels are MNIST's: the digits are the gray held-out ones
        np.testing.assert_array_equal(labels, zoo.load_mnist_heldout()[1])
        dataset = zoo.HELDOUT_DATA[name]
        np.testing.assert_array_equal(zoo.load_heldout(dataset, n=3, offset=7)[0], images[7:10])
    np.testing.assert_array_equal(zoo.load_heldout("smallcnn")[0], zoo.load_mnist_heldout()[0])
    with pytest.raises(ValueError, match="unknown zoo model or data set 'cifar10'"):
        zoo.load_heldout("cifar10")
    with pytest.raises(ValueError, match="held-out"):
        zoo.load_heldout("colour-cnn", n=10, offset=995)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_colour_heldout_is_the_generator_applied_to_the_shipped_digits(dataset: str) -> None:
    """The shipped colour images are ``colour_mnist`` of the shipped gray MNIST digits."""
    digits = np.round(zoo.load_mnist_heldout()[0][:, 0] * 255).astype(np.uint8)
    expected = zoo.colour_mnist(digits, np.arange(9000, 10000), DATASETS[dataset])
    shipped, _ = zoo.load_heldout(dataset)
    np.testing.assert_array_equal(np.round(shipped * 255).astype(np.uint8), expected)


def test_colour_mnist_depends_on_the_index_only() -> None:
    digits = np.round(zoo.load_mnist_heldout(n=6)[0][:, 0] * 255).astype(np.uint8)
    indices = np.arange(9000, 9006)
    for scheme in ("gradient", "texture"):
        batch = zoo.colour_mnist(digits, indices, scheme)
        np.testing.assert_array_equal(
            zoo.colour_mnist(digits[3:5], indices[3:5], scheme), batch[3:5]
        )
        np.testing.assert_array_equal(zoo.colour_mnist(digits, indices, scheme), batch)
        assert batch.shape == (6, 3, 32, 32) and batch.dtype == np.uint8
        recoloured = zoo.colour_mnist(digits, indices, scheme, seed=1)
        assert (np.abs(recoloured.astype(int) - batch).max(axis=(1, 2, 3)) > 50).all()
    with pytest.raises(ValueError, match="unknown colour scheme 'sepia'"):
        zoo.colour_mnist(digits, indices, "sepia")
    with pytest.raises(ValueError, match="one index per digit"):
        zoo.colour_mnist(digits, indices[:2])


def test_colour_mnist_gradient_scheme_is_digit_over_background() -> None:
    """Fully inked pixels all take one foreground colour, blank ones the background, which shades
    across the image (so it is not one colour) and contrasts with the digit."""
    digits = np.round(zoo.load_mnist_heldout(n=50)[0][:, 0] * 255).astype(np.uint8)
    images = zoo.colour_mnist(digits, np.arange(9000, 9050), "gradient").astype(np.float64) / 255
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    foregrounds = []
    inked_digits = [(image, digit) for image, digit in zip(images, padded) if (digit == 255).any()]
    assert len(inked_digits) >= 40
    for image, digit in inked_digits:
        inked, blank = image[:, digit == 255], image[:, digit == 0]
        assert np.ptp(inked, axis=1).max() <= 1 / 255  # one colour (up to uint8 rounding)
        assert np.ptp(blank, axis=1).max() > 0.0
        foregrounds.append(inked.mean(axis=1))
        corner_distances = np.linalg.norm(blank - inked.mean(axis=1, keepdims=True), axis=0)
        assert corner_distances.min() >= MIN_CONTRAST - np.sqrt(3) * GRADIENT_SPREAD - 1e-2
    # the foreground colours are spread over the RGB cube (uniform: std 0.29 per channel)
    assert (np.std(foregrounds, axis=0) > 0.2).all()


@pytest.mark.parametrize(
    "arch",
    [
        zoo.Architecture(),
        zoo.Architecture(3, 32),
        zoo.Architecture(3, 32, (16, 32), 100, 10),
        zoo.Architecture(2, 36, (8, 4), 7, 5),
    ],
)
def test_architecture_read_back_from_parameter_shapes(arch: "zoo.Architecture") -> None:
    weights = {k: np.zeros(s, np.float32) for k, s in zoo.parameter_shapes(arch).items()}
    assert zoo.architecture(weights) == arch
    assert zoo.parameter_shapes(arch)["classifier.fc1.weight"][1] == (
        arch.widths[1] * (((arch.image_size - 4) // 2 - 4) // 2) ** 2
    )


@pytest.mark.parametrize("name", SMALLCNNS)
def test_weights_archive_layout_and_meta(name: str) -> None:
    weights = zoo.load_weights(name)
    arch = zoo.architecture(weights)
    shapes = zoo.parameter_shapes(arch)
    assert list(weights) == list(shapes)
    for key, shape in shapes.items():
        assert weights[key].shape == shape and weights[key].dtype == np.float32
        assert np.isfinite(weights[key]).all()
    images, _ = zoo.load_heldout(name, n=1)
    assert images.shape[1:] == (arch.in_channels, arch.image_size, arch.image_size)
    meta = zoo.weights_info(name)
    assert meta["train_images"] == [0, 9000] and meta["heldout_images"] == [9000, 10000]
    assert meta["heldout_accuracy"] >= MIN_HELDOUT_ACCURACY[name]
    assert {"seed", "epochs", "train_seconds"} <= set(meta)


def test_robust_weights_meta_records_the_adversarial_training() -> None:
    meta = zoo.weights_info("smallcnn-robust")
    assert meta["eps"] == 2.0 and "DDN" in meta["training"]
    assert 0 <= meta["clean_epochs"] < meta["epochs"]
    # the repository's budget for training it: 45 minutes of 2 CPU cores
    assert meta["threads"] == 2 and meta["train_cpu_seconds"] <= 2 * 45 * 60
    assert zoo.weights_sha256(zoo.load_weights("smallcnn-robust")) != zoo.weights_sha256(
        zoo.load_weights("smallcnn")
    )


def test_colour_weights_meta_records_the_training() -> None:
    for name in COLOUR_MODELS:
        weights, meta = zoo.load_weights(name), zoo.weights_info(name)
        assert zoo.architecture(weights)[:2] == (3, 32)
        assert meta["weights_sha256"] == zoo.weights_sha256(weights)
        assert meta["dataset"].startswith(zoo.HELDOUT_DATA[name])
        assert meta["threads"] == 1 and meta["train_cpu_seconds"] <= 15 * 60
    first, second = (zoo.architecture(zoo.load_weights(name)) for name in COLOUR_MODELS)
    assert first.widths != second.widths  # the second differs in width and in data set


def test_load_weights_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match=r"unknown zoo model 'resnet50'; available: smallcnn"):
        zoo.load_weights("resnet50")
    with pytest.raises(ValueError, match="unknown framework"):
        zoo.foolbox_model("mxnet")


def test_load_weights_from_path(tmp_path: Path) -> None:
    weights = zoo.load_weights()
    path = tmp_path / "copy.npz"
    np.savez(path, meta=np.array(json.dumps({"note": "copy"})), **weights)
    loaded = zoo.load_weights(path=path)
    assert zoo.weights_sha256(loaded) == zoo.weights_sha256(weights)
    assert zoo.weights_info(path=path) == {"note": "copy"}

    broken = dict(weights)
    broken["classifier.fc3.weight"] = broken["classifier.fc3.weight"][:5]
    np.savez(path, **broken)
    with pytest.raises(ValueError, match="wrong shapes"):
        zoo.load_weights(path=path)
    del broken["classifier.fc3.bias"]
    np.savez(path, **broken)
    with pytest.raises(ValueError, match=r"missing keys \['classifier.fc3.bias'\]"):
        zoo.load_weights(path=path)


@pytest.mark.parametrize("name", zoo.ARCHITECTURES)
def test_reference_logits_belong_to_shipped_weights(name: str) -> None:
    reference = load_reference(name)
    assert str(reference["weights_sha256"]) == zoo.weights_sha256(zoo.load_weights(name)), (
        f"the shipped {name} weights changed: rerun scripts/make_reference_logits.py"
    )
    labels = zoo.load_heldout(name)[1]
    classes = 1000 if name == "resnet50-imagenet" else 10
    assert reference["logits"].shape == (len(labels), classes)
    assert reference["logits"].dtype == np.float32
    np.testing.assert_array_equal(reference["labels"], labels)
    heldout = zoo.weights_info(name)["heldout_images"]
    np.testing.assert_array_equal(reference["indices"], np.arange(*heldout))


# --- each framework --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALLCNNS)
@pytest.mark.parametrize("framework, data_format", LAYOUTS)
def test_heldout_accuracy(framework: str, data_format: Optional[str], name: str) -> None:
    logits = heldout_logits(framework, data_format, name)
    _, labels = zoo.load_heldout(name)
    assert (logits.argmax(axis=1) == labels).mean() >= MIN_HELDOUT_ACCURACY[name]


@pytest.mark.parametrize("name", SMALLCNNS)
@pytest.mark.parametrize("framework, data_format", LAYOUTS)
def test_logits_match_pytorch_reference(
    framework: str, data_format: Optional[str], name: str
) -> None:
    logits = heldout_logits(framework, data_format, name)
    assert logits.shape == (1000, 10)
    np.testing.assert_allclose(logits, load_reference(name)["logits"], rtol=0, atol=LOGIT_ATOL)


@pytest.mark.crossframework
@pytest.mark.parametrize("name", SMALLCNNS)
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_logits_match_pytorch_live(framework: str, name: str) -> None:
    pytest.importorskip("torch")
    np.testing.assert_allclose(
        heldout_logits(framework, None, name),
        heldout_logits("pytorch", None, name),
        rtol=0,
        atol=LOGIT_ATOL,
    )


@pytest.mark.crossframework
@pytest.mark.parametrize("name", ["smallcnn", "colour-cnn"])
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_input_gradients_match_pytorch_live(framework: str, name: str) -> None:
    """Attacks follow gradients: those of a logit difference (what DLR-type losses use) agree.

    The images are squeezed into [0.01, 0.99] and jittered: on exact ties (blank or saturated
    regions) max pooling may route the gradient to a different, equally valid, input.
    """
    pytest.importorskip("torch")
    pytest.importorskip(MODULE[framework])
    images, labels = zoo.load_heldout(name, n=8)
    jitter = np.random.default_rng(0).uniform(-0.005, 0.005, images.shape).astype(np.float32)
    images = images * 0.98 + 0.01 + jitter
    eye = np.eye(10, dtype=np.float32)
    weights = eye[labels] - eye[(labels + 1) % 10]  # logit of the label minus the next class's

    def input_gradient(framework: str) -> np.ndarray:
        fmodel = zoo.foolbox_model(framework, name, data_format="channels_first")
        x = ep.from_numpy(ep.astensor(zoo.heldout_for(framework, n=1)[0]), images)
        w = ep.from_numpy(x, weights)
        return ep.value_and_grad(lambda inputs: (fmodel(inputs) * w).sum(), x)[1].numpy()

    grad, expected = input_gradient(framework), input_gradient("pytorch")
    scale = np.abs(expected).max()
    assert scale > 0.1
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_colour_model_layouts(framework: str) -> None:
    pytest.importorskip(MODULE[framework])
    default = zoo.DEFAULT_DATA_FORMAT[framework]
    for data_format in ["channels_first", "channels_last"][: 1 if framework == "pytorch" else 2]:
        images, _ = zoo.heldout_for(framework, data_format, n=2, model="colour-cnn")
        expected = (2, 3, 32, 32) if data_format == "channels_first" else (2, 32, 32, 3)
        assert tuple(images.shape) == expected
        fmodel = zoo.foolbox_model(framework, "colour-cnn", data_format)
        assert fmodel.data_format == data_format
        assert tuple(ep.astensor(fmodel(images)).shape) == (2, 10)
    assert tuple(zoo.heldout_for(framework, n=1, model="colour-cnn")[0].shape)[1:] == (
        (3, 32, 32) if default == "channels_first" else (32, 32, 3)
    )


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow", "jax"])
def test_foolbox_model_data_format(framework: str) -> None:
    pytest.importorskip(MODULE[framework])
    default = zoo.DEFAULT_DATA_FORMAT[framework]
    assert zoo.foolbox_model(framework).data_format == default
    assert tuple(zoo.heldout_for(framework, n=2)[0].shape) == (
        (2, 1, 28, 28) if default == "channels_first" else (2, 28, 28, 1)
    )
    if framework == "pytorch":
        with pytest.raises(ValueError, match="channels_first"):
            zoo.foolbox_model(framework, data_format="channels_last")
        assert not zoo.smallcnn_torch().training
    else:
        other = "channels_first" if default == "channels_last" else "channels_last"
        assert zoo.foolbox_model(framework, data_format=other).data_format == other


@pytest.mark.framework
def test_jax_pure_apply_matches_bound_function() -> None:
    pytest.importorskip("jax")
    forward = zoo.smallcnn_jax()
    images, _ = zoo.heldout_for("jax", n=4)
    logits = np.asarray(forward(images))
    np.testing.assert_array_equal(np.asarray(forward.apply(forward.params, images)), logits)
    # Not jitted: XLA may fuse differently, so equal up to float32 rounding only.
    unjitted = np.asarray(zoo.smallcnn_apply(zoo.jax_params(), images))
    np.testing.assert_allclose(unjitted, logits, rtol=0, atol=1e-5)
