"""Evaluations a user can trust with their own model (issue 14), tried as a user would: a model
file that loads its checkpoint, TorchScript files, torch files that are not TorchScript, bare
networks, retrained weights, default folders, Ctrl-C, devices and sanity flags.

Oracles: the user's own computation (their network's logits, an eager module against its
TorchScript version), fresh folders (what a rerun must reproduce), and models built to raise each
sanity flag (or to raise none).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from helpers import with_default_sigint

from foolbox_alma import zoo
from foolbox_alma.evaluation import EvaluationError, evaluate
from foolbox_alma.pipeline import fingerprint
from foolbox_alma.pipeline.models import parse_model_spec

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(steps=8, batch_size=4, threads=1, progress=False)

MODEL_FILE = """
import os
import foolbox as fb
import torch

WEIGHTS = os.path.join(os.path.dirname(__file__), "weights.pth")


class TinyNet(torch.nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2)
        self.drop = torch.nn.Dropout(dropout)
        self.fc = torch.nn.Linear(4 * 13 * 13, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x)).flatten(1)))


def net(dropout=0.0):
    network = TinyNet(dropout)
    network.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
    return network.eval()


def build():
    return fb.PyTorchModel(net(), bounds=(0, 1))


def bare():
    return net()


def normalised():
    return fb.PyTorchModel(net(), bounds=(0, 1), preprocessing=dict(mean=0.5, std=0.25))


def training():
    return fb.PyTorchModel(net(dropout=0.5).train(), bounds=(0, 1))


def softmax():
    network = net()
    return fb.PyTorchModel(torch.nn.Sequential(network, torch.nn.Softmax(dim=1)).eval(), bounds=(0, 1))


def stepped():
    network = net()

    class Rounded(torch.nn.Module):
        def forward(self, x):  # a non-differentiable input quantisation: zero input gradients
            return network(torch.round(x * 4) / 4)

    return fb.PyTorchModel(Rounded().eval(), bounds=(0, 1))


def noisy():
    network = net()

    class Noisy(torch.nn.Module):
        def forward(self, x):  # a randomised defence, in eval mode
            return network(x + 0.05 * torch.randn_like(x))

    return fb.PyTorchModel(Noisy().eval(), bounds=(0, 1))
"""


def user_module(folder: Path) -> Any:
    """The user's model.py imported as the module ``model`` (so that its classes pickle)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("model", folder / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    spec.loader.exec_module(module)
    return module


def train(folder: Path, seed: int) -> None:
    """'Trains' the user's network: seeded weights written to weights.pth (another seed: a
    retrained checkpoint)."""
    torch.manual_seed(seed)
    torch.save(user_module(folder).TinyNet().state_dict(), folder / "weights.pth")


@pytest.fixture
def user(tmp_path: Path) -> Dict[str, Any]:
    """A user's project: model.py (loads weights.pth), trained weights and test.npz whose labels
    are the network's own predictions (every sample correctly classified, so distances are not
    0)."""
    (tmp_path / "model.py").write_text(MODEL_FILE)
    train(tmp_path, 0)
    x, _ = zoo.load_mnist_heldout(8)
    spec = parse_model_spec(f"{tmp_path}/model.py:build")
    logits = spec.load().__call__(torch.from_numpy(x)).detach().numpy()
    np.savez(tmp_path / "test.npz", x=x, y=logits.argmax(1))
    return {"root": tmp_path, "model": f"{tmp_path}/model.py", "data": str(tmp_path / "test.npz")}


def cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "foolbox_alma", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


# -- 1. the run's identity holds the model itself -----------------------------------------------


def test_retrained_weights_are_never_reported_as_the_old_ones(user):
    """Same model.py, same command, new weights.pth: the rerun refuses the folder, saying the
    model changed; with the default folder it computes the new weights' results in a new one.
    Catches: an identity made of the spec text and the .py file's digest only (the old weights'
    median came back), a process-wide model cache that keeps the first build."""
    out = user["root"] / "run"
    first = evaluate(f"{user['model']}:build", user["data"], out=out, **FAST)
    train(user["root"], 1)  # retrained
    with pytest.raises(EvaluationError, match=r"model.parameters.*weights or file changed"):
        evaluate(f"{user['model']}:build", user["data"], out=out, **FAST)
    again = evaluate(f"{user['model']}:build", user["data"], out="auto", **FAST)
    fresh = evaluate(f"{user['model']}:build", user["data"], **FAST)  # nothing on disk
    np.testing.assert_array_equal(again.distance, fresh.distance)
    assert not np.array_equal(again.distance, first.distance)
    assert again.summary["fingerprint"]["parameters"] != first.summary["fingerprint"]["parameters"]


