"""The evaluation engine on Ray (a local instance on this machine only; tox env ``ray``).

Oracles: an in-process run of the same settings (per-sample results must be identical, byte for
byte in samples.csv), and the same comparison when a worker process dies in the middle of a shard
(fault injected by the model, see tests/evaluate_fixtures/dying.py)."""

import os
from pathlib import Path

import pytest
from helpers import with_default_sigint

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

from foolbox_alma.evaluation import evaluate  # noqa: E402

FIXTURES = Path(__file__).parent / "evaluate_fixtures"
SETTINGS = dict(
    data="mnist-heldout",
    limit=16,
    distance="l2",
    steps=15,
    alpha=0.5,
    batch_size=4,
    threads=1,
    epsilons=[1.0, 2.0],
    progress=False,
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance (never another address) for the module, shut down afterwards."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["FOOLBOX_ALMA_TEST_DIE_MARKER"] = "/nonexistent/unused"
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process")
    evaluate("smallcnn", out=out, **SETTINGS)
    return (out / "samples.csv").read_text()


def test_ray_run_equals_in_process_run(tmp_path, in_process):
    result = evaluate("smallcnn", out=tmp_path, ray=True, workers=2, **SETTINGS)
    assert result.summary["execution"]["backend"] == "ray"
    assert result.summary["shards"]["computed_indices"] == [0, 1, 2, 3]
    assert (tmp_path / "samples.csv").read_text() == in_process
    assert result.summary["execution"]["ray_startup_seconds"] > 0


def test_worker_killed_during_a_shard(tmp_path, in_process):
    marker = tmp_path / "died"
    os.environ["FOOLBOX_ALMA_TEST_DIE_MARKER"] = str(marker)
    spec = f"{FIXTURES / 'dying.py'}:smallcnn_that_dies_once"
    try:
        evaluate(spec, out=tmp_path / "run", ray=True, workers=2, **SETTINGS)
    finally:
        os.environ["FOOLBOX_ALMA_TEST_DIE_MARKER"] = "/nonexistent/unused"
    assert marker.exists()  # a worker did die
    assert int(marker.read_text()) != os.getpid()
    assert (tmp_path / "run" / "samples.csv").read_text() == in_process


def test_ray_example(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples" / "evaluate_ray.py"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--images",
            "8",
            "--steps",
            "10",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "in-process and Ray runs identical: True" in done.stdout, done.stdout


@pytest.mark.slow
def test_ctrl_c_on_ray_cancels_the_tasks_and_stops_the_local_instance(tmp_path):
    """SIGINT to an evaluation running on a local Ray instance: exit 130 with one line (shards
    saved, rerun to resume), no traceback, and no Ray process of its own left behind. Catches:
    the driver's KeyboardInterrupt traceback, tasks left running, a local instance left up."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    args = ["evaluate", "--model", "smallcnn", "--data", "mnist-heldout", "--limit", "32",
            "--batch-size", "4", "--steps", "400", "--ray", "--workers", "1", "--out", "run",
            "--no-progress"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(root), RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen([sys.executable, "-m", "foolbox_alma", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=with_default_sigint)  # fmt: skip
    deadline = time.time() + 300
    while not (tmp_path / "run" / "shards" / "shard-000000.npz").exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    line = [s for s in stderr.splitlines() if s.startswith("foolbox-alma evaluate:")]
    assert len(line) == 1 and "shards are saved in run; rerun the same command" in line[0]
    time.sleep(3)
    leftover = subprocess.run(["pgrep", "-f", f"raylet.*{process.pid}|session_.*{process.pid}"],
                              capture_output=True, text=True)  # fmt: skip
    assert not leftover.stdout.strip(), leftover.stdout
