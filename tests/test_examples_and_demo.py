"""The examples run and print what they found; the demo runs end to end and writes its PNG."""

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import available

ROOT = Path(__file__).resolve().parents[1]


def run_demo(args, png: Path) -> "subprocess.CompletedProcess[str]":
    """``python -m foolbox_alma demo ARGS --output PNG --no-progress`` in a fresh process."""
    command = [sys.executable, "-m", "foolbox_alma", "demo", *args, "--output", str(png)]
    return subprocess.run([*command, "--no-progress"], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "script, framework",
    [
        ("pytorch_example.py", "pytorch"),
        ("tensorflow_example.py", "tensorflow"),
        ("jax_example.py", "jax"),
    ],
)
def test_example_runs(script, framework):
    if not available(framework):
        pytest.skip(f"{framework} is not installed")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "success 100%" in out.stdout, out.stdout


def test_demo_end_to_end(tmp_path):
    if not available("pytorch"):
        pytest.skip("the demo runs the PyTorch model")
    png = tmp_path / "demo.png"
    out = run_demo(["--images", "6", "--steps", "20"], png)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ALMA")]
    assert [row.split("|")[1].strip() for row in rows] == ["ALMA L2 20", "ALMA L1 20"]
    for row in rows:
        fwd_bwd = row.split("|")[4].strip()
        assert fwd_bwd == "20 / 20"  # counted with hooks: one forward and backward per step
    from matplotlib.image import imread

    image = imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 200


def test_demo_rejects_bad_flags():
    out = subprocess.run(
        [sys.executable, "-m", "foolbox_alma", "demo", "--images", "0", "--output", ""],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--images must be between 1 and 1000" in out.stderr


def test_evaluate_example_runs_and_resumes(tmp_path):
    if not available("pytorch"):
        pytest.skip("the example's model is a PyTorch file")
    command = [sys.executable, str(ROOT / "examples" / "evaluate_pytorch_model.py")]
    command += ["--images", "8", "--steps", "10", "--out", str(tmp_path / "ev")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 shards computed, 0 loaded" in first.stdout, first.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert "0 shards computed, 1 loaded" in again.stdout, again.stdout
    assert (tmp_path / "ev" / "robust_accuracy.png").stat().st_size > 1000


def test_version_is_read_from_one_place():
    import importlib.metadata
    import re

    import foolbox_alma

    text = (ROOT / "foolbox_alma" / "_version.py").read_text()
    written = re.search(r'__version__ = "([^"]+)"', text).group(1)
    assert foolbox_alma.__version__ == written
    assert importlib.metadata.version("foolbox-alma") == written
    out = subprocess.run(
        [sys.executable, "-m", "foolbox_alma", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"foolbox-alma {written}"
    assert f"## {written} " in (ROOT / "CHANGELOG.md").read_text()


def test_demo_with_a_perceptual_distance_on_the_colour_model(tmp_path):
    """``demo --model colour-cnn --distance ciede2000``: the distances it prints are CIEDE2000
    (colour-science's, computed here independently on the adversarials it returns)."""
    if not available("pytorch"):
        pytest.skip("the demo runs the PyTorch model")
    colour = pytest.importorskip("colour")
    import numpy as np

    from foolbox_alma.compare import run_alma

    run = run_alma("pytorch", "colour-cnn", "ciede2000", steps=10, images=3)
    from foolbox_alma import zoo

    x, _ = zoo.load_heldout("colour-cnn", 3)
    for i in range(3):
        lab = [
            colour.XYZ_to_Lab(colour.sRGB_to_XYZ(image.transpose(1, 2, 0).astype(np.float64)))
            for image in (x[i], run.adversarials[i])
        ]
        expected = np.sqrt((colour.delta_E(lab[0], lab[1], method="CIE 2000") ** 2).sum())
        assert run.distances[i] == pytest.approx(expected, rel=1e-4)
    png = tmp_path / "demo.png"
    args = ["--model", "colour-cnn", "--distance", "ciede2000", "--images", "3", "--steps", "5"]
    out = run_demo(args, png)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| ALMA CIEDE2000 5 |" in out.stdout
    assert png.stat().st_size > 1000
