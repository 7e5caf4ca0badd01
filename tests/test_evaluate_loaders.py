"""The evaluation's input layers: model specs (foolbox_alma.pipeline.models) and data specs
(foolbox_alma.pipeline.data). Every form loads, every bad input gets an error naming it.

Oracles: the framework's own outputs for the same network (the fixture's seeded networks, a
TorchScript file against the module it was saved from, a Keras file against the Keras model, the
zoo against its PyTorch builder), ``hashlib`` over the file and array bytes, the arrays an
``.npz`` file or an image folder was written from (PNG is lossless), Pillow's own resize and
JPEG decoding, and the zoo's shipped ``.npz`` read with NumPy."""

import hashlib
import importlib.util
import json
import os
import pickle
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from foolbox_alma import zoo
from foolbox_alma.pipeline.data import Dataset, load_data
from foolbox_alma.pipeline.models import ModelSpec, load_model, parse_model_spec

FIXTURES = Path(__file__).resolve().parent / "evaluate_fixtures"
MODELS_FILE = FIXTURES / "loader_models.py"
ZOO_DATA = Path(zoo.__file__).resolve().parent / "data"


def fixture_module() -> Any:
    """The fixture file imported by the test itself, for its networks' reference outputs."""
    spec = importlib.util.spec_from_file_location("_test_loader_models", MODELS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def images(n: int = 5, shape: tuple = (1, 6, 6), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)


# a framework this environment has: parsing a zoo name checks that its framework is installed
INSTALLED = next(
    (
        f
        for f, m in (("pytorch", "torch"), ("tensorflow", "tensorflow"), ("jax", "jax"))
        if importlib.util.find_spec(m) is not None
    ),
    "pytorch",
)


def numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


# --- models: each form loads ---------------------------------------------------------------------


def test_zoo_name_builds_the_zoo_network():
    torch = pytest.importorskip("torch")
    x, _ = zoo.load_mnist_heldout(6)
    spec = parse_model_spec("smallcnn")
    assert isinstance(spec, ModelSpec)
    assert (spec.kind, spec.framework, spec.device) == ("zoo", "pytorch", None)  # not asked
    logits = spec.load()(torch.from_numpy(x))
    with torch.no_grad():
        expected = zoo.smallcnn_torch(zoo.load_weights("smallcnn"))(torch.from_numpy(x))
    np.testing.assert_array_equal(numpy(logits), numpy(expected))
    robust = load_model("smallcnn-robust")(torch.from_numpy(x))
    assert not np.allclose(numpy(robust), numpy(expected))  # the name picks the weights


def test_zoo_names_are_read_when_parsing(monkeypatch):
    assert "later-model" not in zoo.ARCHITECTURES
    with pytest.raises(ValueError, match="unknown model spec 'later-model'"):
        parse_model_spec("later-model")
    monkeypatch.setattr(zoo, "ARCHITECTURES", (*zoo.ARCHITECTURES, "later-model"))
    assert parse_model_spec("later-model", framework=INSTALLED).kind == "zoo"


@pytest.mark.parametrize("framework", ["tensorflow", "tf", "jax"])
def test_zoo_name_in_other_frameworks(framework):
    pytest.importorskip("tensorflow" if framework in ("tensorflow", "tf") else "jax")
    torch = pytest.importorskip("torch")
    x, _ = zoo.load_mnist_heldout(4)
    spec = parse_model_spec("smallcnn", framework=framework)
    model = spec.load()
    assert spec.framework in ("tensorflow", "jax")
    layout_x = x.transpose(0, 2, 3, 1) if model.data_format == "channels_last" else x
    with torch.no_grad():
        expected = numpy(zoo.smallcnn_torch()(torch.from_numpy(x)))
    np.testing.assert_allclose(numpy(model(layout_x)), expected, rtol=1e-4, atol=1e-4)


def test_file_function_gives_the_functions_network(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(MODELS_FILE, tmp_path)
    spec = parse_model_spec(f"{relative}:torch_model")
    assert spec.kind == "file-function" and spec.text == f"{relative}:torch_model"
    x = images()
    with torch.no_grad():
        expected = numpy(fixture_module().torch_net()(torch.from_numpy(x)))
    monkeypatch.chdir(FIXTURES)  # a worker elsewhere still finds the file
    np.testing.assert_array_equal(numpy(spec.load()(torch.from_numpy(x))), expected)


def test_module_function(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(FIXTURES))
    spec = parse_model_spec("loader_models:torch_model")
    assert spec.kind == "module-function"
    x = images()
    with torch.no_grad():
        expected = numpy(fixture_module().torch_net()(torch.from_numpy(x)))
    np.testing.assert_array_equal(numpy(spec.load()(torch.from_numpy(x))), expected)


@pytest.mark.parametrize("function", ["tensorflow_model", "jax_model"])
@pytest.mark.framework
def test_function_returning_tensorflow_or_jax_models(function):
    pytest.importorskip(function.split("_")[0])
    x = images()
    model = parse_model_spec(f"{MODELS_FILE}:{function}").load()
    expected = x.reshape(len(x), -1) @ fixture_module().linear_weights()
    np.testing.assert_allclose(numpy(model(x)), expected, rtol=1e-5, atol=1e-5)


def test_torchscript_file(tmp_path):
    torch = pytest.importorskip("torch")
    net = fixture_module().torch_net()
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    spec = parse_model_spec(str(path), bounds=(0, 255))
    model = spec.load()
    assert spec.kind == "torchscript" and tuple(model.bounds) == (0, 255)
    x = images() * 255
    with torch.no_grad():
        expected = numpy(net(torch.from_numpy(x)))
    np.testing.assert_allclose(numpy(model(torch.from_numpy(x))), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.framework
def test_keras_file_reports_its_real_layout(tmp_path, suffix):
    tf = pytest.importorskip("tensorflow")
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input(shape=(6, 6, 3))  # channels-last
    hidden = tf.keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(hidden)))
    model.save(tmp_path / f"net{suffix}")
    x = images(shape=(6, 6, 3))
    fmodel = parse_model_spec(str(tmp_path / f"net{suffix}"), bounds=(0, 1)).load()
    assert fmodel.data_format == "channels_last"
    np.testing.assert_allclose(numpy(fmodel(x)), model(x).numpy(), rtol=1e-6, atol=1e-6)

    # channels-first: a dense model on (3, 6, 6) inputs
    inputs = tf.keras.Input(shape=(3, 6, 6))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "first.keras")
    fmodel = parse_model_spec(str(tmp_path / "first.keras"), bounds=(0, 1)).load()
    assert fmodel.data_format == "channels_first"
    x = images(shape=(3, 6, 6))
    np.testing.assert_allclose(numpy(fmodel(x)), model(x).numpy(), rtol=1e-6, atol=1e-6)


