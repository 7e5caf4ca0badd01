"""ALMA on a TensorFlow/Keras model (channels-last, as Keras users have it): the shipped SmallCNN
rebuilt in Keras, 20 held-out MNIST images, a targeted L1 attack.

    python examples/tensorflow_example.py
"""

import foolbox as fb
import tensorflow as tf

import foolbox_alma
from foolbox_alma.zoo import heldout_for, smallcnn_tensorflow

tf.random.set_seed(0)
keras_model = smallcnn_tensorflow()  # inputs (N, 28, 28, 1)
fmodel = fb.TensorFlowModel(keras_model, bounds=(0, 1))
images, labels = heldout_for("tensorflow", n=20)  # channels-last float32, int labels
targets = (labels + 1) % 10

attack = foolbox_alma.ALMA(distance="l1", steps=300)
criterion = fb.criteria.TargetedMisclassification(targets)
raw, clipped, success = attack(fmodel, images, criterion)  # epsilons omitted: minimal adversarials

l1 = tf.reduce_sum(tf.abs(tf.reshape(raw - images, (len(images), -1))), axis=1)
reached = tf.reduce_all(tf.argmax(keras_model(raw), axis=1) == tf.cast(targets, tf.int64))
print(f"targeted ALMA L1, 300 steps: success {tf.reduce_mean(tf.cast(success, tf.float32)):.0%}")
print(f"median L1 {float(tf.sort(l1)[len(l1) // 2]):.3f}; every target reached: {bool(reached)}")
