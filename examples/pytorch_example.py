"""ALMA on a PyTorch model: the SmallCNN shipped with foolbox-alma, 20 held-out MNIST images.

python examples/pytorch_example.py
"""

import foolbox as fb
import torch

import foolbox_alma
from foolbox_alma.zoo import load_mnist_heldout, smallcnn_torch

torch.manual_seed(0)
net = smallcnn_torch()  # a torch.nn.Module in eval mode
fmodel = fb.PyTorchModel(net, bounds=(0, 1))
images, labels = (torch.from_numpy(a) for a in load_mnist_heldout(20))

attack = foolbox_alma.ALMA(distance="l2", steps=100, alpha=0.5)  # the paper's 100-step setting
raw, clipped, success = attack(fmodel, images, labels, epsilons=[1.0, 2.0, None])

l2 = (raw[-1] - images).flatten(1).norm(dim=1)
print(f"ALMA L2, 100 steps on {len(images)} images: success {success[-1].float().mean():.0%}")
print(
    f"median L2 {l2.median():.3f}, robust accuracy at eps 1.0: {1 - success[0].float().mean():.0%},"
    f" at eps 2.0: {1 - success[1].float().mean():.0%}"
)
print("adversarial classes:", net(raw[-1]).argmax(1).tolist())
