"""What every distance shares: names, paper settings, channel-axis resolution, native types,
Foolbox compatibility, tracing by ``tf.function`` (JAX distances always run under ``jax.jit``)."""

import eagerpy as ep
import foolbox as fb
import numpy as np
import pytest
from helpers import float64, random_alexnet, to_tensor

import foolbox_alma.distances as distances
from foolbox_alma.distances import (
    CIEDE2000,
    LPIPS,
    SSIM,
    AttackDistance,
    ImageDistance,
    ciede2000,
    get_distance,
    resolve_channel_axis,
    ssim,
)

# The paper's settings for L1 and L2, CIEDE2000 calibrated on colour images (the paper's 0.05 is
# on adv_lib's scale, kept by CIEDE2000(adv_lib_scale=True); see BENCHMARKS.md), and the automatic
# first step for the others (README, "Defaults")
PAPER = {"l1": 0.5, "l2": 0.1, "ciede2000": 1.0, "ssim": "auto", "msssim": "auto", "lpips": "auto"}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_names_and_paper_settings(name):
    distance = get_distance(name)
    assert isinstance(distance, AttackDistance) and isinstance(distance, fb.distances.Distance)
    assert distance.name == name
    assert distance.init_lr_distance == PAPER[name]
    assert distance.homogeneous == (name in ("l1", "l2"))
    assert get_distance(name.upper()) is distance
    assert get_distance(distance) is distance
    for exported in ("l1", "l2", "ciede2000", "ssim", "CIEDE2000", "SSIM", "LPIPS"):
        assert exported in distances.__all__


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="ciede2000.*lpips.*ssim"):
        get_distance("psnr")


@pytest.mark.parametrize(
    "shape, channel_axis, data_format, expected",
    [
        ((2, 3, 8, 8), None, None, 1),
        ((2, 8, 8, 3), None, None, 3),
        ((2, 1, 28, 28), None, None, 1),
        ((2, 28, 28, 1), None, None, 3),
        ((2, 3, 8, 3), -1, None, 3),
        ((2, 3, 8, 3), None, "channels_last", 3),
        ((2, 3, 8, 3), None, "channels_first", 1),
        ((2, 8, 8, 3), 1, "channels_last", 1),  # an explicit channel_axis wins
        ((2, 5, 8, 8), None, "channels_first", 1),
        ((2, 8, 8, 4), None, "channels_last", 3),
        # a data_format that does not fit the shape (Foolbox's JAXModel default): the shape decides
        ((2, 3, 32, 32), None, "channels_last", 1),
        ((2, 28, 28, 1), None, "channels_first", 3),
    ],
)
def test_resolve_channel_axis(shape, channel_axis, data_format, expected):
    assert resolve_channel_axis(shape, channel_axis, data_format) == expected


@pytest.mark.parametrize("shape", [(2, 3, 3, 8), (2, 1, 8, 1), (2, 5, 8, 8), (3, 8, 8)])
def test_ambiguous_channel_axis_asks_for_it(shape):
    with pytest.raises(ValueError, match="channel_axis|(N, C, H, W)"):
        resolve_channel_axis(shape, distance="ssim")


def test_bad_arguments():
    with pytest.raises(ValueError, match="data_format"):
        ssim.bind((0, 1), "NCHW")
    with pytest.raises(ValueError, match="bounds"):
        SSIM(bounds=(1, 0))
    with pytest.raises(ValueError, match="channel_axis"):
        resolve_channel_axis((2, 3, 8, 8), channel_axis=0)


def _all_image_distances():
    return [ciede2000, ssim, LPIPS(random_alexnet())]


def test_native_types_and_repr(fw):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 3, 32, 32)).astype(np.float32)
    y = np.clip(x + rng.normal(scale=0.05, size=x.shape), 0, 1).astype(np.float32)
    for distance in _all_image_distances():
        assert isinstance(distance, ImageDistance) and repr(distance).startswith(
            type(distance).__name__
        )
        values = distance(fw.tensor(x), fw.tensor(y))
        assert isinstance(values, fw.tensor_type) and tuple(values.shape) == (2,)
        epsilon = 0.5 * float(np.min(fw.numpy(values)))
        clipped = distance.clip_perturbation(fw.tensor(x), fw.tensor(y), epsilon)
        assert isinstance(clipped, fw.tensor_type) and tuple(clipped.shape) == x.shape
        assert np.all(np.isfinite(fw.numpy(values))) and np.all(fw.numpy(values) > 0)


def test_foolbox_epsilons_with_a_perceptual_distance(fw):
    """A Foolbox minimisation attack measuring with an ALMA distance: its ``epsilons`` clip the
    perturbation with our ``clip_perturbation`` (bisection, inside the bounds)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, size=(4, 3, 16, 16))
    target = np.clip(x + 0.3 * rng.normal(size=x.shape), 0, 1)

    class Fixed(fb.attacks.base.MinimizationAttack):
        distance = ciede2000

        def run(self, model, inputs, criterion, *, early_stop=None, **kwargs):
            return ep.astensor(fw.tensor(target))

    with float64(fw.name):
        model = fw.linear_model(rng.normal(size=(3, x[0].size)), np.zeros(3))
        labels = fw.tensor(np.zeros(4, dtype=np.int64))
        _, clipped, _ = Fixed()(model, fw.tensor(x), labels, epsilons=[5.0, 20.0, None])
        sizes = [fw.numpy(ciede2000(fw.tensor(x), c)) for c in clipped]
        full = fw.numpy(ciede2000(fw.tensor(x), fw.tensor(target)))
    for epsilon, size in zip((5.0, 20.0), sizes):
        assert np.all(size <= epsilon) and np.all(size >= np.minimum(full, epsilon) * 0.998)
    np.testing.assert_allclose(sizes[2], full)


@pytest.mark.parametrize("kind", ["ciede2000", "ssim", "lpips"])
@pytest.mark.framework
def test_traced_by_tf_function(kind):
    tf = pytest.importorskip("tensorflow")

    distance = {"ciede2000": ciede2000, "ssim": ssim, "lpips": LPIPS(random_alexnet())}[kind]
    bound = distance.bind((0, 255), "channels_last")
    rng = np.random.default_rng(3)
    x = 255 * rng.uniform(size=(2, 32, 32, 3))
    y = np.clip(x + rng.normal(scale=10, size=x.shape), 0, 255)

    @tf.function(autograph=False)
    def value_and_grad(a, b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            values = bound(ep.astensor(a), ep.astensor(b)).raw
            total = tf.reduce_sum(values)
        return values, tape.gradient(total, b)

    values, grad = value_and_grad(tf.constant(x), tf.constant(y))
    with float64("tensorflow"):
        eager = bound(to_tensor("tensorflow", x), to_tensor("tensorflow", y)).numpy()
    np.testing.assert_allclose(values.numpy(), eager, rtol=1e-10)
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0


def test_ciede2000_options_are_kept():
    distance = CIEDE2000(channel_axis=-1, bounds=(0, 255), adv_lib_scale=True)
    assert distance.channel_axis == -1 and distance.bounds == (0.0, 255.0)
    assert distance.adv_lib_scale and distance.init_lr_distance == 0.05