def test_live_models_with_other_weights_do_not_share_a_folder(user):
    """Two live model objects written to one folder: the second is another run. Catches: a live
    model identified as "<PyTorchModel object>"."""
    spec = parse_model_spec(f"{user['model']}:build")
    out = user["root"] / "live"
    evaluate(spec.load(), user["data"], out=out, **FAST)
    evaluate(spec.load(), user["data"], out=out, **FAST)  # the same weights: resumes
    train(user["root"], 2)
    with pytest.raises(EvaluationError, match="different run's results"):
        evaluate(spec.load(fresh=True), user["data"], out=out, **FAST)


def test_fingerprint_is_stable_across_processes_and_thread_counts(tmp_path):
    """The fingerprint of one model computed in two processes with 1 and 2 threads: the same
    parameters digest, probes within the tolerance (their float outputs may differ in the last
    bits). Catches: a probe hashed bit for bit, an unseeded probe, a digest of unordered keys."""
    code = textwrap.dedent(
        """
        import json, sys, torch
        torch.set_num_threads(int(sys.argv[1]))
        from foolbox_alma import zoo
        from foolbox_alma.pipeline.fingerprint import fingerprint
        print(json.dumps(fingerprint(zoo.foolbox_model("pytorch", "colour-cnn"), (3, 32, 32))))
        """
    )
    prints = []
    for threads in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", code, threads], capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)  # fmt: skip
        prints.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert prints[0]["parameters"] == prints[1]["parameters"] is not None
    assert fingerprint.probe_differs(prints[0]["probe"], prints[1]["probe"]) is None
    model = zoo.foolbox_model("pytorch", "colour-cnn")
    assert fingerprint.check(model, prints[0], (3, 32, 32)) is None
    other = zoo.foolbox_model("pytorch", "colour-cnn-b")
    assert "parameters" in fingerprint.check(other, prints[0], (3, 32, 32))


# -- 2. TorchScript, torch files that are not TorchScript, bare networks ----------------------


def test_torchscript_scripted_and_traced_give_the_eager_modules_results(user):
    """The network's eager module, its scripted and its traced TorchScript files, attacked alike:
    the same distances and successes, every pass counted. Catches: forward hooks on a
    ScriptModule (a RuntimeError), counting that sees no pass (0 / 0), a TorchScript loader that
    changes the function (train mode, another device)."""
    net = user_module(user["root"]).net()
    torch.jit.script(net).save(user["root"] / "scripted.pt")
    torch.jit.trace(net, torch.zeros(1, 1, 28, 28)).save(user["root"] / "traced.pt")
    eager = evaluate(f"{user['model']}:build", user["data"], **FAST)
    for name in ("scripted.pt", "traced.pt"):
        scripted = evaluate(str(user["root"] / name), user["data"], bounds=(0, 1), **FAST)
        np.testing.assert_allclose(scripted.distance, eager.distance, rtol=1e-5)
        np.testing.assert_array_equal(scripted.success, eager.success)
        assert scripted.summary["forwards_per_sample"] == FAST["steps"]
        assert scripted.summary["backwards_per_sample"] == FAST["steps"]


@pytest.mark.parametrize(
    "saved, says",
    [
        ("state", r"weights.pt is a state dict \(4 tensors: conv.weight"),
        ("module", r"is a whole module pickled with torch.save \(class .*TinyNet\)"),
        ("checkpoint", r"is a training checkpoint \(keys: epoch, model_state_dict, optimizer\)"),
    ],
)
def test_torch_files_that_are_not_torchscript_say_what_they_are(user, saved, says):
    """A state dict, a pickled module or a training checkpoint given as --model: the message says
    which it is and shows the model file to write (with the checkpoint's key). Catches: PyTorch's
    "your checkpoint file is corrupted" passed through, a message without the fix."""
    net = user_module(user["root"]).net()
    path = user["root"] / "weights.pt"
    content = {
        "state": net.state_dict(),
        "module": net,
        "checkpoint": {"epoch": 3, "model_state_dict": net.state_dict(), "optimizer": {}},
    }
    torch.save(content[saved], path)  # fmt: skip
    done = cli("evaluate", "--model", str(path), "--bounds", "0,1", "--data", "mnist-heldout",
               cwd=user["root"])  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) > 5  # the model file, in the message
    assert pytest.importorskip("re").search(says, done.stderr), done.stderr
    assert "def build():" in done.stderr and "--model my_model.py:build" in done.stderr
    if saved == "checkpoint":
        assert "['model_state_dict']" in done.stderr


