"""The demo's figure: gray MNIST as before, colour images as RGB with visible perturbations.

Oracles: the arrays handed to matplotlib against the images and closed-form rescalings of the
perturbations; the demo end to end on a colour model (the PNG has colour pixels).
"""

import subprocess
import sys
from typing import Any, List

import numpy as np
import pytest
from helpers import available

from foolbox_alma import demo, zoo
from foolbox_alma.compare import AttackRun


def fake_run(x: np.ndarray, delta: np.ndarray) -> AttackRun:
    n = len(x)
    return AttackRun(
        framework="pytorch",
        model="colour-cnn" if x.shape[1] == 3 else "smallcnn",
        distance="l2",
        steps=1,
        alpha=0.5,
        data_format="channels_first",
        labels=np.zeros(n, np.int64),
        success=np.ones(n, bool),
        distances=np.linalg.norm(delta.reshape(n, -1), axis=1),
        adversarials=(x + delta).astype(np.float32),
        predictions=np.ones(n, np.int64),
        clean_accuracy=1.0,
        forwards=1.0,
        backwards=1.0,
        seconds=0.0,
    )


def drawn_figure(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, x: np.ndarray, run: AttackRun):
    from matplotlib.figure import Figure

    figures: List[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> None:
        figures.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    demo.plot(x, np.zeros(len(x), np.int64), [run], str(tmp_path / "plot.png"), columns=3)
    assert (tmp_path / "plot.png").stat().st_size > 0
    axes = np.array(figures[0].axes).reshape(3, 3)  # original, adversarial, perturbation rows
    return [[np.asarray(ax.images[0].get_array()) for ax in row] for row in axes], axes


def test_colour_images_drawn_as_rgb_and_perturbations_centred(monkeypatch, tmp_path) -> None:
    x, _ = zoo.load_heldout("colour-cnn", n=3)
    delta = np.random.default_rng(0).uniform(-0.02, 0.02, x.shape).astype(np.float32)
    delta[:, 1] *= 0.1  # unequal channels: each image's scale is its largest change
    run = fake_run(x, delta)
    arrays, _ = drawn_figure(monkeypatch, tmp_path, x, run)
    for c in range(3):
        np.testing.assert_allclose(arrays[0][c], x[c].transpose(1, 2, 0))
        np.testing.assert_allclose(
            arrays[1][c], np.clip(run.adversarials[c].transpose(1, 2, 0), 0, 1)
        )
        shown_delta = run.adversarials[c] - x[c]
        expected = 0.5 + 0.5 * shown_delta.transpose(1, 2, 0) / np.abs(shown_delta).max()
        np.testing.assert_allclose(arrays[2][c], expected, atol=1e-6)
        assert arrays[2][c].min() >= 0 and arrays[2][c].max() <= 1
        assert np.isclose(np.abs(arrays[2][c] - 0.5).max(), 0.5)  # amplified to full range


def test_gray_images_unchanged(monkeypatch, tmp_path) -> None:
    x, _ = zoo.load_mnist_heldout(n=3)
    delta = np.random.default_rng(1).uniform(-0.1, 0.1, x.shape).astype(np.float32)
    run = fake_run(x, delta)
    arrays, axes = drawn_figure(monkeypatch, tmp_path, x, run)
    for c in range(3):
        np.testing.assert_array_equal(arrays[0][c], x[c, 0])
        np.testing.assert_allclose(arrays[2][c], run.adversarials[c, 0] - x[c, 0])
        image = axes[2, c].images[0]
        bound = np.abs(arrays[2][c]).max()
        assert image.get_cmap().name == "seismic"
        assert np.allclose(image.get_clim(), (-bound, bound))


def test_demo_on_a_colour_model(tmp_path) -> None:
    if not available("pytorch"):
        pytest.skip("the demo runs the PyTorch model")
    png = tmp_path / "demo.png"
    out = subprocess.run(
        [sys.executable, "-m", "foolbox_alma", "demo", "--model", "colour-cnn", "--images", "4"]
        + ["--steps", "10", "--distance", "l2", "--output", str(png), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "colour-MNIST colour-cnn (pytorch), 4 held-out images" in out.stdout
    from matplotlib.image import imread

    image = imread(png)[..., :3]
    assert image.shape[0] > 150
    assert (np.ptp(image, axis=-1) > 0.2).mean() > 0.05  # plenty of coloured pixels
