"""The benchmark: its metrics against closed forms, pass counting against known call counts on
each backend (eagerly and inside compiled code), and the command line end to end."""

import json
import math
from pathlib import Path

import eagerpy as ep
import numpy as np
import pytest
from helpers import FRAMEWORKS, Framework, available

from foolbox_alma import ALMA, metrics, registry
from foolbox_alma.alma import default_alpha
from foolbox_alma.bench import run_benchmark
from foolbox_alma.cli import main as cli_main
from foolbox_alma.counting import CountingModel, counted_model

# -- metrics: closed forms --------------------------------------------------------------------


def test_median_counts_failures_as_infinite():
    d = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.median_distance(d, [True] * 4) == 2.5
    assert metrics.median_distance(d, [True, True, True, False]) == 2.5  # 1, 2, 3, inf
    assert metrics.median_distance(d, [True, True, False, False]) == math.inf  # ASR 50%, even n
    assert metrics.median_distance([1.0, 2.0, 3.0], [True, True, False]) == 2.0  # 1, 2, inf
    assert metrics.median_distance([1.0, 2.0, 3.0], [True, False, False]) == math.inf
    assert metrics.format_median(math.inf) == "-"
    assert math.isnan(metrics.median_distance([], []))


def test_robust_accuracy_is_the_share_farther_than_epsilon():
    d = np.array([0.0, 1.0, 2.0, np.inf])
    ra = metrics.robust_accuracy(d, [0.0, 0.5, 1.0, 1.5, 2.0, 1e9])
    np.testing.assert_allclose(ra, [0.75, 0.75, 0.5, 0.5, 0.25, 0.25])


def test_area_is_the_mean_of_clipped_distances():
    d = np.array([0.5, 1.0, 3.0, np.inf])
    grid = np.linspace(0, 2, 200001)
    ra = metrics.robust_accuracy(d, grid)
    numeric = np.sum((ra[1:] + ra[:-1]) / 2 * np.diff(grid))  # trapezoidal rule
    assert metrics.area_under_robust_accuracy(d, 2.0) == pytest.approx(numeric, abs=1e-4)
    assert metrics.area_under_robust_accuracy(d, 2.0) == pytest.approx((0.5 + 1 + 2 + 2) / 4)


def test_optimality_of_the_best_attack_is_one():
    rng = np.random.default_rng(0)
    best = rng.uniform(0.1, 3.0, size=100)
    worse = best * rng.uniform(1.0, 2.0, size=100)
    combined = metrics.best_distances([best, worse])
    np.testing.assert_array_equal(combined, best)
    assert metrics.optimality(best, combined, clean_accuracy=1.0) == pytest.approx(1.0)
    assert metrics.optimality(worse, combined, clean_accuracy=1.0) < 1.0


@pytest.mark.parametrize("factor", [1.0, 1.25, 2.0, 4.0])
def test_optimality_of_distances_scaled_by_c_is_one_over_c(factor):
    """Best distances spread uniformly over (0, 1]: A(best) = 1/2 and, for c >= 1,
    A(c * best) = 1 - 1/(2c), so optimality = (1 - A(c best)) / (1 - A(best)) = 1/c (up to 1/n)."""
    n = 100_000
    best = (np.arange(n) + 0.5) / n
    value = metrics.optimality(factor * best, best, clean_accuracy=1.0)
    assert value == pytest.approx(1 / factor, abs=1e-4)


def test_optimality_with_failures_and_misclassified_inputs():
    """Half the inputs misclassified (distance 0); the attack fails on the others: optimality 0.
    An attack that finds the best on half of the robust inputs and fails on the rest: the
    area ratio is computed by hand."""
    best = np.array([0.0, 0.0, 1.0, 2.0])
    clean_accuracy = 0.5
    nothing = np.array([0.0, 0.0, np.inf, np.inf])
    assert metrics.optimality(nothing, best, clean_accuracy) == pytest.approx(0.0)
    half = np.array([0.0, 0.0, 1.0, np.inf])
    # eps_max = 2 (the largest finite best): the failure is clipped to 2 like the best's 2, so
    # over [0, 2] both curves enclose the same area: A_worst = 1, A = (1 + 2) / 4.
    assert metrics.optimality(half, best, clean_accuracy) == pytest.approx(1.0)
    assert metrics.optimality(half, best, clean_accuracy, eps_max=3.0) == pytest.approx(
        (1.5 - (1 + 3) / 4) / (1.5 - (1 + 2) / 4)
    )
    assert math.isnan(metrics.optimality(nothing, nothing, clean_accuracy))