# --- models: identity ----------------------------------------------------------------------------


def test_spec_is_picklable_and_imports_nothing_when_parsed(tmp_path):
    module = tmp_path / "broken.py"
    module.write_text("raise ImportError('needs a GPU library')\n")
    spec = parse_model_spec(f"{module}:build")  # the module is imported in load(), not here
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec) == hash(
        pickle.loads(pickle.dumps(spec))
    )
    with pytest.raises(
        ValueError, match="importing .*broken.py.* failed: ImportError: needs a GPU"
    ) as info:
        spec.load()
    assert isinstance(info.value.__cause__, ImportError)


def test_describe_names_the_file_and_its_digest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("model.py").write_text("def build():\n    return None\n")
    spec = parse_model_spec("model.py:build", bounds=[0, 255])
    info = spec.describe()
    assert json.loads(json.dumps(info)) == info
    assert info["text"] == "model.py:build" and info["kind"] == "file-function"
    assert info["bounds"] == [0.0, 255.0] and info["device"] is None
    assert info["path"] == str(tmp_path / "model.py")
    assert info["sha256"] == hashlib.sha256(Path("model.py").read_bytes()).hexdigest()
    Path("model.py").write_text("def build():\n    return 1\n")
    assert spec.describe()["sha256"] != info["sha256"]
    zoo_info = parse_model_spec("smallcnn", framework=INSTALLED).describe()
    assert zoo_info["framework"] == INSTALLED and "sha256" not in zoo_info


