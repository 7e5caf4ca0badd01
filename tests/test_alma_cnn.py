"""ALMA on the shipped SmallCNN in each framework: every held-out sample attacked, outputs inside
the bounds, native types restored, the perturbation actually small."""

import numpy as np
import pytest

from foolbox_alma import ALMA
from foolbox_alma.zoo import foolbox_model, heldout_for

FRAMEWORK_NAMES = {"pytorch": "pytorch", "tensorflow": "tensorflow", "jax": "jax"}


@pytest.mark.parametrize("distance", ["l2", "l1"])
def test_smallcnn_every_sample_attacked(fw, distance):
    fmodel = foolbox_model(fw.name)
    images, labels = heldout_for(fw.name, n=20)
    raw, clipped, success = ALMA(distance=distance, steps=100, alpha=0.5)(fmodel, images, labels)
    assert isinstance(raw, fw.tensor_type) and isinstance(success, fw.tensor_type)
    raw_np, x = fw.numpy(raw), fw.numpy(images)
    assert raw_np.shape == x.shape and raw_np.dtype == np.float32
    assert raw_np.min() >= 0 and raw_np.max() <= 1
    assert fw.numpy(success).all()
    # the adversarials change the model's decision on every sample
    predicted = fw.numpy(fmodel(raw)).argmax(axis=1)
    assert (predicted != fw.numpy(labels)).all()
    p = 2 if distance == "l2" else 1
    dist = np.linalg.norm((raw_np - x).reshape(len(x), -1), ord=p, axis=1)
    # minimal, not just adversarial: far below the distance to a blank image
    blank = np.linalg.norm(x.reshape(len(x), -1), ord=p, axis=1)
    assert np.median(dist / blank) < 0.25