# -- counting: known numbers of calls, eager and compiled -------------------------------------


def _tiny_model(fw: Framework):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(10, 12)).astype(np.float32)
    bias = rng.normal(size=10).astype(np.float32)
    x = rng.uniform(0, 1, size=(6, 12)).astype(np.float32)
    return fw.linear_model(weight, bias), fw.tensor(x), fw.tensor(np.arange(6) % 10)


def _gradient(model, x):
    def loss(inputs):
        return model(inputs).sum()

    return ep.value_and_grad(loss, ep.astensor(x))[1]


def _compiled_gradient(fw: Framework, model):
    """The gradient as the framework compiles it (plain function on PyTorch)."""
    raw = lambda x: _gradient(model, x).raw  # noqa: E731
    if fw.name == "tensorflow":
        import tensorflow as tf

        return tf.function(raw)
    if fw.name == "jax":
        import jax

        return jax.jit(raw)
    return raw


def test_counting_model_counts_eager_and_compiled_passes(fw):
    fmodel, x, _ = _tiny_model(fw)
    counted = CountingModel(fmodel)
    for _ in range(3):
        counted(x)
    for _ in range(2):
        _gradient(counted, x)
    compiled = _compiled_gradient(fw, counted)
    for _ in range(4):  # traced once, run four times: counted four times
        compiled(x)
    assert counted.counter.per_sample(len(x)) == (3 + 2 + 4, 2 + 4)
    counted.reset()
    assert counted.counter.per_sample(len(x)) == (0, 0)


def test_alma_makes_one_forward_and_one_backward_per_step(fw):
    fmodel, x, y = _tiny_model(fw)
    with counted_model(fmodel) as (model, module, counting):
        ALMA(steps=7).run(model, x, y)
    assert counting.counter.per_sample(len(x)) == (7, 7)


def test_torch_hooks_count_direct_module_calls():
    torch = pytest.importorskip("torch")
    fmodel, x, _ = _tiny_model(Framework("pytorch"))
    with counted_model(fmodel) as (model, module, counting):
        assert model is fmodel and isinstance(module, torch.nn.Module)
        module(x)  # a direct call, as adv_lib's attacks make
        xg = x.clone().requires_grad_()
        module(xg).sum().backward()
    assert counting.counter.per_sample(len(x)) == (2, 1)


def test_run_benchmark_on_any_foolbox_model(fw):
    fmodel, x, y = _tiny_model(fw)
    y = ep.astensor(fmodel(x)).argmax(axis=-1).raw  # all correctly classified
    run = run_benchmark(fmodel, x, y, attacks=["alma-l2", "fmn-l2"], steps=5, progress=False)
    assert run.clean_accuracy == 1.0
    assert [r.key for r in run.results] == ["alma-l2@5", "fmn-l2@5"]
    for r in run.results:
        assert (r.forwards, r.backwards) == (5, 5)
        assert r.seconds > 0 and r.floor_seconds > 0
        # PyTorch: one plain pass between consecutive steps, not counted as the attack's;
        # elsewhere 2 before and 2 after the batch
        assert r.floor_passes_timed == (5 if fw.name == "pytorch" else 4)
        assert len(r.distances) == len(x) and len(r.batches) == 1
    # each attack is measured against the per-sample best of both, as AttackBench defines it:
    # the oracle integrates the robust-accuracy curves numerically
    best = np.minimum(*(r.distances_with_failures for r in run.results))
    np.testing.assert_array_equal(run.best_distances("l2"), best)
    for r in run.results:
        expected = _optimality_by_integration(r.distances_with_failures, best, run.clean_accuracy)
        assert run.optimality(r) == pytest.approx(expected, abs=2e-3)


