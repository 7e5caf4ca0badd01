"""ALMA's perceptual defaults on colour images: every perceptual distance succeeds at its defaults
on the colour zoo model, on every backend, the calibrated CIEDE2000 step size finds closer
adversarials, on the standard CIEDE2000 ruler, than the paper's setting on adv_lib's scale, and
ALMA minimising LPIPS at its defaults beats ALMA-L2 in LPIPS.

Oracles: the model's own predictions of the returned points (success), and the standard
CIEDE2000 (checked against colour-science in test_distances_ciede2000.py) as the common ruler."""

import eagerpy as ep
import numpy as np
import pytest
from helpers import random_alexnet

from foolbox_alma import ALMA, metrics, zoo
from foolbox_alma.distances import CIEDE2000, LPIPS, ciede2000, get_distance


def colour_problem(fw, n):
    fmodel = zoo.foolbox_model(fw.name, "colour-cnn")
    x, y = zoo.heldout_for(fw.name, n=n, model="colour-cnn")
    return fmodel, x, y


@pytest.mark.parametrize("distance", ["ciede2000", "ssim", "lpips"])
def test_each_perceptual_distance_beats_l2_in_its_own_distance_at_defaults(fw, distance):
    """ALMA minimising D, at its defaults, fools every image and finds adversarials closer in D
    than ALMA minimising L2 on the same images. Catches: an attack that ignores the distance (it
    would do no better than L2 in D), defaults that fail (a first step of the wrong scale, the
    LPIPS failure of issue 17), the distance's gradient not reaching the step."""
    fmodel, x, y = colour_problem(fw, 6)
    chosen = LPIPS(random_alexnet()) if distance == "lpips" else get_distance(distance)
    measure = chosen.bind(fmodel.bounds, getattr(fmodel, "data_format", None))
    medians = {}
    for name, attack in (("D", chosen), ("L2", "l2")):
        fw.seed(0)
        adv = ALMA(distance=attack, steps=60)(fmodel, x, y)[0]
        success = fw.numpy(fmodel(adv)).argmax(-1) != fw.numpy(y)
        values = measure(ep.astensor(x), ep.astensor(adv)).numpy()
        medians[name] = metrics.median_distance(values, success)
        if name == "D":
            assert success.all()
    assert medians["D"] < medians["L2"], medians


def test_calibrated_ciede2000_beats_the_papers_adv_lib_scale_on_the_standard_ruler():
    torch = pytest.importorskip("torch")
    fmodel = zoo.foolbox_model("pytorch", "colour-cnn")
    x, y = (torch.from_numpy(a) for a in zoo.load_heldout("colour-cnn", 16))
    medians = {}
    for name, distance in (("standard", ciede2000), ("adv_lib", CIEDE2000(adv_lib_scale=True))):
        torch.manual_seed(0)
        adv = ALMA(distance=distance, steps=100).run(fmodel, x, y)
        success = (fmodel(adv).argmax(-1) != y).numpy()
        medians[name] = metrics.median_distance(ciede2000(x, adv).numpy(), success)
    assert np.isfinite(medians["standard"])
    assert medians["standard"] < 0.75 * medians["adv_lib"], medians
