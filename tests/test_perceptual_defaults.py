"""ALMA's perceptual defaults on colour images: every perceptual distance succeeds at its defaults
on the colour zoo model, on every backend, the calibrated CIEDE2000 step size finds closer
adversarials, on the standard CIEDE2000 ruler, than the paper's setting on adv_lib's scale, and
ALMA minimising LPIPS at its defaults beats ALMA-L2 in LPIPS.

Oracles: the model's own predictions of the returned points (success), and the standard
CIEDE2000 (checked against colour-science in test_distances_ciede2000.py) as the common ruler."""

import numpy as np
import pytest
from helpers import random_alexnet

from foolbox_alma import ALMA, metrics, zoo
from foolbox_alma.distances import CIEDE2000, LPIPS, ciede2000


def colour_problem(fw, n):
    fmodel = zoo.foolbox_model(fw.name, "colour-cnn")
    x, y = zoo.heldout_for(fw.name, n=n, model="colour-cnn")
    return fmodel, x, y


@pytest.mark.parametrize("distance", ["ciede2000", "ssim", "lpips"])
def test_each_perceptual_distance_succeeds_at_defaults(fw, distance):
    fmodel, x, y = colour_problem(fw, 8)
    chosen = LPIPS(random_alexnet()) if distance == "lpips" else distance
    fw.seed(0)
    adv = ALMA(distance=chosen, steps=100)(fmodel, x, y)[0]
    predictions = fw.numpy(fmodel(adv)).argmax(-1)
    assert (predictions != fw.numpy(y)).all()


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


@pytest.mark.slow
def test_lpips_at_defaults_beats_alma_l2_in_lpips(fw):
    """Random AlexNet weights other than the ones the LPIPS step was measured with (He
    initialisation, tests/helpers.py): ALMA minimising LPIPS at its defaults finds adversarials
    several times closer in LPIPS than ALMA-L2's (measured: 5.5e-6 against 2.4e-4 on 100 images).
    Catches a first step sized in LPIPS's units (the old 0.01 gave medians 25 times above the L2
    attacks') and a Lagrangian whose squared LPIPS has a vanishing gradient."""
    fmodel, x, y = colour_problem(fw, 12)
    lpips = LPIPS(random_alexnet())
    medians = {}
    for name in ("l2", "lpips"):
        fw.seed(0)
        adv = ALMA(distance=lpips if name == "lpips" else "l2", steps=100).run(fmodel, x, y)
        success = fw.numpy(fmodel(adv)).argmax(-1) != fw.numpy(y)
        medians[name] = metrics.median_distance(fw.numpy(lpips(x, adv)), success)
    assert np.isfinite(medians["lpips"])
    assert medians["lpips"] < 0.2 * medians["l2"], medians
