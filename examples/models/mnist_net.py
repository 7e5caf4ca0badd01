"""A user's own PyTorch model, as `foolbox-alma evaluate --model` takes it: a file with a function
of no arguments that returns a Foolbox model.

The network is defined here, in plain PyTorch (the architecture of the ALMA paper's MNIST
SmallCNN), and loads its weights from a file; this example reads the weights shipped with
foolbox-alma, where your code would read your own checkpoint (torch.load(...)).

    foolbox-alma evaluate --model examples/models/mnist_net.py:build --data mnist-heldout

network() returns the bare torch.nn.Module instead, for the form where evaluate wraps it:

    foolbox-alma evaluate --model examples/models/mnist_net.py:network --bounds 0,1 \
        --data mnist-heldout
"""

import foolbox as fb
import numpy as np
import torch
from torch import nn


class MnistNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 200),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(200, 200),
            nn.ReLU(),
            nn.Linear(200, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_checkpoint(net: MnistNet) -> None:
    """The shipped SmallCNN weights (a state dict in an .npz archive) into this module: its
    layers in order, weight then bias, as yours would come from torch.load(checkpoint)."""
    from foolbox_alma.zoo import load_weights

    arrays = list(load_weights("smallcnn").values())
    parameters = list(net.parameters())
    assert len(arrays) == len(parameters)
    with torch.no_grad():
        for parameter, array in zip(parameters, arrays):
            parameter.copy_(torch.from_numpy(np.asarray(array)))


def network() -> MnistNet:
    """The network alone, in evaluation mode: `--bounds 0,1` has it wrapped as build() does."""
    net = MnistNet()
    load_checkpoint(net)
    return net.eval()


def build() -> fb.PyTorchModel:
    return fb.PyTorchModel(network(), bounds=(0, 1))
