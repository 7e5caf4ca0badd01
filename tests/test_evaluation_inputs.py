"""Model and data specs of the evaluation engine: every form loads, every bad input is named.

Oracles: the framework's own outputs for the same network (a TorchScript file against the module
it was saved from, a Keras file against the Keras model, a user's function against the zoo
network), the arrays an .npz file or image folder was written from (PNG is lossless), and
Pillow's own resize."""

from pathlib import Path

import numpy as np
import pytest

from foolbox_alma import zoo
from foolbox_alma.evaluation import load_data, parse_model_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"


# -- models -----------------------------------------------------------------------------------


def test_zoo_and_function_specs_give_the_zoo_network():
    torch = pytest.importorskip("torch")
    x, _ = zoo.load_mnist_heldout(8)
    reference = zoo.foolbox_model("pytorch")(torch.from_numpy(x)).numpy()
    spec = parse_model_spec("smallcnn")
    assert (spec.kind, spec.framework) == ("zoo", "pytorch")
    assert np.array_equal(spec.load()(torch.from_numpy(x)).numpy(), reference)
    file_spec = parse_model_spec(str(EXAMPLES / "mnist_net.py") + ":build")
    assert file_spec.kind == "file-function" and Path(file_spec.path).is_absolute()
    assert np.allclose(file_spec.load()(torch.from_numpy(x)).numpy(), reference, atol=1e-5)
    assert len(file_spec.describe()["sha256"]) == 16
    module_spec = parse_model_spec("foolbox_alma.zoo:foolbox_model")  # defaults: PyTorch SmallCNN
    assert module_spec.kind == "module-function"
    assert np.array_equal(module_spec.load()(torch.from_numpy(x)).numpy(), reference)


def test_zoo_spec_in_each_framework(fw):
    x, _ = zoo.load_mnist_heldout(4)
    model = parse_model_spec("smallcnn", framework=fw.name).load()
    layout = x if model.data_format == "channels_first" else x.transpose(0, 2, 3, 1)
    logits = fw.numpy(model(fw.tensor(layout)))
    stored = np.load(Path(__file__).parent / "data" / "smallcnn_reference_logits.npz")
    assert np.allclose(logits, stored["logits"][:4], atol=1e-4)  # PyTorch's, stored


def test_torchscript_file(tmp_path):
    torch = pytest.importorskip("torch")
    net = zoo.smallcnn_torch()
    path = tmp_path / "net.pt"
    torch.jit.script(net).save(str(path))
    with pytest.raises(ValueError, match="needs its input bounds"):
        parse_model_spec(str(path))
    model = parse_model_spec(str(path), bounds=(0, 1)).load()
    x = torch.from_numpy(zoo.load_mnist_heldout(5)[0])
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    assert tuple(model.bounds) == (0, 1)