# --- models: errors ------------------------------------------------------------------------------


@pytest.fixture
def model_files(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("net.pt", "net.keras", "model.py"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("resnet9000", {}, r"unknown model spec 'resnet9000'; accepted: a zoo name \(smallcnn"),
        ("", {}, "must be a non-empty string"),
        ("model.py", {}, r"needs ':function', e.g. model.py:build"),
        ("missing.py:build", {}, r"Python file 'missing.py' not found"),
        ("missing.pt", {"bounds": (0, 1)}, "'missing.pt': TorchScript file not found"),
        ("missing.keras", {"bounds": (0, 1)}, "'missing.keras': Keras file not found"),
        ("net.pt", {}, r"a TorchScript file needs its input bounds \(--bounds LO,HI"),
        ("net.keras", {}, "a Keras file needs its input bounds"),
        ("net.pt", {"bounds": (1, 0)}, r"bounds must be finite with lo < hi, got \(1, 0\)"),
        ("net.pt", {"bounds": (0, float("inf"))}, "bounds must be finite with lo < hi"),
        ("net.pt", {"bounds": (0, 1, 2)}, r"bounds must be two numbers \(lo, hi\)"),
        ("net.pt", {"bounds": ("a", "b")}, "bounds must be two numbers"),
        ("net.pt", {"bounds": 1.0}, "bounds must be two numbers"),
        ("smallcnn", {"framework": "mxnet"}, "unknown framework 'mxnet'; use one of pytorch"),
        ("model.py:build", {"framework": "jax"}, "framework='jax' applies to zoo names only"),
        ("smallcnn", {"device": "gpu"}, "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
        ("model.py:2build", {}, "'2build' after ':' is not a function name"),
        ("my model/x:build", {}, "'my model/x' before ':' is neither a .py file nor a module"),
    ],
)
def test_bad_model_specs(model_files, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        parse_model_spec(text, **kwargs)


@pytest.mark.parametrize(
    "function, message",
    [
        ("not_a_model", r"not_a_model\(\) returned a builtins.list, not a Foolbox model"),
        ("fails", r"calling fails\(\) failed: RuntimeError: the checkpoint is missing"),
        ("not_callable", "'not_callable' in .* is a int, not a function"),
        ("absent", "'.*loader_models.py' has no function 'absent'"),
    ],
)
def test_functions_that_give_no_model(function, message):
    spec = parse_model_spec(f"{MODELS_FILE}:{function}")
    with pytest.raises(ValueError, match=f"model spec '.*loader_models.py:{function}': {message}"):
        spec.load()


def test_module_not_found_and_broken_module(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="module 'no_such_pkg.models' not found") as info:
        load_model("no_such_pkg.models:build")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    (tmp_path / "needs_missing.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ValueError, match="importing 'needs_missing' failed: No module named"
    ) as info:
        load_model("needs_missing:build")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_bounds_that_differ_from_the_models():
    pytest.importorskip("torch")
    with pytest.raises(
        ValueError, match=r"the model's bounds \(0, 1\) differ from the bounds given \(0.0, 255.0\)"
    ):
        load_model(f"{MODELS_FILE}:torch_model", bounds=(0, 255))


def test_torchscript_file_that_is_not_torchscript(tmp_path):
    """A file that torch.save did not write as TorchScript and that is no torch file at all: the
    message names TorchScript and how to save it (a loader that printed PyTorch's own "corrupted
    checkpoint" error would fail)."""
    pytest.importorskip("torch")
    (tmp_path / "weights.pt").write_bytes(b"\x00 not a torch file")
    spec = parse_model_spec(str(tmp_path / "weights.pt"), bounds=(0, 1))
    with pytest.raises(
        ValueError, match=r"cannot load .*weights.pt' as TorchScript .*torch.jit.script"
    ):
        spec.load()


@pytest.mark.framework
def test_keras_file_that_is_not_keras(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "net.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot load .*net.keras' as a Keras model"):
        load_model(str(tmp_path / "net.keras"), bounds=(0, 1))


def test_framework_not_installed(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    missing = {"jax", "torch", "tensorflow"}
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in missing else real_find_spec(name, *a),
    )
    with pytest.raises(
        ValueError,
        match=r"'smallcnn' needs jax, which is not installed \(pip install 'foolbox-alma\[jax\]'\)",
    ):
        parse_model_spec("smallcnn", framework="jax")
    (tmp_path / "net.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"needs pytorch, which is not installed .*\[torch\]"):
        parse_model_spec(str(tmp_path / "net.pt"), bounds=(0, 1))
    (tmp_path / "net.keras").write_bytes(b"")
    with pytest.raises(ValueError, match="needs tensorflow, which is not installed"):
        parse_model_spec(str(tmp_path / "net.keras"), bounds=(0, 1))


def test_cuda_without_a_cuda_device():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    spec = parse_model_spec("smallcnn", device="cuda")
    with pytest.raises(
        ValueError, match="device 'cuda' asked for, but PyTorch sees no CUDA device"
    ):
        spec.load()


def test_cuda_moves_the_zoo_model_and_its_inputs():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x, _ = zoo.load_mnist_heldout(4)
    model = parse_model_spec("smallcnn", device="cuda").load()
    logits = model(torch.from_numpy(x))
    assert logits.device.type == "cuda"
    with torch.no_grad():
        expected = numpy(zoo.smallcnn_torch()(torch.from_numpy(x)))
    np.testing.assert_allclose(numpy(logits), expected, rtol=1e-4, atol=1e-4)


# --- data: zoo held-out sets ---------------------------------------------------------------------


def shipped(name: str) -> Dict[str, np.ndarray]:
    with np.load(ZOO_DATA / f"{name}_heldout.npz") as archive:
        return {key: archive[key] for key in archive.files}


def test_mnist_heldout_with_offset_limit_layout_and_bounds():
    raw = shipped("mnist")
    data = load_data("mnist-heldout")
    assert data.x.shape == (1000, 1, 28, 28) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x[:, 0], raw["images"].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(data.y, raw["labels"])
    np.testing.assert_array_equal(data.indices, np.arange(1000))
    assert data.targets is None and data.y.dtype == np.int64 and data.indices.dtype == np.int64

    part = load_data(
        "mnist-heldout", offset=10, limit=5, data_format="channels_last", bounds=(0, 255)
    )
    assert part.x.shape == (5, 28, 28, 1) and part.data_format == "channels_last"
    np.testing.assert_allclose(part.x[..., 0], raw["images"][10:15], atol=1e-4)
    np.testing.assert_array_equal(part.y, raw["labels"][10:15])
    np.testing.assert_array_equal(part.indices, np.arange(10, 15))


# resnet50-imagenet's images are read from Foolbox's files (tests/test_zoo_resnet50.py)
SHIPPED_HELDOUT = {model: name for model, name in zoo.HELDOUT_DATA.items() if name != model}


def test_colour_heldout_sets():
    for name in sorted(set(SHIPPED_HELDOUT.values()) - {"mnist"}):
        raw = shipped(name)
        data = load_data(f"{name}-heldout", limit=3, data_format="channels_last")
        expected = raw["images"][:3].astype(np.float32) / np.float32(255)
        expected = expected.transpose(0, 2, 3, 1) if expected.shape[1] == 3 else expected
        np.testing.assert_array_equal(data.x, expected)
        np.testing.assert_array_equal(data.y, raw["labels"][:3])
    for model, name in SHIPPED_HELDOUT.items():  # a zoo model's name gives its data set
        np.testing.assert_array_equal(
            load_data(f"{model}-heldout", limit=2).y, shipped(name)["labels"][:2]
        )


# --- data: npz -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", ["channels_first", "channels_last"])
@pytest.mark.parametrize("wanted", ["channels_first", "channels_last"])
@pytest.mark.parametrize("channels", [1, 3])
def test_npz_round_trip_in_both_layouts(tmp_path, stored, wanted, channels):
    rng = np.random.default_rng(2)
    first = rng.uniform(-1, 2, size=(7, channels, 5, 4)).astype(np.float32)  # model units
    y = rng.integers(0, 10, size=7)
    targets = (y + 1) % 10
    x = first if stored == "channels_first" else first.transpose(0, 2, 3, 1)
    np.savez(tmp_path / "d.npz", x=x, y=y, targets=targets.astype(np.int32))
    data = load_data(
        str(tmp_path / "d.npz"), data_format=wanted, bounds=(0, 255), offset=2, limit=3
    )
    expected = first[2:5] if wanted == "channels_first" else first[2:5].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(data.x, expected)  # float arrays are taken as they are
    np.testing.assert_array_equal(data.y, y[2:5])
    np.testing.assert_array_equal(data.targets, targets[2:5])
    assert data.targets.dtype == np.int64 and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.indices, [2, 3, 4])


def test_npz_uint8_is_scaled_then_mapped_to_bounds(tmp_path):
    x = np.random.default_rng(3).integers(0, 256, size=(4, 3, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4))
    unit = load_data(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(unit.x, x.astype(np.float32) / np.float32(255))
    assert unit.targets is None
    scaled = load_data(str(tmp_path / "d.npz"), bounds=(0, 255))
    np.testing.assert_allclose(scaled.x, x, atol=1e-4)
    centred = load_data(str(tmp_path / "d.npz"), bounds=(-1, 1))
    np.testing.assert_allclose(centred.x, x / 255 * 2 - 1, atol=1e-6)


def test_npz_gray_without_channel_axis_and_limit_past_the_end(tmp_path):
    x = np.random.default_rng(4).uniform(size=(5, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(5))
    data = load_data(str(tmp_path / "d.npz"), offset=3, limit=100)  # truncated to what is there
    np.testing.assert_array_equal(data.x, x[3:, None])
    np.testing.assert_array_equal(data.indices, [3, 4])
    assert data.describe()["limit"] == 100 and data.describe()["n"] == 2


def test_dataset_describe_hashes_the_arrays(tmp_path):
    x = np.random.default_rng(5).uniform(size=(4, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4), targets=np.arange(4)[::-1].copy())
    data = load_data(str(tmp_path / "d.npz"), offset=1)
    info = data.describe()
    assert json.loads(json.dumps(info)) == info
    assert info["name"] == str(tmp_path / "d.npz")
    assert (info["n"], info["shape"], info["dtype"], info["offset"], info["limit"]) == (
        3,
        [3, 1, 4, 4],
        "float32",
        1,
        None,
    )
    assert info["sha256"]["x"] == hashlib.sha256(x[1:].tobytes()).hexdigest()
    assert (
        info["sha256"]["y"] == hashlib.sha256(np.arange(1, 4, dtype=np.int64).tobytes()).hexdigest()
    )
    assert (
        info["sha256"]["targets"]
        == hashlib.sha256(np.arange(3)[::-1].astype(np.int64).tobytes()).hexdigest()
    )
    assert isinstance(data, Dataset) and len(data) == 3


def write_npz(path: Path, **arrays: Any) -> str:
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"y": np.arange(2)},
            r"has no array x \(it holds y\); expected x \(images\), y \(labels\)",
        ),
        ({"x": np.zeros((2, 1, 3, 3))}, r"has no array y \(it holds x\)"),
        ({"images": np.zeros(2)}, r"has no array x or y \(it holds images\)"),
        (
            {"x": np.zeros((2, 1, 3, 3), np.int32), "y": np.arange(2)},
            "x must be uint8 .* or floating point, got int32",
        ),
        (
            {"x": np.zeros((2, 1, 3, 3)), "y": np.zeros(2)},
            "y must be a 1-D integer array, got float64",
        ),
        (
            {"x": np.zeros((2, 1, 3, 3)), "y": np.zeros((2, 1), int)},
            r"y must be a 1-D integer array, got int64 of shape \(2, 1\)",
        ),
        ({"x": np.zeros((2, 1, 3, 3)), "y": np.arange(3)}, "x holds 2 images but y holds 3 values"),
        (
            {"x": np.zeros((2, 1, 3, 3)), "y": np.arange(2), "targets": np.arange(1)},
            "x holds 2 images but targets holds 1",
        ),
        (
            {"x": np.zeros((2, 1, 3, 3)), "y": np.arange(2), "targets": np.zeros(2)},
            "targets must be a 1-D integer array",
        ),
        (
            {"x": np.zeros((2, 3, 5, 3)), "y": np.arange(2)},
            r"cannot tell the channel axis of images of shape \(2, 3, 5, 3\)",
        ),
        (
            {"x": np.zeros((2, 4, 5, 5)), "y": np.arange(2)},
            r"cannot tell the channel axis .*\(2, 4, 5, 5\)",
        ),
        (
            {"x": np.zeros((2, 9)), "y": np.arange(2)},
            r"x must hold images \(N, C, H, W\) or \(N, H, W, C\), got shape \(2, 9\)",
        ),
    ],
)
def test_bad_npz_files(tmp_path, arrays, message):
    with pytest.raises(ValueError, match=message):
        load_data(write_npz(tmp_path / "d.npz", **arrays))


