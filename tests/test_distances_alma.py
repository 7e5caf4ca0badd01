"""ALMA with each perceptual distance, end to end on each backend: no NaN, 100% success.

The model: softmax regression trained here (NumPy, a second) on the 20 CIFAR-10 images that
Foolbox ships (``foolbox.utils.samples``), 100% accurate on them; LPIPS uses random AlexNet weights
(the real ones cannot be downloaded here).
"""

import numpy as np
import pytest
from foolbox.criteria import Misclassification
from foolbox.utils import _samples
from helpers import random_alexnet

from foolbox_alma import ALMA
from foolbox_alma.distances import CIEDE2000, LPIPS

STEPS = 100  # the paper's small budget
ATTACKED = 10  # images attacked (of the 20 the model was trained on)


@pytest.fixture(scope="module")
def cifar10():
    images, labels = _samples("cifar10", 0, 20, (32, 32), "channels_first", (0, 1))
    flat, onehot = images.reshape(len(images), -1).astype(np.float64), np.eye(10)[labels]
    weight, bias = np.zeros((10, flat.shape[1])), np.zeros(10)
    for _ in range(300):  # gradient descent on the cross-entropy
        logits = flat @ weight.T + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / len(flat)
        weight -= 0.5 * g.T @ flat
        bias -= 0.5 * g.sum(0)
    assert np.all((flat @ weight.T + bias).argmax(1) == labels)
    return images.astype(np.float32), labels, weight.astype(np.float32), bias.astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def torch_single_thread():
    """Tiny operations: PyTorch's thread pool costs more than it gains (tens of ms per op on a
    busy 2-core machine)."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DISTANCES = {
    "ciede2000": lambda: "ciede2000",
    "ciede2000-adv_lib_scale": lambda: CIEDE2000(adv_lib_scale=True),
    "ssim": lambda: "ssim",
    "lpips": lambda: LPIPS(random_alexnet()),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_alma_succeeds_with_every_distance(fw, cifar10, name):
    images, labels, weight, bias = cifar10
    images, labels = images[:ATTACKED], labels[:ATTACKED]
    model = fw.linear_model(weight, bias)
    attack = ALMA(distance=DISTANCES[name](), steps=STEPS)
    x = fw.tensor(images)
    adv = attack.run(model, x, Misclassification(fw.tensor(labels.astype(np.int32))))
    adv_np = fw.numpy(adv)
    assert np.all(np.isfinite(adv_np)) and adv_np.min() >= 0 and adv_np.max() <= 1
    predictions = fw.numpy(model(fw.tensor(adv_np))).argmax(-1)
    assert np.all(predictions != labels)
    sizes = fw.numpy(attack.distance(x, adv))
    assert np.all(np.isfinite(sizes)) and np.all(sizes > 0)