def _optimality_by_integration(distances, best, clean_accuracy, points=200_001):
    """AttackBench's optimality by numerical integration of the robust-accuracy curves on a fine
    grid of [0, eps_max] (the code under test integrates the step functions exactly)."""
    eps_max = best[np.isfinite(best)].max()
    grid = np.linspace(0, eps_max, points)

    integrate = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 / NumPy 1

    def area(d):
        return integrate((np.asarray(d)[None, :] > grid[:, None]).mean(axis=1), grid)

    worst = clean_accuracy * eps_max
    return (worst - area(distances)) / (worst - area(best))


def test_optimality_ranks_a_dominated_attack_below_the_best():
    """Two attacks where one is farther on every sample: the closer one has optimality 1, the
    farther one the closed form of scaled distances (1 / c for distances spread uniformly over
    (0, eps_max], best scaled by c); a failure counts as +inf. Catches: an optimality that is 1
    for everyone, one that ignores failures, one integrated over the wrong range."""
    best = np.linspace(0.01, 1.0, 100)
    farther = 2.0 * best
    assert metrics.optimality(best, best, 1.0) == pytest.approx(1.0)
    assert metrics.optimality(farther, best, 1.0) == pytest.approx(
        _optimality_by_integration(farther, best, 1.0), abs=1e-3
    )
    assert metrics.optimality(farther, best, 1.0) == pytest.approx(0.5, abs=0.01)
    failed = np.where(np.arange(100) % 2 == 0, np.inf, best)
    assert metrics.optimality(failed, best, 1.0) == pytest.approx(
        _optimality_by_integration(failed, best, 1.0), abs=1e-3
    )


def test_plain_passes_calibrate_the_timing(fw):
    """The calibration row runs the floor's own passes: counted like an attack's, nothing found.
    Repeated, it reports the median ratio and the first run's counts."""
    fmodel, x, _ = _tiny_model(fw)
    y = ep.astensor(fmodel(x)).argmax(axis=-1).raw
    run = run_benchmark(fmodel, x, y, attacks=["plain"], steps=4, repeats=3, progress=False)
    (r,) = run.results
    assert (r.forwards, r.backwards) == (4, 4) and r.asr == 0.0
    assert len(r.repeat_ratios) == 3 and r.overhead == np.median(r.repeat_ratios)
    assert 0 < r.overhead < math.inf and math.isnan(run.optimality(r))  # TF/JAX: compiling


def test_no_floor_leaves_the_time_ratio_out(fw):
    fmodel, x, y = _tiny_model(fw)
    run = run_benchmark(fmodel, x, y, attacks=["alma-l2"], steps=3, floor_passes=0, progress=False)
    (r,) = run.results
    assert r.floor_passes_timed == 0 and math.isnan(r.overhead) and r.backwards == 3


# -- registry ---------------------------------------------------------------------------------


def test_registry_selects_groups_and_rejects_unknown_names():
    names = [s.name for s in registry.select(["l1"], "tensorflow")]
    assert names == ["alma-l1", "fmn-l1", "ead"]
    with pytest.raises(ValueError, match="unknown attack"):
        registry.select(["nope"], "pytorch")
    with pytest.raises(ValueError, match="pytorch only"):
        registry.select(["adv_lib-alma-l2"], "jax")
    assert registry.ATTACKS["cw-l2"].budget(100) == "9x100"
    assert default_alpha(100) == 0.5 and default_alpha(1000) == 0.9


# -- the command line, end to end -------------------------------------------------------------


def _with_failures(result):
    return np.where(result["success"], result["distances"], np.inf)


