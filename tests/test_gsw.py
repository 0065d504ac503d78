import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
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


def per_class_gradients(features_model, head, images, output):
  """∂y_c/∂f [C, B, M, N, K] of outputs y = logits, probs or log-probs, one class at a time."""
  features = features_model(images)
  classes = head(features).shape[-1]
  per_class = []
  for c in range(classes):
    with tf.GradientTape() as tape:
      tape.watch(features)
      logits = head(features)
      outputs = dict(logits=logits, probs=tf.nn.softmax(logits),
                     log_probs=tf.nn.log_softmax(logits))[output]
      y_c = tf.reduce_sum(outputs[:, c])
    per_class.append(tape.gradient(y_c, features))
  return np.stack(per_class), tf.nn.softmax(head(features)).numpy()


def per_class_reference(features_model, head, images, labels, variant):
  """Each variant's w_k [B, K] written out from per-class gradients (the module doc's table)."""
  if variant == "paper":
    g, _ = per_class_gradients(features_model, head, images, "logits")
    return g.mean(axis=(2, 3)).mean(0)
  if variant == "magnitude":
    g, _ = per_class_gradients(features_model, head, images, "probs")
    return np.abs(g.mean(axis=(2, 3))).mean(0)
  g, p = per_class_gradients(features_model, head, images, "log_probs")
  if variant == "label":
    return np.stack([g[y, b].mean(axis=(0, 1)) for b, y in enumerate(labels)])
  return np.einsum("bc,cbk->bk", p, np.square(g).sum(axis=(2, 3)))  # fisher


def small_network(seed=4):
  """A conv feature layer and a non-linear head (conv, GAP, dense): w depends on the image."""
  keras.utils.set_random_seed(seed)
  images = keras.Input((None, None, 3))
  features_model = keras.Model(images, keras.layers.Conv2D(8, 3, activation="relu")(images))
  f = keras.Input((None, None, 8))
  h = keras.layers.Conv2D(6, 3, activation="relu")(f)
  head = keras.Model(f, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(h)))
  return features_model, head


def test_paper_on_a_linear_head_is_the_kernels_class_mean_over_mn():
  head, a, _ = linear_head(channels=6, classes=4)
  images = tf.random.normal([3, 5, 7, 6], seed=1)  # M x N = 35
  w = gsw.batch_weights(identity_features(6), head, images, tf.zeros([3]), "paper").numpy()
  expected = a.mean(axis=1) / 35.0  # ∂y_c/∂f_k^{mn} = A_kc / MN, the same at every position
  np.testing.assert_allclose(w, np.tile(expected, (3, 1)), rtol=1e-5)


def test_probs_gradient_per_class_has_its_closed_form_and_its_class_mean_cancels():
  """Why --gsw_output=probs is refused: Σ_c ∂p_c/∂f = 0 exactly."""
  head, a, b = linear_head(channels=5, classes=3, seed=2)
  images = tf.random.normal([2, 4, 4, 5], seed=3)
  g, _ = per_class_gradients(identity_features(5), head, images, "probs")
  w_ck = g.mean(axis=(2, 3))
  pooled = tf.reduce_mean(images, axis=[1, 2]).numpy()
  p = tf.nn.softmax(pooled @ a + b).numpy()  # [B, C]
  # ∂p_c/∂f_k^{mn} = p_c (A_kc - Σ_j p_j A_kj) / MN
  expected = p.T[:, :, None] * (a.T[:, None, :] - (p @ a.T)[None]) / 16.0
  np.testing.assert_allclose(w_ck, expected, rtol=1e-4, atol=1e-7)
  assert np.max(np.abs(w_ck.mean(0))) < 1e-7 < np.max(np.abs(w_ck))
  assert gsw.cancels(w_ck.mean(0).mean(0))


@pytest.mark.parametrize("variant", gsw.VARIANTS)
def test_each_variant_equals_its_per_class_definition(variant):
  features_model, head = small_network()
  batch = tf.random.uniform([4, 12, 12, 3], seed=5)
  labels = np.array([0, 3, 4, 3])
  expected = per_class_reference(features_model, head, batch, labels, variant)
  fast = gsw.batch_weights(features_model, head, batch, tf.constant(labels), variant).numpy()
  np.testing.assert_allclose(fast, expected, rtol=1e-4, atol=1e-9)
  if variant != "paper":  # the non-linear head: w differs between images
    assert np.max(np.abs(fast[0] - fast[1])) > 1e-3 * np.max(np.abs(fast))


