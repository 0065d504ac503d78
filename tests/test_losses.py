import numpy as np
import tensorflow as tf
from tensorflow import keras

from saic_tf.codec.networks import pixel_mse
from saic_tf.semantic import gsw, losses


def conv_features(seed=0):
  keras.utils.set_random_seed(seed)
  images = keras.Input((None, None, 3))
  return keras.Model(images, keras.layers.Conv2D(6, 3, strides=2)(images))


def test_pixel_mse_per_image():
  x = tf.zeros([2, 2, 2, 3])
  y = tf.concat([tf.zeros([1, 2, 2, 3]), tf.fill([1, 2, 2, 3], 0.5)], 0)
  np.testing.assert_allclose(pixel_mse(x, y), [0.0, 0.25])


def test_feature_distortion_is_eq10():
  features = conv_features()
  x = tf.random.uniform([3, 16, 16, 3], seed=1)
  x_hat = tf.random.uniform([3, 16, 16, 3], seed=2)
  weights = np.linspace(0.5, 2.0, 6)
  got = losses.feature_distortion(features, weights)(x, x_hat).numpy()
  f, f_hat = features(x).numpy(), features(x_hat).numpy()
  expected = (((f_hat - f) ** 2).mean(axis=(1, 2)) * weights).sum(axis=1)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_saic_with_uniform_weights_equals_apic():
  features = conv_features(seed=3)
  x = tf.random.uniform([2, 8, 8, 3], seed=4)
  x_hat = tf.random.uniform([2, 8, 8, 3], seed=5)
  uniform, _ = gsw.semantic_weights(np.array([1e-4, -3e-4, 2e-4, 0, 5e-5, 1e-5]), tau=1e-12)
  apic = losses.feature_distortion(features, np.ones(6))(x, x_hat)
  saic = losses.feature_distortion(features, uniform)(x, x_hat)
  np.testing.assert_allclose(saic, apic, rtol=1e-6)


def test_feature_loss_gradient_reaches_the_reconstruction_only():
  features = conv_features(seed=6)
  features.trainable = False
  x = tf.Variable(tf.random.uniform([1, 8, 8, 3], seed=7))
  x_hat = tf.Variable(tf.random.uniform([1, 8, 8, 3], seed=8))
  with tf.GradientTape() as tape:
    loss = losses.feature_distortion(features, np.ones(6))(x, x_hat)
  grad_x, grad_x_hat = tape.gradient(loss, [x, x_hat])
  assert grad_x is None and float(tf.reduce_sum(tf.abs(grad_x_hat))) > 0


def test_kd_is_the_kl_of_the_outputs_plus_the_weighted_feature_loss():
  features = conv_features(seed=9)
  pooled = keras.layers.GlobalAveragePooling2D()(features.output)
  classifier = keras.Model(features.input, keras.layers.Dense(4)(pooled))
  classifier.trainable = False
  x = tf.random.uniform([3, 8, 8, 3], seed=10)
  x_hat = tf.random.uniform([3, 8, 8, 3], seed=11)
  p = tf.nn.softmax(classifier(x)).numpy()
  q = tf.nn.softmax(classifier(x_hat)).numpy()
  kl = (p * (np.log(p) - np.log(q))).sum(axis=1)
  np.testing.assert_allclose(losses.output_divergence(classifier)(x, x_hat), kl, rtol=1e-4)
  np.testing.assert_allclose(losses.output_divergence(classifier)(x, x), 0.0, atol=1e-6)
  apic = losses.feature_distortion(features, np.ones(6))(x, x_hat).numpy()
  combined = losses.output_divergence(classifier, features, feature_weight=0.5)(x, x_hat)
  np.testing.assert_allclose(combined, kl + 0.5 * apic, rtol=1e-4)
  x_hat = tf.Variable(x_hat)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(losses.output_divergence(classifier)(x, x_hat))
  assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, x_hat)))) > 0
