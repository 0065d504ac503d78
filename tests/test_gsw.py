import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.semantic import gsw


def linear_head(channels, classes, seed=0):
  """head(f) = Dense(GAP(f)) with known weights A [K, C] and bias b."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(channels, classes)).astype(np.float32)
  b = rng.normal(size=classes).astype(np.float32)
  features = keras.Input((None, None, channels))
  dense = keras.layers.Dense(classes)
  head = keras.Model(features, dense(keras.layers.GlobalAveragePooling2D()(features)))
  dense.set_weights([a, b])
  return head, a, b


def identity_features(channels):
  x = keras.Input((None, None, channels))
  return keras.Model(x, keras.layers.Activation("linear")(x))


def per_class_loop(features_model, head, images, output):
  """Eq. 2-3 literally: one gradient per class c, spatial mean, then mean over classes."""
  features = features_model(images)
  classes = head(features).shape[-1]
  per_class = []
  for c in range(classes):
    with tf.GradientTape() as tape:
      tape.watch(features)
      logits = head(features)
      outputs = tf.nn.softmax(logits) if output == "probs" else logits
      y_c = tf.reduce_sum(outputs[:, c])
    per_class.append(tf.reduce_mean(tape.gradient(y_c, features), axis=[1, 2]))  # w_ck [B, K]
  return tf.reduce_mean(tf.stack(per_class), axis=0).numpy(), np.stack(per_class)


def test_logits_gradient_has_its_closed_form():
  head, a, _ = linear_head(channels=6, classes=4)
  images = tf.random.normal([3, 5, 7, 6], seed=1)  # M x N = 35
  w = gsw.batch_weights(identity_features(6), head, images, "logits").numpy()
  expected = a.mean(axis=1) / 35.0  # ∂y_c/∂f_k^{mn} = A_kc / MN, the same at every position
  np.testing.assert_allclose(w, np.tile(expected, (3, 1)), rtol=1e-5)


def test_probs_gradient_per_class_has_its_closed_form_and_the_class_mean_cancels():
  head, a, b = linear_head(channels=5, classes=3, seed=2)
  features_model = identity_features(5)
  images = tf.random.normal([2, 4, 4, 5], seed=3)
  _, w_ck = per_class_loop(features_model, head, images, "probs")
  pooled = tf.reduce_mean(images, axis=[1, 2]).numpy()
  p = tf.nn.softmax(pooled @ a + b).numpy()  # [B, C]
  # ∂p_c/∂f_k^{mn} = p_c (A_kc - Σ_j p_j A_kj) / MN
  expected = p.T[:, :, None] * (a.T[:, None, :] - (p @ a.T)[None]) / 16.0
  np.testing.assert_allclose(w_ck, expected, rtol=1e-4, atol=1e-7)
  w = gsw.batch_weights(features_model, head, images, "probs").numpy()
  assert np.max(np.abs(w)) < 1e-7 < np.max(np.abs(w_ck))
  assert gsw.cancels(w.mean(0))


@pytest.mark.parametrize("output", ["logits", "probs"])
def test_one_gradient_of_the_class_sum_equals_the_per_class_loop(output):
  keras.utils.set_random_seed(4)
  images = keras.Input((None, None, 3))
  features = keras.layers.Conv2D(8, 3, activation="relu")(images)
  features_model = keras.Model(images, features)
  f = keras.Input((None, None, 8))
  h = keras.layers.Conv2D(6, 3, activation="relu")(f)
  head = keras.Model(f, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h)))
  batch = tf.random.uniform([4, 12, 12, 3], seed=5)
  loop, _ = per_class_loop(features_model, head, batch, output)
  fast = gsw.batch_weights(features_model, head, batch, output).numpy()
  np.testing.assert_allclose(fast, loop, rtol=1e-4, atol=1e-9)


def test_compute_averages_over_the_images_of_the_batches():
  head, a, _ = linear_head(channels=4, classes=3, seed=6)
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.random.normal([10, 2, 2, 4], seed=7), tf.zeros([10], tf.int64))).batch(4)
  w = gsw.compute(identity_features(4), head, dataset, batches=2, output="logits")
  np.testing.assert_allclose(w, a.mean(axis=1) / 4.0, rtol=1e-5)


def test_small_tau_gives_uniform_weights_and_large_tau_the_argmax():
  w = np.array([0.003, -0.001, 0.002, 0.0005])
  uniform, r = gsw.semantic_weights(w, tau=1e-9)
  assert r == 4 and np.allclose(uniform, 1.0)
  peaked, _ = gsw.semantic_weights(w, tau=1e6, r=2.0)
  assert peaked[0] == pytest.approx(2.0) and peaked[1:].sum() == pytest.approx(0.0, abs=1e-9)
  middle, _ = gsw.semantic_weights(w, tau=400)
  assert middle.sum() == pytest.approx(4.0) and middle.argmax() == 0
  assert list(np.argsort(middle)) == list(np.argsort(w))  # monotone in W


def test_gsw_json_round_trip_and_mismatch(tmp_path):
  settings = dict(backbone="resnet18", feature_layer="stage4", tau=400.0, r=4.0)
  gsw.save(str(tmp_path), [1e-3, 2e-3], [1.5, 2.5], settings)
  record = json.load(open(tmp_path / layout.GSW_FILE))
  assert record["W"] == [1e-3, 2e-3] and record["W_prime"] == [1.5, 2.5]
  assert gsw.load(str(tmp_path), settings)["tau"] == 400.0
  with pytest.raises(UserError, match="tau=400.0 there, 3100.0 now"):
    gsw.load(str(tmp_path), dict(settings, tau=3100.0))
  assert gsw.load(str(tmp_path / "elsewhere"), settings) is None