def test_unreadable_npz_files(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="garbage.npz' cannot be read as .npz arrays"):
        load_data(str(tmp_path / "garbage.npz"))
    objects = np.empty(2, dtype=object)
    with pytest.raises(ValueError, match="objects.npz' cannot be read as .npz arrays"):
        load_data(write_npz(tmp_path / "objects.npz", x=objects, y=np.arange(2)))
    with pytest.raises(ValueError, match="data file '.*missing.npz' not found"):
        load_data(str(tmp_path / "missing.npz"))


def test_bad_data_arguments(tmp_path):
    path = write_npz(tmp_path / "d.npz", x=np.zeros((3, 1, 2, 2), np.float32), y=np.arange(3))
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        (
            {"spec": "cifar10"},
            r"unknown data 'cifar10' \(no such file or folder\); "
            r"accepted: a zoo held-out set \(colour-mnist-heldout, .*mnist-heldout",
        ),
        ({"spec": "imagenet-heldout"}, "unknown data 'imagenet-heldout'; accepted"),
        ({"spec": str(tmp_path / "notes.txt")}, "is neither an .npz file nor a folder"),
        ({"spec": path, "offset": -1}, "offset must be a non-negative integer, got -1"),
        ({"spec": path, "offset": 3}, r"offset 3 is past its last sample \(3 samples\)"),
        ({"spec": path, "limit": 0}, "limit must be a positive integer, got 0"),
        ({"spec": path, "limit": -2}, "limit must be a positive integer, got -2"),
        ({"spec": path, "limit": 1.5}, "limit must be a positive integer, got 1.5"),
        ({"spec": path, "image_size": 8}, "image_size resizes image folders only"),
        ({"spec": str(tmp_path), "image_size": 0}, "image_size must be a positive integer, got 0"),
        ({"spec": path, "data_format": "NCHW"}, "data_format must be one of .*, got 'NCHW'"),
        ({"spec": path, "bounds": (1, 1)}, r"bounds must be finite with lo < hi, got \(1, 1\)"),
        ({"spec": path, "bounds": (0,)}, "bounds must be two numbers"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            load_data(**kwargs)


# --- data: image folders -------------------------------------------------------------------------


def save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_reads_back_the_written_pixels(tmp_path):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(6)
    arrays = {
        ("zebra", "1.png"): rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
        ("zebra", "0.png"): rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
        ("ant", "a.png"): rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
    }
    for (label, file), array in arrays.items():
        save_png(tmp_path / label / file, array)
    (tmp_path / "ant" / "README.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    order = [("ant", "a.png"), ("zebra", "0.png"), ("zebra", "1.png")]  # sorted classes and files
    expected = np.stack([arrays[key] for key in order]).astype(np.float32) / np.float32(255)

    data = load_data(str(tmp_path))
    assert data.classes == ["ant", "zebra"]
    np.testing.assert_array_equal(data.y, [0, 1, 1])
    np.testing.assert_array_equal(data.x, expected.transpose(0, 3, 1, 2))
    last = load_data(str(tmp_path), data_format="channels_last", offset=1, bounds=(0, 255))
    np.testing.assert_allclose(last.x, expected[1:] * 255, atol=1e-4)
    np.testing.assert_array_equal(last.indices, [1, 2])


def test_image_folder_gray_mixed_jpeg_and_resize(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(7)
    gray = [rng.integers(0, 256, (6, 6), dtype=np.uint8) for _ in range(2)]
    save_png(tmp_path / "gray" / "a" / "0.png", gray[0])
    save_png(tmp_path / "gray" / "b" / "0.png", gray[1])
    data = load_data(str(tmp_path / "gray"))
    assert data.x.shape == (2, 1, 6, 6)  # every image gray: one channel
    np.testing.assert_array_equal(data.x[:, 0], np.stack(gray) / np.float32(255))

    colour = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    save_png(tmp_path / "gray" / "c" / "0.png", colour)
    mixed = load_data(str(tmp_path / "gray"), data_format="channels_last")
    assert mixed.x.shape == (3, 6, 6, 3)  # one colour image: all RGB, gray replicated
    np.testing.assert_array_equal(
        mixed.x[0], np.repeat(gray[0][..., None], 3, -1) / np.float32(255)
    )

    jpeg = tmp_path / "jpeg" / "only" / "0.jpg"
    jpeg.parent.mkdir(parents=True)
    Image.fromarray(colour).save(jpeg, quality=80)
    decoded = np.asarray(Image.open(jpeg).convert("RGB"))
    np.testing.assert_array_equal(
        load_data(str(tmp_path / "jpeg")).x[0], decoded.transpose(2, 0, 1) / np.float32(255)
    )

    big = rng.integers(0, 256, (11, 9, 3), dtype=np.uint8)
    save_png(tmp_path / "sizes" / "a" / "0.png", big)
    save_png(tmp_path / "sizes" / "a" / "1.png", colour)
    with pytest.raises(
        ValueError,
        match=r"images differ in size \(.*0.png is 9x11, .*1.png is 6x6\); give image_size",
    ):
        load_data(str(tmp_path / "sizes"))
    resized = load_data(str(tmp_path / "sizes"), image_size=4, data_format="channels_last")
    for i, array in enumerate((big, colour)):
        oracle = np.asarray(Image.fromarray(array).resize((4, 4), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(resized.x[i], oracle / np.float32(255))


def test_bad_image_folders(tmp_path):
    pytest.importorskip("PIL")
    (tmp_path / "flat").mkdir()
    save_png(tmp_path / "flat" / "0.png", np.zeros((3, 3), np.uint8))  # no class subfolder
    with pytest.raises(
        ValueError, match="image folder '.*flat' has no class subfolders; expected one subfolder"
    ):
        load_data(str(tmp_path / "flat"))
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "dogs").mkdir()
    with pytest.raises(
        ValueError,
        match=r"image folder '.*empty' is empty: its subfolders \(cats, dogs\) hold no images",
    ):
        load_data(str(tmp_path / "empty"))
    save_png(tmp_path / "broken" / "a" / "0.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "broken" / "a" / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(
        ValueError, match=r"cannot read image '.*broken/a/1.png': UnidentifiedImageError"
    ):
        load_data(str(tmp_path / "broken"))
