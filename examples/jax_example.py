"""ALMA on a JAX model: the shipped SmallCNN as a jitted jax.lax function, 20 held-out images.

python examples/jax_example.py
"""

import foolbox as fb
import jax.numpy as jnp

import foolbox_alma
from foolbox_alma.zoo import heldout_for, smallcnn_jax

forward = smallcnn_jax()  # a jitted function images (N, 1, 28, 28) -> logits
fmodel = fb.JAXModel(forward, bounds=(0, 1))
images, labels = heldout_for("jax", n=20)

attack = foolbox_alma.ALMA(distance="l2", steps=100, alpha=0.5)  # the step runs under jax.jit
raw, clipped, success = attack(fmodel, images, labels)

l2 = jnp.linalg.norm((raw - images).reshape(len(images), -1), axis=1)
print(f"ALMA L2, 100 steps on {len(images)} images: success {jnp.mean(success):.0%}")
print(f"median L2 {jnp.median(l2):.3f}; adversarial classes: {forward(raw).argmax(1).tolist()}")