def _parse_table(text):
    rows = [line for line in text.strip().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    header, separator, body = cells[0], cells[1], cells[2:]
    assert all(set(c) <= {"-"} for c in separator)
    assert all(len(row) == len(header) for row in body)
    return [dict(zip(header, row)) for row in body]


def test_cli_end_to_end(fw, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["bench", "--framework", fw.name, "--images", "4", "--steps", "10"]
    argv += ["--attacks", "alma-l2,ddn", "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    for name in ("table.md", "results.json", "robust_accuracy.png", "report.md"):
        assert (out / name).stat().st_size > 0
    rows = _parse_table((out / "table.md").read_text())
    assert [(r["Attack"], r["Budget"]) for r in rows] == [("ALMA", "10"), ("DDN", "10")]
    record = json.loads((out / "results.json").read_text())
    assert len(record["results"]) == 2 and len(record["labels"]) == 4
    # the table says what the per-image results say: ASR, median with failures as +inf and
    # the optimality against the per-image best (oracle: the numerical integral); an attack
    # that returned its inputs would show 0% and "-", distances of 0
    best = np.minimum(*(_with_failures(r) for r in record["results"]))
    for row, result in zip(rows, record["results"]):
        success = np.asarray(result["success"])
        assert float(row["ASR (%)"]) == pytest.approx(100 * success.mean())
        assert (np.asarray(result["distances"])[success] > 0).all()
        assert row["Median"] == metrics.format_median(
            metrics.median_distance(result["distances"], success)
        )
        assert (float(row["Forwards"]), float(row["Backwards"])) == (10, 10)
        assert float(row["Time / fwd+bwd"]) > 0
        integral = _optimality_by_integration(
            _with_failures(result), best, record["clean_accuracy"]
        )
        assert float(row["Optimality"]) == pytest.approx(integral, abs=2e-3)
    assert float(rows[0]["ASR (%)"]) == 100  # ALMA L2 on 4 images in 10 steps
    first = record["results"][0]
    assert len(first["distances"]) == 4 and first["settings"]["steps"] == 10
    assert "bench --framework" in record["info"]["command"]

    # a rerun with the same settings reuses the saved attacks
    saved = out / "attacks" / "alma-l2@10" / "shards" / "shard-000000.npz"
    stamp = saved.stat().st_mtime_ns
    assert cli_main(argv) == 0
    assert saved.stat().st_mtime_ns == stamp

    target = tmp_path / "BENCHMARKS.md"
    figures = tmp_path / "docs"
    argv = ["bench", "--collect", str(out), "--write", str(target), "--figures-dir", str(figures)]
    assert cli_main(argv) == 0
    text = target.read_text()
    assert "Optimality" in text and "](docs/bench_run.png)" in text
    assert (figures / "bench_run.png").exists()
    capsys.readouterr()


def test_each_attack_keeps_its_own_dates_and_loaded_results_say_so(tmp_path):
    import time

    from foolbox_alma.bench import report

    fmodel, x, y = _tiny_model(Framework(_first_available()))
    first = run_benchmark(fmodel, x, y, attacks=["alma-l2"], steps=3, out=tmp_path, progress=False)
    r = first.results[0]
    assert r.started and r.finished and not r.loaded
    assert r.started <= r.finished
    time.sleep(1.1)  # the second run starts later: the loaded result keeps its own dates
    second = run_benchmark(
        fmodel, x, y, attacks=["alma-l2", "fmn-l2"], steps=3, out=tmp_path, progress=False
    )
    loaded, computed = second.results
    assert loaded.loaded and (loaded.started, loaded.finished) == (r.started, r.finished)
    assert not computed.loaded and computed.started > r.finished
    lines = report.attack_dates(second)
    assert lines[0] == f"alma-l2@3: {r.started} to {r.finished} (loaded from an earlier run)"
    assert lines[1].endswith("(computed in this run)")
    text = report.markdown_report(second, "t")
    assert f"* Date: {r.started} to {computed.finished}; 1 of 2 result(s) loaded" in text
    # BENCHMARKS.md is collected from the runs' saved outputs: they keep what was loaded
    report.write_outputs(second, tmp_path / "second", title="t")
    collected = report.collect([tmp_path / "second"], tmp_path / "BENCHMARKS.md")
    assert f"* {lines[0]}" in collected and f"* {lines[1]}" in collected
    # a run's results.json written before dates were recorded still loads, and says so
    path = tmp_path / "second" / "results.json"
    record = json.loads(path.read_text())
    for result in record["results"]:
        del result["started"], result["finished"]
    path.write_text(json.dumps(record))
    old, _ = report.load_run(tmp_path / "second")
    assert (
        report.attack_dates(old)[0] == "alma-l2@3: date not recorded (loaded from an earlier run)"
    )


def _first_available() -> str:
    names = [name for name in FRAMEWORKS if available(name)]
    if not names:
        pytest.skip("no framework installed")
    return names[0]


# -- measuring every attack in other distances (the paper's perceptual table) -----------------


def _colour_problem(fw: Framework):
    """A linear classifier of 3 x 12 x 12 colour images, and images it classifies."""
    rng = np.random.default_rng(5)
    weight = rng.normal(size=(3 * 12 * 12, 4)).astype(np.float32)
    x = rng.uniform(0.2, 0.8, size=(5, 3, 12, 12)).astype(np.float32)

    def forward(images):
        t = ep.astensor(images)
        return (t.reshape((t.shape[0], -1)) @ ep.from_numpy(t, weight)).raw

    fmodel = fw.function_model(forward)
    y = ep.astensor(fmodel(fw.tensor(x))).argmax(axis=-1).numpy()
    return fmodel, x, y


def _fixed_perturbation(x: np.ndarray, own_scale=None) -> "registry.AttackSpec":
    """An "attack" returning x plus a fixed perturbation: its distances are known exactly."""
    delta = np.random.default_rng(6).normal(scale=0.05, size=x.shape).astype(np.float32)

    def build(steps):
        def run(fmodel, module, images, labels):
            t = ep.astensor(images)
            return ep.clip(t + ep.from_numpy(t, delta), 0, 1).raw

        return run, {"steps": steps}

    return registry.AttackSpec("fixed", "Fixed", "benchmark", "l1", build, own_scale=own_scale)


def test_measured_distances_match_colour_science_and_scikit_image(fw, tmp_path):
    from helpers import colour_ciede2000, skimage_distance

    from foolbox_alma.bench import report

    fmodel, x, y = _colour_problem(fw)
    spec = _fixed_perturbation(x)
    rulers = ["ciede2000", "SSIM", "l2", "ciede2000"]  # names as given, repeats dropped
    run = run_benchmark(
        fmodel, fw.tensor(x), fw.tensor(y), attacks=[spec], steps=1, measure=rulers,
        floor_passes=0, out=tmp_path, progress=False,
    )  # fmt: skip
    (r,) = run.results
    adv = np.clip(x + np.random.default_rng(6).normal(scale=0.05, size=x.shape), 0, 1)
    adv = adv.astype(np.float32).astype(np.float64)
    assert sorted(r.measured) == ["ciede2000", "l2", "ssim"]
    np.testing.assert_allclose(r.measured["ciede2000"], colour_ciede2000(x, adv), rtol=1e-4)
    np.testing.assert_allclose(r.measured["ssim"], skimage_distance(x, adv), rtol=1e-4, atol=1e-6)
    delta = (adv - x).reshape(len(x), -1)
    np.testing.assert_allclose(r.measured["l2"], np.sqrt((delta**2).sum(1)), rtol=1e-6)
    np.testing.assert_allclose(r.distances, np.abs(delta).sum(1), rtol=1e-6)  # its own: L1
    oracle = colour_ciede2000(x, adv)
    assert r.median_in("ciede2000") == pytest.approx(metrics.median_distance(oracle, r.success))
    assert r.median_in("l1") == r.median and math.isnan(r.median_in("lpips"))
    # the saved result keeps them; a run that measures less or more does not reuse it
    report.write_outputs(run, tmp_path / "out", title="t")
    loaded, _ = report.load_run(tmp_path / "out")
    np.testing.assert_array_equal(loaded.results[0].measured["ssim"], r.measured["ssim"])
    again = run_benchmark(
        fmodel, fw.tensor(x), fw.tensor(y), attacks=[spec], steps=1, measure=rulers,
        floor_passes=0, out=tmp_path, progress=False,
    )  # fmt: skip
    assert again.results[0].loaded
    fewer = run_benchmark(
        fmodel, fw.tensor(x), fw.tensor(y), attacks=[spec], steps=1, measure=["ssim"],
        floor_passes=0, out=tmp_path, progress=False,
    )  # fmt: skip
    assert not fewer.results[0].loaded and sorted(fewer.results[0].measured) == ["ssim"]
    # the table: one column per distance measured, medians as the oracle gives them
    (row,) = _parse_table(report.format_measured_table(run))
    assert row["Minimises"] == "L1" and row["Attack"] == "Fixed"
    assert row["Median CIEDE2000"].strip("*") == metrics.format_median(
        metrics.median_distance(oracle, r.success)
    )
    assert "Median SSIM" in row and "Median L2" in row
    (row,) = _parse_table(report.format_measured_table(fewer))
    ssim = metrics.median_distance(skimage_distance(x, adv), fewer.results[0].success)
    assert row["Median SSIM"].strip("*") == metrics.format_median(ssim)


def test_own_scale_measures_an_attack_with_its_own_function(fw):
    fmodel, x, y = _colour_problem(fw)
    spec = _fixed_perturbation(x, own_scale=lambda m, a, b: np.arange(len(x)) + 0.5)
    run = run_benchmark(
        fmodel, fw.tensor(x), fw.tensor(y), attacks=[spec], steps=1, measure=["l1"],
        floor_passes=0, progress=False,
    )  # fmt: skip
    (r,) = run.results
    np.testing.assert_array_equal(r.distances, np.arange(len(x)) + 0.5)
    adv = np.clip(x + np.random.default_rng(6).normal(scale=0.05, size=x.shape), 0, 1)
    expected = np.abs(adv.astype(np.float32).astype(np.float64) - x).reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(r.measured["l1"], expected, rtol=1e-6)  # l1 is not its scale


def test_measure_rejects_unknown_distances():
    fmodel, x, y = _tiny_model(Framework(_first_available()))
    with pytest.raises(ValueError, match="unknown distance 'psnr'.*ciede2000"):
        run_benchmark(fmodel, x, y, attacks=["alma-l2"], steps=1, measure=["psnr"])


def test_perceptual_rows_of_the_registry():
    """adv_lib's ALMA on each perceptual distance, on its own scale, with the paper's step."""
    spec = registry.ATTACKS.get("adv_lib-alma-ciede2000")
    assert spec is not None and spec.distance == "ciede2000-adv_lib"
    assert registry.STANDARD_RULER[spec.distance] == "ciede2000"
    assert registry.PERCEPTUAL["ciede2000"] == 0.05 and registry.PERCEPTUAL["lpips"] == 0.01
    names = {s.name for s in registry.ATTACKS.values() if registry.GROUPS["perceptual"](s)}
    assert {"alma-ciede2000", "alma-ssim", "adv_lib-alma-ciede2000"} <= names
    assert not names & {"alma-l2", "ddn", "fmn-l2"}
    assert "alma-msssim" not in names and registry.select(["alma-msssim"], "pytorch")


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_perceptual_script():
    return _script("bench_perceptual")


def test_speed_ratios_and_their_table():
    """scripts/bench_speed.py's figures from seconds worked out by hand: each round's ALMA time
    over the same round's floor (median and range), round 1 alone (the one with the trace), the
    amortised ratio and the memory column. Catches ratios taken against another round's floor,
    a median of seconds instead of ratios, round 1 read from the wrong end."""
    script = _script("bench_speed")
    seconds = {"floor": [10.0, 8.0, 10.0], "ours:l2": [13.0, 8.4, 10.2]}
    table = script.ratios(seconds)
    ours = table["ours:l2"]
    assert ours["median"] == pytest.approx(1.05)  # of 1.3, 1.05, 1.02
    assert (ours["min"], ours["max"]) == (pytest.approx(1.02), pytest.approx(1.3))
    assert ours["amortised"] == pytest.approx(31.6 / 28.0)
    assert ours["seconds"] == 10.2 and ours["first"] == 13.0
    args = dict(model="m", framework="jax", batch=4, steps=10, rounds=3, distances="l2",
                threads=2, clock="cpu", no_adv_lib=False, memory=True)  # fmt: skip
    record = {"args": args, "ratios": table, "peaks": {"floor": 1000.0, "ours:l2": 1600.0},
              "started": "today", "batch_bytes": 200, "machine": {"cpu": "cpu"}, "load": "1"}  # fmt: skip
    rows = [line for line in script.run_text(record).splitlines() if line.startswith("| ours")]
    assert rows == ["| ours:l2 | 1.050 [1.020, 1.300] | 1.300 | 1.129 | 10.20 | +3.0 |"]


def test_random_alexnet_checkpoint_is_seeded_and_loads_as_torchvisions(tmp_path, monkeypatch):
    """The perceptual table's LPIPS backbone: torchvision's file name and keys, the same tensors
    for the same seed, read by our LPIPS (and by torchvision's AlexNet where it is installed)."""
    torch = pytest.importorskip("torch")
    from foolbox_alma.distances import LPIPS

    script = _bench_perceptual_script()
    full = script.write_random_alexnet(tmp_path / "full", seed=3)
    assert full.name == "alexnet-owt-7be5be79.pth" and full.parent.name == "checkpoints"
    assert not list(full.parent.glob("*.partial"))
    state = torch.load(full)
    x = np.random.default_rng(0).uniform(size=(2, 3, 32, 32))
    assert np.all(np.asarray(LPIPS(str(full))(x, np.clip(x + 0.05, 0, 1))) > 0)
    try:
        import torchvision
    except Exception:  # not installed, or not importable beside this torch build
        torchvision = None
    if torchvision is not None:
        torchvision.models.alexnet().load_state_dict(state)  # strict: every key, every shape
    full.unlink()  # 233 MB
    # seeding, on the convolutions only (the classifier's 58M numbers are not needed for that)
    monkeypatch.setattr(script, "ALEXNET", script.ALEXNET[:5])
    a, b, c = (
        torch.load(script.write_random_alexnet(tmp_path / name, seed=seed))
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    )
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], state[k]) for k in a)  # the same numbers as the full file's
    assert not torch.equal(a["features.0.weight"], c["features.0.weight"])
    assert a["features.0.weight"].abs().max() <= 1 / np.sqrt(3 * 11 * 11)


