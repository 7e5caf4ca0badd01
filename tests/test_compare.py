"""ALMA gives the same results in every framework; ``foolbox-alma compare`` and the demo's flags.

Oracles: PyTorch, the reference implementation for the other two frameworks, live where it is
installed next to them (``crossframework``, tox env ``all``), and otherwise its results stored by
``scripts/make_reference_alma.py`` (in the PyTorch env that check is a regression test only);
hand-made runs with known differences for the comparison arithmetic.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
from helpers import FRAMEWORKS, Framework, available

from foolbox_alma import zoo
from foolbox_alma.compare import (
    AttackRun,
    Comparison,
    compare_frameworks,
    disagreement,
    format_table,
    parse_frameworks,
    run_alma,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "alma_reference_pytorch.json"
MEDIAN_RTOL = 0.01
CLI_FLAG = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}


def reference_cases() -> List[Dict[str, Any]]:
    return json.loads(REFERENCE.read_text())["cases"]


def case_id(case: Dict[str, Any]) -> str:
    return f"{case['model']}-{case['distance']}"


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "foolbox_alma", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def table_rows(stdout: str) -> List[List[str]]:
    rows = [line for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


# --- the comparison arithmetic (no framework) ----------------------------------------------------


def fake_run(framework: str, distances: List[float], success: List[bool], shift: float = 0.0):
    n = len(distances)
    adversarials = np.zeros((n, 1, 28, 28), np.float32)
    adversarials[:, 0, 0, 0] = shift
    return AttackRun(
        framework=framework,
        model="smallcnn",
        distance="l2",
        steps=10,
        alpha=0.5,
        data_format="channels_first",
        labels=np.zeros(n, np.int64),
        success=np.array(success),
        distances=np.array(distances, np.float64),
        adversarials=adversarials,
        predictions=np.ones(n, np.int64),
        clean_accuracy=1.0,
        forwards=10.0,
        backwards=10.0,
        seconds=1.0,
    )


def test_disagreement_of_known_runs() -> None:
    reference = fake_run("pytorch", [1.0, 2.0, 3.0, 4.0], [True, True, True, True])
    other = fake_run("jax", [1.0, 2.5, 3.0, 9.0], [True, True, True, False], shift=0.25)
    d = disagreement(other, reference)
    assert d.success_differs == 1
    # the largest gap among samples adversarial in both runs: image 1 (image 3 failed in jax)
    assert (d.max_distance, d.max_distance_index) == (0.5, 1)
    assert d.max_adversarial == pytest.approx(0.25)
    # medians 2.5 (pytorch) and (2.5 + 3) / 2 = 2.75
    assert d.median_relative == pytest.approx(0.1)

    comparison = Comparison([reference, other])
    assert not comparison.medians_agree
    table = format_table(comparison)
    assert "| jax | channels-first | 75.00 | 2.75 | 10 / 10 | 1.0 |" in table
    assert "Medians DISAGREE within 1%" in table
    assert Comparison([reference, fake_run("tf", [1.0, 2.0, 3.0, 4.01], [True] * 4)]).medians_agree


def test_table_names_models_when_not_only_the_zoo() -> None:
    # rows of model specs are "spec (framework)": the first column is then a model, not a
    # framework (a zoo model among them is named the same way)
    zoo_run = fake_run("pytorch", [1.0, 2.0], [True, True])
    torch_file = fake_run("pytorch", [1.0, 2.0], [True, True])
    torch_file.model = "net.py:build"
    keras_file = fake_run("tensorflow", [1.0, 2.0], [True, True])
    keras_file.model = "net.keras"
    table = format_table(Comparison([torch_file, keras_file]))
    assert table.startswith("| model | layout |")
    assert "| net.keras (tensorflow) | channels-first |" in table
    assert "Largest per-sample disagreement with net.py:build (pytorch)" in table
    mixed = format_table(Comparison([zoo_run, keras_file]))
    assert mixed.startswith("| model | layout |") and "| smallcnn (pytorch) |" in mixed
    assert format_table(Comparison([zoo_run])).startswith("| framework | layout |")
    assert format_table(Comparison([keras_file])).endswith("only one model: nothing to compare")


def test_parse_frameworks_aliases_and_errors() -> None:
    installed = [f for f in FRAMEWORKS if available(f)]
    assert parse_frameworks(None) == installed
    if available("pytorch"):
        assert parse_frameworks(["torch", "pytorch"]) == ["pytorch"]
    with pytest.raises(ValueError, match="unknown framework 'mxnet'"):
        parse_frameworks(["mxnet"])
    missing = [f for f in FRAMEWORKS if not available(f)]
    if missing:
        with pytest.raises(ImportError, match="not installed"):
            parse_frameworks(missing)


# --- each framework against the stored PyTorch results ------------------------------------------


def test_reference_belongs_to_shipped_weights() -> None:
    record = json.loads(REFERENCE.read_text())
    assert record["made_by"] == "scripts/make_reference_alma.py"
    for case in record["cases"]:
        assert case["weights_sha256"] == zoo.weights_sha256(zoo.load_weights(case["model"])), (
            f"{case['model']} weights changed: rerun scripts/make_reference_alma.py"
        )
        assert len(case["distances"]) == case["images"]


@pytest.mark.parametrize("case", reference_cases(), ids=case_id)
def test_alma_median_matches_pytorch_reference(fw: Framework, case: Dict[str, Any]) -> None:
    run = run_alma(
        fw.name,
        case["model"],
        case["distance"],
        case["steps"],
        case["images"],
        alpha=case["alpha"],
        seed=case["seed"],
    )
    assert run.forwards == run.backwards == case["steps"]
    np.testing.assert_array_equal(run.success, case["success"])
    assert run.median == pytest.approx(case["median"], rel=MEDIAN_RTOL)


# --- the frameworks side by side ----------------------------------------------------------------


@pytest.mark.crossframework
@pytest.mark.parametrize(
    "model",
    # the ResNet-18 costs minutes here (16 images x 50 steps x 3 frameworks on 2 CPU cores); the
    # ResNet-50 would cost an hour: tests/test_zoo_resnet50.py compares its logits and gradients
    [
        pytest.param(m, marks=pytest.mark.slow) if m == "resnet18-cifar" else m
        for m in zoo.ARCHITECTURES
        if m != "resnet50-imagenet"
    ],
)
def test_frameworks_agree_live(model: str) -> None:
    installed = [f for f in FRAMEWORKS if available(f)]
    if len(installed) < 2:
        pytest.skip("needs two frameworks or more")
    comparison = compare_frameworks(model, "l2", steps=50, images=16)
    assert [r.framework for r in comparison.runs] == installed
    assert comparison.medians_agree, format_table(comparison)
    for d in comparison.disagreements:
        assert d.success_differs == 0
        assert d.median_relative <= MEDIAN_RTOL
    for run in comparison.runs:
        assert run.forwards == run.backwards == 50


@pytest.mark.crossframework
def test_compare_cli_all_frameworks() -> None:
    installed = [f for f in FRAMEWORKS if available(f)]
    if len(installed) < 2:
        pytest.skip("needs two frameworks or more")
    out = run_cli("compare", "--images", "4", "--steps", "10", "--model", "smallcnn-robust")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = table_rows(out.stdout)
    assert [row[0] for row in rows] == installed
    assert all(row[4] == "10 / 10" for row in rows)
    assert "Largest per-sample disagreement with pytorch" in out.stdout
    assert "Medians agree within 1%." in out.stdout


@pytest.mark.crossframework
def test_cross_framework_example_runs() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "cross_framework.py"),
            "--images",
            "4",
            "--steps",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| framework |" in out.stdout and "Medians agree" in out.stdout


# --- the command lines, one framework -----------------------------------------------------------


def test_compare_cli_one_framework(fw: Framework) -> None:
    out = run_cli(
        "compare", "--images", "3", "--steps", "10", "--distance", "l1", "--frameworks",
        CLI_FLAG[fw.name],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ALMA L1, 10 steps (alpha 0.5) on smallcnn, 3 held-out")
    rows = table_rows(out.stdout)
    assert len(rows) == 1 and rows[0][0] == fw.name and rows[0][4] == "10 / 10"
    assert "only one framework" in out.stdout


def test_compare_cli_rejects_bad_flags() -> None:
    out = run_cli("compare", "--frameworks", "mxnet", "--images", "2")
    assert out.returncode == 2 and "unknown framework 'mxnet'" in out.stderr
    out = run_cli("compare", "--images", "0")
    assert out.returncode == 2 and "--images must be between 1 and 1000" in out.stderr
    out = run_cli(
        "compare", "--model", "tests/evaluate_fixtures/loader_models.py:torch_model", "--data",
        "mnist-heldout", "--images", "0",
    )  # fmt: skip
    assert out.returncode == 2 and "--images must be at least 1, got 0" in out.stderr
    out = run_cli("compare", "--model", "resnet50")  # any model spec is taken: this is none
    assert (
        out.returncode == 2 and "unknown model spec 'resnet50'; accepted: a zoo name" in out.stderr
    )
    out = run_cli("compare", "--model", "smallcnn", "--model", "tests/evaluate_fixtures/x.py:f")
    assert (
        out.returncode == 2 and "Python file 'tests/evaluate_fixtures/x.py' not found" in out.stderr
    )


def test_demo_framework_and_model_flags(fw: Framework, tmp_path: Path) -> None:
    png = tmp_path / "demo.png"
    out = run_cli(
        "demo", "--framework", CLI_FLAG[fw.name], "--model", "smallcnn-robust", "--images", "4",
        "--steps", "10", "--distance", "l2", "--output", str(png), "--no-progress",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith(f"MNIST smallcnn-robust ({fw.name}), 4 held-out images")
    rows = table_rows(out.stdout)
    assert [row[0] for row in rows] == ["ALMA L2 10"]
    assert rows[0][3] == "10 / 10"  # counted: hooks on PyTorch, a counting wrapper elsewhere
    assert png.stat().st_size > 10_000
