"""Bad input gets an exception that names the problem, and never modifies the caller's tensors."""

import foolbox as fb
import numpy as np
import pytest

from foolbox_alma import ALMA


def problem(fw, n=4, d=6, k=5, dtype=np.float32):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(k, d)).astype(dtype)
    b = (-w @ np.full(d, 0.5) + 0.3 * rng.normal(size=k)).astype(dtype)  # small margins
    x = rng.uniform(0.4, 0.6, size=(n, d)).astype(dtype)
    y = (x @ w.T + b).argmax(axis=1)
    return fw.linear_model(w, b), x, y


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"distance": "l3"}, "unknown distance 'l3'; valid names: .*l1.*l2"),
        ({"penalty": "P9"}, "unknown penalty 'P9'; valid names: P1, P2, P3, PHR"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"steps": 2.5}, "steps must be an integer >= 1"),
        ({"lr_init": -1}, "lr_init must be a finite number > 0"),
        ({"lr_reduction": 0}, r"lr_reduction must lie in \(0, 1\]"),
        ({"lr_reduction": 1.5}, r"lr_reduction must lie in \(0, 1\]"),
        ({"init_lr_distance": -0.1}, r"init_lr_distance must lie in \[0, inf\]"),
        ({"init_lr_distance": "fast"}, "init_lr_distance must be 'auto' or a number in"),
        ({"mu_init": 0}, r"mu_init must lie in \[1e-06, 1000000000000.0\]"),
        ({"rho_init": float("nan")}, "rho_init must be a finite number > 0"),
        ({"check_steps": 0}, "check_steps must be an integer >= 1"),
        ({"tau": 1.5}, r"tau must lie in \[0, 1\]"),
        ({"gamma": 1.0}, r"gamma must lie in \(1, inf\]"),
        ({"alpha": 1.0}, r"alpha must lie in \[0, 1\)"),
        ({"alpha_rms": -0.1}, r"alpha_rms must lie in \[0, 1\)"),
        ({"momentum": 2}, r"momentum must lie in \[0, 1\)"),
        ({"logit_tolerance": -1e-4}, r"logit_tolerance must lie in \[0, inf\]"),
        ({"levels": 1}, "levels must be an integer >= 2"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ALMA(**kwargs)


def test_distance_of_the_wrong_type():
    with pytest.raises(TypeError, match="distance must be a name"):
        ALMA(distance=2)


def test_model_without_gradients():
    model = fb.NumPyModel(lambda x: x.reshape(len(x), -1)[:, :3], bounds=(0, 1))
    x = np.full((2, 3), 0.5, dtype=np.float32)
    with pytest.raises(TypeError, match="ALMA needs gradients"):
        ALMA(steps=2)(model, x, np.array([0, 1]))


def assert_unchanged(fw, before, tensor):
    np.testing.assert_array_equal(fw.numpy(tensor), before)


def test_inputs_outside_the_bounds_name_bounds_and_extremes(fw):
    model, x, y = problem(fw)
    x[0, 0], x[1, 1] = -0.25, 1.5
    xt = fw.tensor(x)
    with pytest.raises(ValueError, match=r"bounds \(0, 1\).*min is -0.25.*max is 1.5"):
        ALMA(steps=2)(model, xt, fw.tensor(y))
    assert_unchanged(fw, x, xt)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_inputs(fw, bad):
    model, x, y = problem(fw)
    x[2, 3] = bad
    xt = fw.tensor(x)
    with pytest.raises(
        ValueError, match="inputs contain 1 NaN and 0 infinite|inputs contain 0 NaN and 1 infinite"
    ):
        ALMA(steps=2)(model, xt, fw.tensor(y))
    assert_unchanged(fw, x, xt)


def test_integer_inputs(fw):
    model, x, y = problem(fw)
    with pytest.raises(TypeError, match="inputs must be floating point"):
        ALMA(steps=2)(model, fw.tensor(np.zeros((4, 6), dtype=np.int32)), fw.tensor(y))


def test_labels_of_the_wrong_shape(fw):
    model, x, y = problem(fw)
    with pytest.raises(ValueError, match=r"expected labels of shape \(4,\), got shape \(4, 1\)"):
        ALMA(steps=2)(model, fw.tensor(x), fw.tensor(y[:, None]))
    with pytest.raises(
        ValueError, match=r"expected target_classes of shape \(4,\), got shape \(3,\)"
    ):
        criterion = fb.criteria.TargetedMisclassification(fw.tensor(y[:3]))
        ALMA(steps=2)(model, fw.tensor(x), criterion)


def test_labels_of_the_wrong_dtype(fw):
    model, x, y = problem(fw)
    with pytest.raises(TypeError, match="labels must be integers, got dtype float32"):
        ALMA(steps=2)(model, fw.tensor(x), fw.tensor(y.astype(np.float32)))


@pytest.mark.parametrize("targeted", [False, True])
def test_labels_out_of_range(fw, targeted):
    model, x, y = problem(fw)
    y = y.copy()
    y[1] = 5  # 5 classes: valid labels are 0..4
    criterion = fb.criteria.TargetedMisclassification(fw.tensor(y)) if targeted else fw.tensor(y)
    name = "target_classes" if targeted else "labels"
    with pytest.raises(
        ValueError, match=rf"{name} must lie in \[0, 4\].*got \[5\] at positions \[1\]"
    ):
        ALMA(steps=2)(model, fw.tensor(x), criterion)


def test_target_equal_to_the_true_class_is_already_adversarial(fw):
    model, x, y = problem(fw)
    criterion = fb.criteria.TargetedMisclassification(fw.tensor(y))
    raw, clipped, success = ALMA(steps=5)(model, fw.tensor(x), criterion)
    assert fw.numpy(success).all()
    np.testing.assert_array_equal(fw.numpy(raw), x)


def test_already_misclassified_samples_come_back_unchanged(fw):
    model, x, y = problem(fw)
    wrong = (y + 1) % 5
    wrong[0] = y[0]  # one correct sample
    raw, _, success = ALMA(steps=50)(model, fw.tensor(x), fw.tensor(wrong))
    raw = fw.numpy(raw)
    np.testing.assert_array_equal(raw[1:], x[1:])
    assert fw.numpy(success).all() and not np.array_equal(raw[0], x[0])


@pytest.mark.parametrize("epsilons", [None, 0.5, [0.1, None]])
def test_empty_batch(fw, epsilons):
    model, x, y = problem(fw)
    raw, clipped, success = ALMA(steps=5)(
        model, fw.tensor(x[:0]), fw.tensor(y[:0]), epsilons=epsilons
    )
    if isinstance(epsilons, list):
        assert len(raw) == len(clipped) == 2 and fw.numpy(raw[0]).shape == (0, 6)
        assert fw.numpy(success).shape == (2, 0)
    else:
        assert fw.numpy(raw).shape == fw.numpy(clipped).shape == (0, 6)
        assert fw.numpy(success).shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_kept_and_inputs_never_modified(fw, dtype):
    with fw.float64():
        model, x, y = problem(fw, dtype=dtype)
        xt, yt = fw.tensor(x), fw.tensor(y)
        raw, clipped, success = ALMA(steps=20)(model, xt, yt, epsilons=0.5)
        assert fw.numpy(raw).dtype == dtype and fw.numpy(clipped).dtype == dtype
        assert_unchanged(fw, x, xt)
        assert_unchanged(fw, y, yt)


def test_pytorch_model_parameters_untouched():
    """The gradient is taken with respect to the inputs only: the caller's parameters get no
    ``.grad`` (EagerPy's backward() would fill it, and spend time computing it)."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5)).eval()
    assert all(p.requires_grad for p in net.parameters())
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.rand(4, 6)
    ALMA(steps=10)(fb.PyTorchModel(net, bounds=(0, 1)), x, net(x).argmax(1))
    assert all(p.grad is None for p in net.parameters())
    for p, q in zip(net.parameters(), before):
        assert torch.equal(p, q)