def test_a_bare_network_is_wrapped_with_bounds_and_preprocessing(user):
    """build() returning a torch.nn.Module: wrapped with --bounds (and --preprocessing) it gives
    the logits of the user's own Foolbox model; without --bounds the message names the user's
    class and file, not the module it was imported as. Catches: a rejection with an internal
    module name, preprocessing dropped or applied on the wrong axis."""
    x, _ = zoo.load_mnist_heldout(3)
    theirs = parse_model_spec(f"{user['model']}:normalised").load()
    ours = parse_model_spec(f"{user['model']}:bare", bounds=(0, 1), preprocessing=(0.5, 0.25))
    np.testing.assert_allclose(
        ours.load()(torch.from_numpy(x)).detach().numpy(),
        theirs(torch.from_numpy(x)).detach().numpy(),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"bare\(\) returned a TinyNet from model.py "
                       r"\(torch.nn.Module\), not a Foolbox model: give its input range"):  # fmt: skip
        parse_model_spec(f"{user['model']}:bare").load()


def test_a_bare_module_stays_on_its_device_without_device(user, monkeypatch):
    """A bare module on the CPU, no --device, on a machine where Foolbox sees a GPU: it stays on
    the CPU (--help: "default: where it is"). Catches: the module handed to fb.PyTorchModel with
    device=None, which moves it to cuda:0 (here: fails, as there is no CUDA to move it to)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fmodel = parse_model_spec(f"{user['model']}:bare", bounds=(0, 1)).load()
    assert str(fmodel.device) == "cpu"
    from foolbox_alma.counting import torch_module_of

    assert all(p.device.type == "cpu" for p in torch_module_of(fmodel).parameters())


# -- 3. default folders ---------------------------------------------------------------------------


def test_default_folders_never_collide(user):
    """The default --out of different models, functions, data, selections and attacks: all
    different, named after them, and the same for the same run. Catches: every build() landing in
    evaluation/build-alma-l2-100."""
    root = user["root"]
    (root / "other.py").write_text(MODEL_FILE)
    x = np.load(user["data"])
    np.savez(root / "copy.npz", x=x["x"], y=x["y"])
    runs = [
        (f"{user['model']}:build", user["data"], {}),
        (f"{user['model']}:normalised", user["data"], {}),
        (f"{root / 'other.py'}:build", user["data"], {}),
        (f"{user['model']}:build", "mnist-heldout", {"limit": 8}),
        (f"{user['model']}:build", "mnist-heldout", {"limit": 8, "offset": 8}),
        (f"{user['model']}:build", user["data"], {"distance": "l1"}),
    ]
    folders = []
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for model, data, options in runs:
            result = evaluate(model, data, out="auto", **dict(FAST, **options))
            folders.append(str(result.out))
        again = evaluate(runs[0][0], runs[0][1], out="auto", **FAST)
    finally:
        os.chdir(cwd)
    assert len(set(folders)) == len(folders), folders
    assert str(again.out) == folders[0] and again.summary["shards"]["computed"] == 0
    assert folders[0].startswith("evaluation/model-build-test-alma-l2-8-")
    assert folders[2].startswith("evaluation/other-build-test-alma-l2-8-")
    help_text = cli("evaluate", "--help", cwd=root).stdout
    assert "evaluation/<model>-<data>-<attack>-<steps>-<digest>" in " ".join(help_text.split())


# -- 4. interrupts ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_evaluation_says_what_is_saved_and_resumes(tmp_path, stop, code):
    """Ctrl-C (SIGINT) or SIGTERM after some shards: exit 130 / 143, one line saying how many
    shards are saved where, no traceback; the rerun loads them and computes the rest. Catches:
    a KeyboardInterrupt traceback, a half-written shard trusted by the rerun, a lost shard."""
    args = ["evaluate", "--model", "smallcnn", "--data", "mnist-heldout", "--limit", "40",
            "--batch-size", "5", "--steps", "300", "--threads", "1", "--out", "run",
            "--no-progress"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "foolbox_alma", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               preexec_fn=with_default_sigint)  # fmt: skip
    deadline = time.time() + 300
    while not (tmp_path / "run" / "shards" / "shard-000001.npz").exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    saved = sorted(p.name for p in (tmp_path / "run" / "shards").glob("shard-*.npz"))
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [
        f"foolbox-alma evaluate: interrupted: {len(saved)} of 8 shards are saved in run; rerun "
        "the same command to compute the rest"
    ]
    assert 2 <= len(saved) < 8 and not list((tmp_path / "run" / "shards").glob(".*"))
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{len(saved)} of 8 shards loaded from run, {8 - len(saved)} computed" in done.stdout


# -- 5. devices and threads -----------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_fails_for_every_model_form(user):
    """--device cuda on a machine without a GPU: an error naming it, for a zoo model, a model
    file's function and a TorchScript file. Catches: a build() model silently run on the CPU
    while summary.json says cuda."""
    torch.jit.script(user_module(user["root"]).net()).save(user["root"] / "net.pt")
    for model, extra in (("smallcnn", {}), (f"{user['model']}:build", {}),
                         (str(user["root"] / "net.pt"), {"bounds": (0, 1)})):  # fmt: skip
        with pytest.raises(ValueError, match="'cuda' asked for, but PyTorch sees no CUDA device"):
            evaluate(model, user["data"], device="cuda", **extra, **FAST)


def test_a_model_on_another_device_is_refused_and_the_device_used_recorded(user, tmp_path):
    """A model on PyTorch's meta device when the CPU is asked for: refused, naming both; a run
    on the CPU records the device and thread count it used. Catches: summary.json repeating the
    flag given instead of what ran ("torch_threads": 2 with --threads 1)."""
    import foolbox as fb

    meta = fb.PyTorchModel(torch.nn.Linear(784, 10).to("meta"), bounds=(0, 1), device="meta")
    (tmp_path / "meta_model.py").write_text(
        "import foolbox as fb, torch\n"
        "def build():\n"
        "    return fb.PyTorchModel(torch.nn.Linear(784, 10).to('meta'), (0, 1), device='meta')\n"
    )
    with pytest.raises(ValueError, match="the model is on meta but device 'cpu' was asked for"):
        parse_model_spec(f"{tmp_path}/meta_model.py:build", device="cpu").load()
    assert meta.device.type == "meta"
    result = evaluate(f"{user['model']}:build", user["data"], device="cpu", **FAST)
    execution = result.summary["execution"]
    assert execution["threads_used"] == [1] and execution["devices_used"] == ["cpu"]


# -- 6. sanity flags ----------------------------------------------------------------------------


FAILED = "attack failed at an unbounded budget"


@pytest.mark.parametrize(
    "function, flags, also",
    [
        # a random model scores other points than the attack saw: failures may follow
        ("noisy", {"stochastic model"}, {FAILED}),
        ("softmax", {"probabilities instead of logits"}, set()),
        ("training", {"stochastic model", "PyTorch model in training mode"}, {FAILED}),
        ("stepped", {"zero input gradients", FAILED}, set()),
    ],
)
def test_each_sanity_flag_is_raised_by_a_model_built_for_it(user, function, flags, also):
    """Models built to raise one flag each (a randomised defence, a softmax head, dropout in
    training mode, a quantised input): those flags (and only the failures they may cause), in
    summary.json, report.md and on the console, each with what it means and what to do.
    Catches: a flag that never fires, one that fires for the wrong reason (e.g. the training flag
    for a model in eval mode, the stochastic flag for a deterministic one)."""
    result = evaluate(f"{user['model']}:{function}", user["data"], **FAST)
    raised = {f["flag"] for f in result.summary["flags"]}
    assert flags <= raised <= flags | also
    for flag in result.summary["flags"]:
        assert flag["seen"] and flag["meaning"] and flag["advice"]
    done = cli("evaluate", "--model", f"{user['model']}:{function}", "--data", user["data"],
               "--steps", "8", "--out", "o", "--no-progress", cwd=user["root"])  # fmt: skip
    for name in flags:
        assert f"warning: {name}: " in done.stdout
        assert f"**{name}**" in (user["root"] / "o" / "report.md").read_text()


def test_no_flag_on_the_zoo_models():
    """The shipped models attacked at a budget that fools every sample: no flag. Catches: a
    stochastic test that compares across batches, a probability test that takes logits in
    [0, 1] for probabilities, a zero-gradient count that counts every ReLU network."""
    for name in ("smallcnn", "colour-cnn"):
        result = evaluate(name, f"{name}-heldout", limit=8, steps=60, threads=1, progress=False)
        assert result.asr == 1.0 and result.summary["flags"] == [], result.summary["flags"]


# -- 7. the small ones --------------------------------------------------------------------------


def test_help_has_no_markup_and_every_option_says_what_it_does(tmp_path):
    """`evaluate --help`, `bench --help`, `compare --help`: no reST markup, and every option has
    a help text. Catches: ``code`` shown literally, --batch-size without help."""
    from foolbox_alma.cli import build_parser

    parser = build_parser()
    for name in ("evaluate", "bench", "compare", "demo"):
        text = cli(name, "--help", cwd=tmp_path).stdout
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, name
        sub = parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_image_folders_name_their_files_and_take_two_sizes(tmp_path):
    """An image folder resized with --image-size H,W: samples.csv names each sample's file.
    Catches: an int-only --image-size, a samples.csv without file names."""
    from PIL import Image

    x, y = zoo.load_heldout("colour-mnist", 4)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = tmp_path / "images" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image.transpose(1, 2, 0) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    done = cli("evaluate", "--model", "colour-cnn", "--data", "images", "--image-size", "32,32",
               "--steps", "5", "--out", "o", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "o" / "samples.csv").read_text().splitlines()
    assert lines[0].startswith("index,file,label,")
    names = sorted(line.split(",")[1] for line in lines[1:])
    assert names == sorted(f"class{label}/{i}.png" for i, label in enumerate(y))