def test_splice_replaces_the_named_sections_only(tmp_path):
    """BENCHMARKS.md's sections written by the scripts: a rerun replaces the section with the
    title's prefix (and the ones right after it sharing it), keeps the others, and appends a new
    one, atomically. Catches a splice that drops the sections after it, duplicates the section on
    a rerun, or leaves a temporary file behind."""
    from foolbox_alma.bench.report import splice_section

    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# B\n\n## A\n\na\n\n## Table: old 100\n\nx\n\n## Table: old 1000\n\ny\n\n## Z\n\nz\n"
    )
    splice_section(path, "Table", "## Table: new\n\nnew\n")
    assert path.read_text() == "# B\n\n## A\n\na\n\n## Table: new\n\nnew\n\n## Z\n\nz\n"
    splice_section(path, "Missing", "## Missing\n\nm\n")
    assert path.read_text().endswith("## Z\n\nz\n\n## Missing\n\nm\n")
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]


def test_an_interrupted_benchmark_keeps_every_finished_attack(tmp_path, monkeypatch):
    """Ctrl-C during the second attack of a budget: the first attack's result is saved, and the
    rerun loads it and computes only the rest. Catches a bench that saves a budget's results only
    once every attack has run (an interrupted 8-attack run lost them all)."""
    from foolbox_alma.bench import runner

    fmodel, x, y = _tiny_model(Framework(_first_available()))
    real = runner._run_attack
    calls = []

    def interrupted(setup, spec, config, budget):
        calls.append(spec.name)
        if spec.name == "fmn-l2":
            raise KeyboardInterrupt
        return real(setup, spec, config, budget)

    monkeypatch.setattr(runner, "_run_attack", interrupted)
    attacks = ["alma-l2", "fmn-l2"]
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(fmodel, x, y, attacks=attacks, steps=3, out=tmp_path, progress=False)
    monkeypatch.setattr(runner, "_run_attack", real)
    rerun = run_benchmark(fmodel, x, y, attacks=attacks, steps=3, out=tmp_path, progress=False)
    assert [r.loaded for r in rerun.results] == [True, False]


def test_cli_takes_a_model_file_without_framework(tmp_path, capsys):
    """`foolbox-alma bench --model file.py:function --data ...` with no --framework: the model
    brings its own. Catches a --framework default ('torch') passed to every model spec, which
    refuses anything but a zoo name."""
    pytest.importorskip("torch")
    from foolbox_alma.bench.cli import run_cli

    model = Path(__file__).parents[1] / "examples" / "models" / "mnist_net.py"
    code = run_cli(["--model", f"{model}:build", "--data", "mnist-heldout", "--images", "2",
                    "--steps", "2", "--attacks", "alma-l2", "--floor-passes", "0",
                    "--out", str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (
        "| **L2** | ALMA | foolbox-alma (ours) | 2 |" in (tmp_path / "run" / "table.md").read_text()
    )
