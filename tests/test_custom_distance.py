"""The README's distance of one's own (``examples/custom_distance.py``: L2 in YCbCr, chroma
weighted down): its values against colour-science's BT.601 conversion, and ALMA minimising it at
its defaults (the automatic first step) against ALMA-L2's adversarials measured in it."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from foolbox_alma import ALMA, metrics, zoo

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_distance.py"


def load_example():
    spec = importlib.util.spec_from_file_location("custom_distance", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("channels_last", [False, True])
def test_values_match_colour_science(fw, channels_last):
    """Oracle: colour-science's ITU-R BT.601 RGB -> YCbCr (full range), differences weighted by
    hand. Catches a wrong matrix row, a chroma weight applied to Y, or the wrong channel axis."""
    colour = pytest.importorskip("colour")
    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 12, 13))
    y = np.clip(x + 0.05 * rng.normal(size=x.shape), 0, 1)
    weights = colour.WEIGHTS_YCBCR["ITU-R BT.601"]

    def ycbcr(images):
        return colour.RGB_to_YCbCr(np.moveaxis(images, 1, -1), K=weights, out_legal=False)

    diff = ycbcr(y) - ycbcr(x)
    expected = np.sqrt((diff[..., 0] ** 2 + 0.25 * (diff[..., 1:] ** 2).sum(-1)).sum((1, 2)))
    distance = load_example().YCbCrL2(chroma_weight=0.5)
    if channels_last:
        x, y = np.moveaxis(x, 1, -1), np.moveaxis(y, 1, -1)
    with fw.float64():
        got = fw.numpy(distance(fw.tensor(x), fw.tensor(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-7)


@pytest.mark.slow
def test_alma_at_defaults_beats_alma_l2_measured_in_it(fw):
    """ALMA minimising the example's distance, with its default first step (a distance of one's
    own has no value in its units to tune), finds adversarials closer in that distance than
    ALMA-L2's, on the colour zoo model. Catches a default first step that does not fit a
    distance of one's own (e.g. the old fixed 0.1 in the distance's units)."""
    distance = load_example().YCbCrL2()
    assert distance.init_lr_distance == "auto"
    fmodel = zoo.foolbox_model(fw.name, "colour-cnn")
    x, y = zoo.heldout_for(fw.name, n=16, model="colour-cnn")
    medians = {}
    for name, attack in (("l2", ALMA(steps=100)), ("own", ALMA(distance=distance, steps=100))):
        fw.seed(0)
        adv = attack.run(fmodel, x, y)
        success = fw.numpy(fmodel(adv)).argmax(-1) != fw.numpy(y)
        medians[name] = metrics.median_distance(fw.numpy(distance(x, adv)), success)
    assert np.isfinite(medians["own"])
    assert medians["own"] < 0.85 * medians["l2"], medians
