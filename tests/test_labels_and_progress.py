"""Labels and targets as Python lists, tuples and NumPy arrays, on every backend (the oracle: the
same attack given native tensors), errors that say what was given; progress bars that count all
N steps (ALMA, and ALMA's bar in compare and demo), all passes (bench; the oracle: the counted
backward passes) and all samples (the evaluation engine)."""

import foolbox as fb
import numpy as np
import pytest
from helpers import small_linear_problem as linear_problem

import foolbox_alma.alma as alma_module
from foolbox_alma import ALMA


def problem(fw):
    """A linear 4-class model and 6 inputs it classifies (test_foolbox_semantics's problem)."""
    return linear_problem(fw, n=6)


def test_labels_as_lists_tuples_and_arrays(fw):
    model, x, y = problem(fw)
    attack = ALMA(steps=20)
    xt = fw.tensor(x)
    reference = fw.numpy(attack(model, xt, fw.tensor(y))[0])
    for labels in (
        list(map(int, y)),
        tuple(map(int, y)),
        y,
        y.astype(np.int32),
        y.astype(np.uint8),
    ):
        raw, _, success = attack(model, xt, labels)
        assert isinstance(raw, fw.tensor_type)
        np.testing.assert_array_equal(fw.numpy(raw), reference)
        assert fw.numpy(success).all()
    np.testing.assert_array_equal(fw.numpy(attack.run(model, xt, list(map(int, y)))), reference)


def test_given_labels_are_not_modified(fw):
    model, x, y = problem(fw)
    as_list, as_array = list(map(int, y)), y.astype(np.int32)
    kept_list, kept_array = list(as_list), as_array.copy()
    for labels in (as_list, as_array):
        ALMA(steps=5)(model, fw.tensor(x), labels)
    assert as_list == kept_list
    np.testing.assert_array_equal(as_array, kept_array)
    assert as_array.dtype == np.int32 and as_array.flags.writeable


def test_targets_as_numpy_arrays(fw):
    model, x, y = problem(fw)
    targets = (y + 1) % 4
    attack = ALMA(steps=40)
    xt = fw.tensor(x)
    native = fw.numpy(
        attack(model, xt, fb.criteria.TargetedMisclassification(fw.tensor(targets)))[0]
    )
    for given in (targets, targets.astype(np.int32)):
        raw = fw.numpy(attack(model, xt, fb.criteria.TargetedMisclassification(given))[0])
        np.testing.assert_array_equal(raw, native)


def test_labels_as_numpy_arrays_in_misclassification(fw):
    # Foolbox's criteria take arrays (not lists: their constructor fails before ALMA sees them)
    model, x, y = problem(fw)
    attack = ALMA(steps=20)
    xt = fw.tensor(x)
    native = fw.numpy(attack(model, xt, fb.criteria.Misclassification(fw.tensor(y)))[0])
    for given in (y, y.astype(np.int32)):
        raw = fw.numpy(attack(model, xt, fb.criteria.Misclassification(given))[0])
        np.testing.assert_array_equal(raw, native)
    with pytest.raises(TypeError, match="labels must be integers, got dtype float"):
        attack(model, xt, fb.criteria.Misclassification(y.astype(np.float32)))


@pytest.mark.parametrize(
    "labels, error, message",
    [
        ([1.0, 2.0, 0.0, 1.0, 2.0, 3.0], TypeError, "integer class indices .* list of float64"),
        (["a", "b", "c", "d", "e", "f"], TypeError, "integer class indices .* list of <U1"),
        ([True, False] * 3, TypeError, "list of bool"),
        ([[1, 2], [3]], ValueError, "ragged list"),
        ([[1], [2], [3], [0], [1], [2]], ValueError, r"shape \(N,\), got a list of shape \(6, 1\)"),
        ([1, 2], ValueError, r"expected labels of shape \(6,\), got shape \(2,\)"),
        (3, ValueError, "got the single integer 3"),
    ],
)
def test_what_cannot_be_labels(fw, labels, error, message):
    model, x, _ = problem(fw)
    with pytest.raises(error, match=message):
        ALMA(steps=2)(model, fw.tensor(x), labels)


class RecordingBar:
    """Stands in for tqdm: records the total and how far the bar got."""

    made = []

    def __init__(self, iterable=None, total=None, initial=0, **kwargs):
        self.total, self.n, self.closed = total, initial, False
        RecordingBar.made.append(self)

    def update(self, k=1):
        self.n += k

    def set_postfix(self, **kwargs):
        pass

    def refresh(self):
        pass

    @staticmethod
    def write(text):
        pass

    def close(self):
        self.closed = True


def test_alma_bar_counts_all_steps(fw, monkeypatch):
    monkeypatch.setattr(alma_module, "tqdm", RecordingBar)
    RecordingBar.made = []
    model, x, y = problem(fw)
    for steps in (1, 7, 100):
        ALMA(steps=steps, progress=True)(model, fw.tensor(x), fw.tensor(y))
        bar = RecordingBar.made[-1]
        assert (bar.total, bar.n, bar.closed) == (steps, steps, True)


def test_compare_and_demo_bars_count_all_steps(fw, monkeypatch):
    # `foolbox-alma compare` and `demo` show ALMA's own bar, one per batch
    from foolbox_alma.compare import run_alma

    monkeypatch.setattr(alma_module, "tqdm", RecordingBar)
    RecordingBar.made = []
    run_alma(fw.name, "smallcnn", "l2", steps=4, images=3, batch_size=2, progress=True)
    assert [(b.total, b.n, b.closed) for b in RecordingBar.made] == [(4, 4, True)] * 2


def test_bench_bar_counts_all_passes(fw, monkeypatch):
    # `foolbox-alma bench`: one bar per attack, in passes per sample (the budget's N)
    import foolbox_alma.bench.runner as runner_module
    from foolbox_alma.bench import run_benchmark

    monkeypatch.setattr(runner_module, "tqdm", RecordingBar)
    RecordingBar.made = []
    model, x, y = problem(fw)
    run = run_benchmark(
        model,
        fw.tensor(x),
        fw.tensor(y),
        attacks=["alma-l2", "ddn"],
        steps=5,
        batch_size=4,
        floor_passes=0,
        progress=True,
    )
    assert [r.backwards for r in run.results] == [5, 5]  # counted backward passes per sample
    assert [(b.total, b.n, b.closed) for b in RecordingBar.made] == [(5, 5, True)] * 2


def test_evaluation_bar_counts_all_samples(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import foolbox_alma.evaluation.run as run_module
    from foolbox_alma import zoo
    from foolbox_alma.evaluation import evaluate

    monkeypatch.setattr(run_module, "tqdm", RecordingBar)
    RecordingBar.made = []
    x, y = zoo.load_mnist_heldout(7)
    settings = dict(steps=3, batch_size=3, out=tmp_path / "e", threads=1)
    evaluate("smallcnn", (x, y), **settings)
    bar = RecordingBar.made[-1]
    assert (bar.total, bar.n, bar.closed) == (7, 7, True)
    (tmp_path / "e" / "shards" / "shard-000001.npz").unlink()
    evaluate("smallcnn", (x, y), **settings)  # resumed: starts at the 4 loaded samples
    bar = RecordingBar.made[-1]
    assert (bar.total, bar.n) == (7, 7)