def test_fisher_weights_predict_the_kl_of_small_feature_errors():
  """E KL(p(f) ‖ p(f + δ)) ≈ ½ Σ_k w_k · E mean_mn δ_k² for i.i.d. δ (the module doc), checked
  against the exact KL averaged over random δ."""
  features_model, head = small_network(seed=8)
  image = tf.random.uniform([1, 10, 10, 3], seed=9)
  w = gsw.batch_weights(features_model, head, image, tf.zeros([1]), "fisher").numpy()[0]
  features = features_model(image)
  p = tf.nn.softmax(head(features))
  epsilon, draws = 1e-2, 400
  delta = epsilon * tf.random.normal([draws] + features.shape[1:], seed=10)
  q = tf.nn.softmax(head(features + delta))
  kl = tf.reduce_sum(p * (tf.math.log(p) - tf.math.log(q)), axis=-1).numpy()
  predicted = 0.5 * np.sum(w) * epsilon**2  # E mean_mn δ² = ε² for every channel
  assert kl.mean() == pytest.approx(predicted, rel=0.1)


def test_compute_averages_over_images_and_measures_their_spread():
  head, a, _ = linear_head(channels=4, classes=3, seed=6)
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.random.normal([10, 2, 2, 4], seed=7), tf.zeros([10], tf.int64))).batch(4)
  w, spread = gsw.compute(identity_features(4), head, dataset, batches=2, variant="paper")
  np.testing.assert_allclose(w, a.mean(axis=1) / 4.0, rtol=1e-5)
  assert spread < gsw.IMAGE_INDEPENDENT
  assert "the head kernel's class mean" in gsw.describe(w, spread, "paper")
  w, spread = gsw.compute(identity_features(4), head, dataset, batches=2, variant="fisher")
  assert spread > 0.01 and gsw.describe(w, spread, "fisher") is None


def test_mean_abs_scaling_makes_tau_independent_of_the_scale_of_w():
  """Scaling the head's kernel scales paper's W; W' under --gsw_scale=mean_abs does not move."""
  head, a, b = linear_head(channels=6, classes=4, seed=11)
  images = tf.random.normal([2, 3, 3, 6], seed=12)
  w = gsw.batch_weights(identity_features(6), head, images, tf.zeros([2]), "paper")
  head.layers[-1].set_weights([10 * a, b])
  w10 = gsw.batch_weights(identity_features(6), head, images, tf.zeros([2]), "paper")
  np.testing.assert_allclose(w10, 10 * w, rtol=1e-5)
  scaled = [gsw.semantic_weights(gsw.normalized(v.numpy()[0], "mean_abs"), tau=2.0)[0]
            for v in (w, w10)]
  np.testing.assert_allclose(scaled[0], scaled[1], rtol=1e-5)  # float32 gradients
  raw = [gsw.semantic_weights(gsw.normalized(v.numpy()[0], "raw"), tau=2.0)[0] for v in (w, w10)]
  assert not np.allclose(raw[0], raw[1])
  uniform = np.ones(6)
  assert gsw.effective_channels(uniform) == pytest.approx(6.0)
  assert gsw.effective_channels([6.0, 0, 0, 0, 0, 0]) == pytest.approx(1.0)


def test_a_tau_that_leaves_one_channel_is_named_in_the_log():
  """The paper's τ = 400 on W / mean |W| puts the whole feature loss on one channel."""
  w = gsw.normalized(np.array([0.003, 0.001, 0.002, 0.0005]), "mean_abs")
  assert gsw.concentration(gsw.semantic_weights(w, tau=2.0)[0], 2.0, "mean_abs") is None
  line = gsw.concentration(gsw.semantic_weights(w, tau=400.0)[0], 400.0, "mean_abs")
  assert "τ=400 puts 100% of W' on one channel (1.0 effective of 4)" in line
  assert "raw W" in line


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


def test_probs_is_refused_with_one_line_that_says_why():
  with pytest.raises(UserError, match=r"class mean is 0 exactly \(Σ_c p_c = 1\)"):
    TrainConfig(tau=400.0, gsw_output="probs").validate()
  with pytest.raises(UserError, match="--gsw=gradcam: must be one of paper, magnitude"):
    TrainConfig(tau=400.0, gsw="gradcam").validate()