def test_keras_file_reports_its_layout(tmp_path):
    tf = pytest.importorskip("tensorflow")
    inputs = tf.keras.Input((8, 8, 3))
    outputs = tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(inputs))
    keras_model = tf.keras.Model(inputs, outputs)
    path = tmp_path / "m.keras"
    keras_model.save(str(path))
    model = parse_model_spec(str(path), bounds=(0, 255)).load()
    assert model.data_format == "channels_last"
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    assert np.allclose(model(tf.constant(x)).numpy(), keras_model(x).numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("resnet-9000", {}, "unknown model 'resnet-9000'; use a zoo name"),
        ("missing.py:build", {}, "file 'missing.py' does not exist"),
        ("missing.pt", {}, "model file 'missing.pt' does not exist"),
        ("foolbox_alma.zoo:not a name", {}, "is not a function name"),
        ("smallcnn", {"bounds": (1, 0)}, "lo < hi"),
        ("smallcnn", {"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
        ("smallcnn", {"framework": "mxnet"}, "unknown framework 'mxnet'"),
    ],
)
def test_bad_model_specs(text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        parse_model_spec(text, **kwargs)


def test_functions_that_fail_or_return_no_model(tmp_path):
    (tmp_path / "user.py").write_text(
        "def not_a_model():\n    return 42\n\ndef broken():\n    raise RuntimeError('no GPU')\n"
        "import numpy\n"
    )
    with pytest.raises(ValueError, match=r"not_a_model\(\) returned a int, not a Foolbox model"):
        parse_model_spec(f"{tmp_path / 'user.py'}:not_a_model").load()
    with pytest.raises(RuntimeError, match="no GPU"):
        parse_model_spec(f"{tmp_path / 'user.py'}:broken").load()
    with pytest.raises(ValueError, match="has no function 'absent'"):
        parse_model_spec(f"{tmp_path / 'user.py'}:absent").load()
    with pytest.raises(ValueError, match="importing 'no_such_package.models' failed"):
        parse_model_spec("no_such_package.models:build").load()
    (tmp_path / "syntax.py").write_text("def build(:\n")
    with pytest.raises(ValueError, match="SyntaxError"):
        parse_model_spec(f"{tmp_path / 'syntax.py'}:build").load()


# -- data -------------------------------------------------------------------------------------


def test_zoo_heldout_with_offset_limit_and_bounds():
    x, y = zoo.load_mnist_heldout()
    data = load_data("mnist-heldout", offset=10, limit=5)
    assert np.array_equal(data.x, x[10:15]) and np.array_equal(data.y, y[10:15])
    assert list(data.indices) == list(range(10, 15))
    last = load_data("mnist-heldout", data_format="channels_last", bounds=(0, 255), limit=3)
    assert np.allclose(last.x, 255 * x[:3].transpose(0, 2, 3, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="past the end"):
        load_data("mnist-heldout", offset=1000)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_npz_in_either_layout(tmp_path, layout):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (6, 3, 5, 7), dtype=np.uint8)
    stored = x if layout == "channels_first" else x.transpose(0, 2, 3, 1)
    y = rng.integers(0, 10, 6)
    targets = (y + 3) % 10
    np.savez(tmp_path / "d.npz", x=stored, y=y, targets=targets)
    for wanted in ("channels_first", "channels_last"):
        data = load_data(str(tmp_path / "d.npz"), data_format=wanted)
        expected = x / 255.0 if wanted == "channels_first" else x.transpose(0, 2, 3, 1) / 255.0
        assert np.allclose(data.x, expected, rtol=1e-7)
        assert np.array_equal(data.y, y) and np.array_equal(data.targets, targets)
    floats = rng.uniform(0, 255, (4, 1, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=floats, y=np.arange(4))
    assert np.array_equal(load_data(str(tmp_path / "f.npz"), bounds=(0, 255)).x, floats)


def test_bad_npz_files(tmp_path):
    np.savez(tmp_path / "nox.npz", images=np.zeros((2, 1, 4, 4)), y=np.zeros(2, int))
    with pytest.raises(ValueError, match="has no array x"):
        load_data(str(tmp_path / "nox.npz"))
    np.savez(tmp_path / "fy.npz", x=np.zeros((2, 1, 4, 4)), y=np.zeros(2))
    with pytest.raises(ValueError, match="y in .* must be a 1-D integer array"):
        load_data(str(tmp_path / "fy.npz"))
    np.savez(tmp_path / "n.npz", x=np.zeros((3, 1, 4, 4)), y=np.zeros(2, int))
    with pytest.raises(ValueError, match="holds 3 images but 2 y"):
        load_data(str(tmp_path / "n.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        load_data(str(tmp_path / "junk.npz"))
    with pytest.raises(ValueError, match="unknown data 'cifar-100'"):
        load_data("cifar-100")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    written = {}
    for name in ("cat", "dog"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for k in range(2):
            array = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / "imgs" / name / f"{k}.png")
            written[(name, k)] = array
    data = load_data(str(tmp_path / "imgs"))
    assert data.classes == ["cat", "dog"] and list(data.y) == [0, 0, 1, 1]
    expected = np.stack([written[key] for key in sorted(written)]).transpose(0, 3, 1, 2) / 255.0
    assert np.allclose(data.x, expected, rtol=1e-7)
    resized = load_data(str(tmp_path / "imgs"), image_size=4, data_format="channels_last")
    pil = np.asarray(
        Image.fromarray(written[("cat", 0)]).resize((4, 4), Image.BILINEAR), np.float32
    )
    assert np.allclose(resized.x[0], pil / 255.0, rtol=1e-7)
    Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).save(
        tmp_path / "imgs" / "dog" / "odd.png"
    )
    with pytest.raises(ValueError, match="images differ in size"):
        load_data(str(tmp_path / "imgs"))
    (tmp_path / "imgs" / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        load_data(str(tmp_path / "imgs"), image_size=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        load_data(str(tmp_path / "empty"))
