"""The evaluation engine, in-process: per-sample results against the model and ALMA called
directly, resuming, interrupted runs, the output folder's guards, bad inputs, the CLI.

The oracles: the model itself (predictions of the returned adversarials), NumPy norms of the
perturbations, ALMA run directly on the same batches with the same derived seeds, and an
uninterrupted run of the same settings."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import foolbox as fb  # noqa: E402

from foolbox_alma import ALMA, zoo  # noqa: E402
from foolbox_alma._runtime import derived_seed, seed_framework  # noqa: E402
from foolbox_alma.evaluation import EvaluationError, evaluate  # noqa: E402

SETTINGS = dict(distance="l2", steps=12, alpha=0.5, batch_size=4, progress=False, threads=1)


def read_csv(path: Path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def heldout():
    x, y = zoo.load_mnist_heldout(10)
    return x, y


def test_results_match_the_model_and_direct_alma(heldout):
    x, y = heldout
    result = evaluate("smallcnn", (x, y), keep_adversarials=True, epsilons=[1.0, 2.0], **SETTINGS)
    fmodel = zoo.foolbox_model("pytorch")
    adv = torch.from_numpy(result.adversarials)
    predictions = fmodel(adv).argmax(-1).numpy()
    # success and predictions as the model sees the returned points
    assert np.array_equal(result.adversarial_prediction, predictions)
    assert np.array_equal(result.success, predictions != y)
    assert np.array_equal(result.clean_prediction, fmodel(torch.from_numpy(x)).argmax(-1).numpy())
    # distances: NumPy L2 norms where adversarial, inf elsewhere
    norms = np.linalg.norm((result.adversarials.astype(np.float64) - x).reshape(len(x), -1), axis=1)
    assert np.allclose(result.distance[result.success], norms[result.success], rtol=1e-12)
    assert np.all(np.isinf(result.distance[~result.success]))
    # robust accuracy by its definition
    for eps, ra in zip([1.0, 2.0], result.robust_accuracy([1.0, 2.0])):
        assert ra == pytest.approx(np.mean(np.where(result.success, norms, np.inf) > eps))
    # the same adversarials as ALMA called directly on the same batches with the same seeds
    attack = ALMA(distance="l2", steps=12, alpha=0.5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = []
        for k, lo in enumerate(range(0, len(x), 4)):
            seed_framework("pytorch", derived_seed(0, k))
            xb, yb = torch.from_numpy(x[lo : lo + 4]), torch.from_numpy(y[lo : lo + 4])
            direct.append(attack.run(fmodel, xb, fb.criteria.Misclassification(yb)).numpy())
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(np.concatenate(direct), result.adversarials)
    # counted passes: ALMA makes one forward and one backward per step and sample
    assert result.summary["backwards_per_sample"] == 12
    assert result.summary["forwards_per_sample"] == 12


def test_output_folder_and_resume(tmp_path, heldout):
    x, y = heldout
    out = tmp_path / "run"
    first = evaluate("smallcnn", (x, y), out=out, epsilons=[1.5], **SETTINGS)
    assert first.summary["shards"]["computed"] == 3
    rows = read_csv(out / "samples.csv")
    assert [r["index"] for r in rows] == [str(i) for i in range(10)]
    assert [float(r["distance"]) for r in rows] == list(first.distance)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["robust_accuracy"]["1.5"] == pytest.approx(float(np.mean(first.distance > 1.5)))
    assert summary["clean_accuracy"] == pytest.approx(float(np.mean(first.clean_prediction == y)))
    for name in ("robust_accuracy.png", "report.md", "run.json"):
        assert (out / name).stat().st_size > 0
    before = (out / "samples.csv").read_text()

    # a rerun loads everything; a missing, a damaged and a foreign shard are computed again
    again = evaluate("smallcnn", (x, y), out=out, epsilons=[1.5], **SETTINGS)
    assert again.summary["shards"]["computed"] == 0
    (out / "shards" / "shard-000000.npz").unlink()
    (out / "shards" / "shard-000001.npz").write_bytes(b"PK\x03\x04 half written")
    (out / "shards" / ".shard-000002.npz.tmp-123").write_bytes(b"left by a killed process")
    resumed = evaluate("smallcnn", (x, y), out=out, epsilons=[1.5], **SETTINGS)
    assert resumed.summary["shards"]["computed_indices"] == [0, 1]
    assert resumed.summary["shards"]["loaded_indices"] == [2]
    assert not list((out / "shards").glob(".*tmp*"))
    assert (out / "samples.csv").read_text() == before
    assert "loaded from an earlier run" in (out / "report.md").read_text()

    forced = evaluate("smallcnn", (x, y), out=out, force=True, epsilons=[1.5], **SETTINGS)
    assert forced.summary["shards"]["computed"] == 3
    assert (out / "samples.csv").read_text() == before


def test_output_folder_guards(tmp_path, heldout):
    x, y = heldout
    out = tmp_path / "run"
    evaluate("smallcnn", (x[:4], y[:4]), out=out, **SETTINGS)
    with pytest.raises(EvaluationError, match=r"different run's results \(differs in: .*steps"):
        evaluate("smallcnn", (x[:4], y[:4]), out=out, **dict(SETTINGS, steps=5))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(EvaluationError, match="not an evaluation's"):
        evaluate("smallcnn", (x[:4], y[:4]), out=foreign, force=True, **SETTINGS)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_bad_inputs(heldout, tmp_path):
    x, y = heldout
    with pytest.raises(EvaluationError, match="labels out of range"):
        evaluate("smallcnn", (x[:2], np.array([3, 10])), **SETTINGS)
    with pytest.raises(EvaluationError, match=r"model rejects inputs of shape \(1, 14, 14\)"):
        evaluate("smallcnn", (x[:2, :, ::2, ::2].copy(), y[:2]), **SETTINGS)
    with pytest.raises(EvaluationError, match="outside the model's bounds"):
        evaluate("smallcnn", (x[:2] * 255, y[:2]), **SETTINGS)
    with pytest.raises(EvaluationError, match="one label"):
        evaluate("smallcnn", (x[:3], y[:2]), **SETTINGS)
    with pytest.raises(EvaluationError, match="batch_size must be a positive integer"):
        evaluate("smallcnn", (x[:2], y[:2]), **dict(SETTINGS, batch_size=0))
    with pytest.raises(EvaluationError, match="live model object cannot be sent to Ray"):
        evaluate(zoo.foolbox_model("pytorch"), (x[:2], y[:2]), ray=True, **SETTINGS)
    x_before = x.copy()
    evaluate("smallcnn", (x[:4], y[:4]), **SETTINGS)
    assert np.array_equal(x, x_before)  # the caller's arrays are not modified


def test_targeted_and_registry_attacks(heldout):
    x, y = heldout
    result = evaluate("smallcnn", (x[:4], y[:4]), targeted=True, keep_adversarials=True, **SETTINGS)
    assert np.array_equal(result.targets, (y[:4] + 1) % 10)
    predictions = zoo.foolbox_model("pytorch")(torch.from_numpy(result.adversarials)).argmax(-1)
    assert np.array_equal(result.success, predictions.numpy() == result.targets)
    ddn = evaluate("smallcnn", (x[:4], y[:4]), attack="ddn", steps=10, batch_size=4, progress=False)
    assert ddn.summary["settings"]["attack"]["attack"] == "ddn"
    assert ddn.summary["backwards_per_sample"] == 10
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        evaluate("smallcnn", (x[:4], y[:4]), attack="nope", steps=10, progress=False)


def _cli(*args: str) -> list:
    return [sys.executable, "-m", "foolbox_alma", "evaluate", *args]


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "cli"
    args = ["--model", "smallcnn", "--data", "mnist-heldout", "--limit", "6", "--steps", "8"]
    args += ["--batch-size", "3", "--epsilons", "1,2", "--out", str(out), "--no-progress"]
    args += ["--save-adversarials", "--threads", "1"]
    done = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RA @ 1" in done.stdout and "RA @ 2" in done.stdout
    rows = read_csv(out / "samples.csv")
    with np.load(out / "adversarials.npz") as saved:
        adv = saved["adversarials"]
    x, y = zoo.load_mnist_heldout(6)
    norms = np.linalg.norm((adv.astype(np.float64) - x).reshape(6, -1), axis=1)
    got = np.array([float(r["distance"]) for r in rows])
    success = np.array([r["success"] == "True" for r in rows])
    assert np.allclose(got[success], norms[success], rtol=1e-12)
    bad = subprocess.run(
        _cli("--model", "no-such-model", "--data", "mnist-heldout", "--out", str(tmp_path / "b")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no-such-model" in bad.stderr


@pytest.mark.slow
def test_interrupted_driver_resumes_only_the_rest(tmp_path):
    """A driver killed (SIGKILL: no cleanup) after some shards: the rerun computes the others
    only, and the result equals an uninterrupted run's."""
    args = ["--model", "smallcnn", "--data", "mnist-heldout", "--limit", "16", "--steps", "40"]
    args += ["--alpha", "0.5"]
    args += ["--batch-size", "2", "--threads", "1", "--no-progress", "--out"]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _cli(*args, str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(list((killed / "shards").glob("shard-*.npz"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(p.name for p in (killed / "shards").glob("shard-*.npz"))
    assert 2 <= len(saved) < 8, saved
    assert not (killed / "samples.csv").exists()

    x, y = zoo.load_mnist_heldout(16)
    settings = dict(SETTINGS, steps=40, batch_size=2)
    resumed = evaluate("smallcnn", "mnist-heldout", limit=16, out=killed, **settings)
    computed = resumed.summary["shards"]["computed_indices"]
    assert sorted(computed + resumed.summary["shards"]["loaded_indices"]) == list(range(8))
    assert [f"shard-{i:06d}.npz" for i in resumed.summary["shards"]["loaded_indices"]] == saved
    whole = evaluate("smallcnn", "mnist-heldout", limit=16, out=tmp_path / "whole", **settings)
    assert (killed / "samples.csv").read_text() == (tmp_path / "whole" / "samples.csv").read_text()
    assert math.isfinite(whole.summary["seconds"]["wall"])
    assert os.path.exists(killed / "report.md")


def test_cli_takes_auto_or_a_number_as_first_step(capsys):
    """``--init-lr-distance`` accepts ALMA's ``auto`` as well as numbers, and names both on a
    typo. Catches a parser that only reads floats (``auto`` rejected)."""
    from foolbox_alma.cli import build_parser

    def parsed(value):
        args = ["evaluate", "--model", "smallcnn", "--data", "mnist-heldout"]
        args += ["--init-lr-distance", value]
        return build_parser().parse_args(args).init_lr_distance

    assert parsed("auto") == "auto"
    assert parsed("0.5") == 0.5
    with pytest.raises(SystemExit):
        parsed("fast")
    assert "expected 'auto' or a number" in capsys.readouterr().err


def test_the_plot_title_fits_in_the_figure(tmp_path):
    """A long run title (a model path, the data's name) is wrapped inside the figure. Catches: the
    README's robust-accuracy figure with 'mnist-heldout' cut off at the right edge."""
    from foolbox_alma.pipeline.result import EvaluationResult

    n = 5
    result = EvaluationResult(indices=np.arange(n), labels=np.zeros(n, np.int64), targets=None,
                              clean_prediction=np.zeros(n, np.int64),
                              adversarial_prediction=np.ones(n, np.int64),
                              success=np.ones(n, bool), distance=np.linspace(0.5, 2.5, n),
                              shard=np.zeros(n, np.int64), epsilons=[1.0])  # fmt: skip
    result.summary = {"distance": "l2", "title": "ALMA L2, 100 steps, on "
                      "examples/models/mnist_net.py:build, 1000 samples of mnist-heldout"}  # fmt: skip
    figure = result.plot()
    figure.canvas.draw()
    title = figure.axes[0].title
    box = title.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= figure.bbox.x1, (box, figure.bbox)
    assert "mnist-heldout" in title.get_text()