def test_the_default_variant_gives_weights_that_depend_on_the_network():
  """Two classifiers that differ only in their seed give different W' (TrainConfig's defaults)."""
  config = TrainConfig(tau=1.0)
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.random.uniform([8, 12, 12, 3], seed=13), tf.constant([0, 1, 2, 3, 4, 0, 1, 2]))).batch(4)
  weights = []
  for seed in (0, 1):
    features_model, head = small_network(seed)
    w, _ = gsw.compute(features_model, head, dataset, batches=2, variant=config.gsw)
    weights.append(gsw.semantic_weights(gsw.normalized(w, config.gsw_scale), config.tau)[0])
  assert np.max(np.abs(weights[0] - weights[1])) > 1e-3


def test_records_of_earlier_versions_keep_their_meaning(tmp_path):
  """A version-1 gsw.json without the newer settings meant the paper's variant on the raw
  scale, from the split's first batches; a config.json with --gsw_output=probs resumes as APIC
  or TDIC."""
  settings = dict(backbone="resnet18", tau=400.0, gsw="paper", gsw_scale="raw", holdout_every=0,
                  gsw_images="the first batches of the split")
  (tmp_path / layout.GSW_FILE).write_text(json.dumps(dict(backbone="resnet18", tau=400.0,
                                                          W=[1e-3], W_prime=[1.0])))
  assert gsw.load(str(tmp_path), settings)["tau"] == 400.0
  with pytest.raises(UserError, match="gsw_images='the first batches of the split' there"):
    gsw.load(str(tmp_path), dict(settings, gsw_images=gsw.IMAGES))
  # Written today (version 2), a record means what it says: a setting it lacks is no value.
  gsw.save(str(tmp_path), [1e-3], [1.0], dict(backbone="resnet18", tau=400.0))
  assert json.load(open(tmp_path / layout.GSW_FILE))["format_version"] == 2
  with pytest.raises(UserError, match="--gsw=None there, 'paper' now"):
    gsw.load(str(tmp_path), settings)
  old = dict(TrainConfig(model_dir=str(tmp_path), loss="apic").to_dict(), gsw_output="probs")
  (tmp_path / "config.json").write_text(json.dumps(old))
  TrainConfig(model_dir=str(tmp_path), loss="apic").write_or_check(write=False)
  with pytest.raises(UserError, match="--gsw_output='probs' there, 'logits' now"):
    TrainConfig(model_dir=str(tmp_path), loss="saic", tau=400.0).write_or_check()


@pytest.mark.parametrize("saved_gsw", [dict(gsw="paper", gsw_scale="raw"), {}])
def test_a_saic_run_of_the_earlier_defaults_is_told_how_to_resume(tmp_path, saved_gsw):
  """Made when the defaults were the paper's (or before --gsw existed, which meant the same):
  the same command now is refused with the flags that resume it, which do."""
  saved = TrainConfig(model_dir=str(tmp_path), tau=400.0, gsw="paper", gsw_scale="raw").to_dict()
  for key in ("gsw", "gsw_scale"):
    saved.pop(key)
  (tmp_path / "config.json").write_text(json.dumps(dict(saved, **saved_gsw)))
  with pytest.raises(UserError, match=r"add --gsw=paper --gsw_scale=raw\), or another"):
    TrainConfig(model_dir=str(tmp_path), tau=400.0).write_or_check()
  # A paper flagfile's τ changed with the defaults: the hint names it too.
  with pytest.raises(UserError, match=r"add --tau=400.0 --gsw=paper --gsw_scale=raw\)"):
    TrainConfig(model_dir=str(tmp_path), tau=8.0).write_or_check()
  # What the run was, read back: the paper's variant, whatever today's default.
  assert (TrainConfig.read(str(tmp_path)).gsw, TrainConfig.read(str(tmp_path)).gsw_scale) == (
      "paper", "raw")
  TrainConfig(model_dir=str(tmp_path), tau=400.0, gsw="paper", gsw_scale="raw").write_or_check()
  with pytest.raises(UserError, match="--gsw='paper' there, 'fisher' now") as refusal:
    TrainConfig(model_dir=str(tmp_path), tau=400.0, gsw="fisher", gsw_scale="raw").write_or_check()
  assert "earlier defaults" not in str(refusal.value)  # not the defaults: no hint
