"""GSW, gradient-based semantic weights (paper Eq. 2-4), computed once on the frozen network.

The network splits at the feature layer: f = F(x) [M, N, K], logits z = head(f) [C],
p = softmax(z). W [K] averages a per-image w_k over the images of `--gsw_batches` training
batches (E_x below). The variants (`--gsw`) differ in what w_k measures:

  paper      w_k = 1/C Σ_c 1/(MN) Σ_mn ∂z_c/∂f_k^{mn}         Eq. 2-3 literally, on logits
  magnitude  w_k = 1/C Σ_c |1/(MN) Σ_mn ∂p_c/∂f_k^{mn}|       how strongly the probabilities
                                                              move, whatever the direction
  label      w_k = 1/(MN) Σ_mn ∂ log p_y/∂f_k^{mn}            Grad-CAM's weight of the true
                                                              class y, signed
  fisher     w_k = Σ_c p_c Σ_mn (∂ log p_c/∂f_k^{mn})²       the diagonal of the Fisher
                                                              information, summed over positions

Why not `paper` alone: with a linear head on pooled features (GAP + dense, every backbone's
last block), ∂z_c/∂f_k^{mn} = A_kc/(MN), so `paper` gives the head kernel's class mean over MN,
the same for every image; it is the one direction of the kernel that softmax ignores (adding a
vector to every class's weights changes no probability), set by initialisation and weight decay.
On probabilities, its class mean is 0 exactly (Σ_c p_c = 1), hence `--gsw_output=probs` is
refused (TrainConfig.validate). `compute` measures how much w varies across images and the
trainer says so in one line when it does not.

`label` keeps Grad-CAM's sign: channels whose activation raises the true class's probability get
the largest weights, those that argue against it the smallest. `fisher` is the output-level
objective in disguise: for small feature errors δ = f' − f, uncorrelated across channels and
positions with the same variance at every position of a channel,
E KL(p(x) ‖ p(x')) ≈ ½ Σ_k w_k · 1/(MN) Σ_mn δ_k^{mn}² — half the feature loss
(losses.feature_distortion, which averages over the MN positions, hence the sum over positions
in w_k) weighted by W itself. tests/test_gsw.py checks this against a finite-difference KL.

Eq. 4 then gives W' = r · softmax(τ Ŵ). With `--gsw_scale=mean_abs` Ŵ = W / mean_k
|W_k|, so that one τ means the same spread of weights for every backbone, layer and variant;
`--gsw_scale=raw` is the paper's Ŵ = W. exp(H(W'/r)), the effective number of channels
(between 1 and K), says how concentrated the weights are. The defaults (`magnitude`,
`mean_abs`) are the ones bin/gsw_study chose on the validation split (docs/training.md, GSW).

The spatial sums Σ_mn ∂y/∂f_k^{mn} are one gradient: they are the derivative with respect to a
shift δ_k added to channel k at every position (`_shift_jacobian`), so `paper` and `label` take
one backward pass a batch and `magnitude` a Jacobian [C, K] a image (tests/test_gsw.py checks
them against the per-class loop). `fisher` squares per-position gradients, so it loops over
the C classes.
"""
import os

from absl import logging
import numpy as np
import tensorflow as tf

from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import GSW_SCALES, GSW_VARIANTS, differences
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_json

VARIANTS, SCALES = GSW_VARIANTS, GSW_SCALES
# W averages over a random subset of the training split drawn with this seed (the trainer);
# gsw.json records which images (gsw_images): W of the split's first batches, one class, is
# another W (formats.py, version 1).
SUBSET_SEED = 0
IMAGES = f"random subset, seed {SUBSET_SEED}"
# W counts as the same for every image when its spread across images is below this fraction of
# mean |W| (float32 rounding in the backward pass of a linear head gives about 1e-7).
IMAGE_INDEPENDENT = 1e-4
# Below this effective number of channels the feature loss falls on about one channel, which
# no τ chosen on validation did; typically a τ meant for another scale of W (the paper's
# τ = 400 is on its raw W; on W / mean |W| it leaves one channel).
CONCENTRATED = 2.0


def _head_float32(head, features):
  return tf.cast(head(features, training=False), tf.float32)


def _shift_jacobian(head, features, outputs_of_logits, per_output=False):
  """Σ_mn ∂o/∂f_k^{mn} of o = outputs_of_logits(logits) for every image: [B, K] for one output
  per image ([B]), or with `per_output` [B, O, K] for [B, O] outputs."""
  shift = tf.zeros_like(features[:, :1, :1, :])  # [B, 1, 1, K], broadcast over positions
  with tf.GradientTape() as tape:
    tape.watch(shift)
    outputs = outputs_of_logits(_head_float32(head, features + shift))
    total = outputs if per_output else tf.reduce_sum(outputs)
  if per_output:  # images are independent (BatchNorm in inference mode): a batch Jacobian
    jacobian = tape.batch_jacobian(outputs, shift)  # [B, O, 1, 1, K]
    return tf.cast(jacobian[:, :, 0, 0, :], tf.float32)
  return tf.cast(tape.gradient(total, shift)[:, 0, 0, :], tf.float32)


def _fisher_diagonal(head, features):
  """Σ_c p_c Σ_mn (∂ log p_c/∂f_k^{mn})² [B, K], one backward pass per class."""
  probs = tf.nn.softmax(_head_float32(head, features))
  classes = tf.shape(probs)[-1]

  def add_class(c, total):
    with tf.GradientTape() as tape:
      tape.watch(features)
      log_p = tf.nn.log_softmax(_head_float32(head, features))[:, c]
      summed = tf.reduce_sum(log_p)  # images are independent: each keeps its own gradient
    gradient = tf.cast(tape.gradient(summed, features), tf.float32)
    return c + 1, total + probs[:, c, None] * tf.reduce_sum(tf.square(gradient), axis=[1, 2])

  zeros = tf.zeros([tf.shape(features)[0], tf.shape(features)[-1]], tf.float32)
  return tf.while_loop(lambda c, _: c < classes, add_class, (0, zeros))[1]


def batch_weights(features_model, head, images, labels, variant="paper"):
  """Per-image w_k [B, K] of a batch (module doc); `labels` [B] are used by `label` only."""
  features = features_model(images, training=False)
  positions = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
  if variant == "paper":
    return _shift_jacobian(head, features, lambda z: tf.reduce_mean(z, -1)) / positions
  if variant == "magnitude":
    jacobian = _shift_jacobian(head, features, tf.nn.softmax, per_output=True)
    return tf.reduce_mean(tf.abs(jacobian), axis=1) / positions
  if variant == "label":
    labels = tf.cast(labels, tf.int32)
    return _shift_jacobian(head, features, lambda z: tf.gather(
        tf.nn.log_softmax(z), labels, axis=1, batch_dims=1)) / positions
  if variant == "fisher":
    return _fisher_diagonal(head, features)
  raise UserError(f"--gsw={variant}: must be one of {', '.join(VARIANTS)}")


def compute(features_model, head, dataset, batches, variant="paper"):
  """(W [K], spread): w_k averaged over the images of the first `batches` batches of
  (images, labels), and the largest standard deviation of w_k across those images relative to
  mean |W| (0 when W is the same for every image). float64 numpy."""
  if variant not in VARIANTS:
    raise UserError(f"--gsw={variant}: must be one of {', '.join(VARIANTS)}")
  step = tf.function(lambda x, y: batch_weights(features_model, head, x, y, variant))
  total = total_squares = None
  count = 0
  for images, labels in dataset.take(batches):
    per_image = step(images, labels).numpy().astype(np.float64)
    if total is None:
      total, total_squares = np.zeros(per_image.shape[1]), np.zeros(per_image.shape[1])
    total += per_image.sum(0)
    total_squares += np.square(per_image).sum(0)
    count += per_image.shape[0]
  if not count:
    raise UserError("GSW: the training set gave no batch")
  w = total / count
  deviation = np.sqrt(np.maximum(total_squares / count - np.square(w), 0.0))
  scale = np.mean(np.abs(w))
  return w, float(np.max(deviation) / scale) if scale > 0 else 0.0


def normalized(w, scale="mean_abs"):
  """Ŵ of Eq. 4 (module doc): W / mean |W| for `mean_abs`, W itself for `raw`."""
  w = np.asarray(w, np.float64)
  if scale == "raw":
    return w
  if scale != "mean_abs":
    raise UserError(f"--gsw_scale={scale}: must be one of {', '.join(SCALES)}")
  mean_abs = np.mean(np.abs(w))
  return w / mean_abs if mean_abs > 0 else w


def semantic_weights(w, tau, r=None):
  """W' = r · softmax(τ W) (Eq. 4); r defaults to K, so that uniform weights are all 1."""
  w = np.asarray(w, np.float64)
  r = float(len(w) if r is None else r)
  logits = tau * w
  logits -= logits.max()
  exp = np.exp(logits)
  return r * exp / exp.sum(), r


def effective_channels(w_prime):
  """exp(H(W'/ΣW')): K for uniform weights, 1 when one channel takes them all."""
  p = np.asarray(w_prime, np.float64)
  p = p / p.sum()
  nonzero = p[p > 0]
  return float(np.exp(-np.sum(nonzero * np.log(nonzero))))


def cancels(w, dtype=np.float32):
  """True when W is indistinguishable from rounding noise (W ≡ 0)."""
  return bool(np.max(np.abs(w)) < 100 * np.finfo(dtype).eps)


def describe(w, spread, variant):
  """The log line that says when W carries no information about the images, else None."""
  if cancels(w):
    return (f"gsw: W is zero up to rounding (max |w_k| = {np.max(np.abs(w)):.3g}): W' is "
            "uniform and SAIC trains like APIC")
  if spread < IMAGE_INDEPENDENT:
    why = (" (a linear head on pooled features: Eq. 2-3 on logits reduce to the head kernel's "
           "class mean / (M·N)); --gsw=magnitude, label or fisher, or an earlier "
           "--feature_layer, depend on the images" if variant == "paper" else "")
    return (f"gsw: W is the same for every image (spread {spread:.1e} of mean |W|){why}")
  return None


def concentration(w_prime, tau, scale):
  """The log line that says when W' leaves the feature loss about one channel, else None."""
  effective = effective_channels(w_prime)
  if effective >= CONCENTRATED:
    return None
  hint = "lower --tau"
  # Hundreds: the paper's range (400 to 3100), far above what the normalised scale needs.
  if scale == "mean_abs" and tau >= 100:
    hint += (" (the paper's τ = 400 was for raw W, --gsw_scale=raw; on W / mean |W| the "
             "validation split tried τ of 0.5 to 8: docs/training.md, GSW)")
  return (f"gsw: τ={tau:g} puts {np.max(w_prime) / np.sum(w_prime):.0%} of W' on one channel "
          f"({effective:.1f} effective of {len(w_prime)}): the feature loss sees little else; "
          + hint)


def save(model_dir, w, w_prime, settings):
  record = dict(settings, W=[float(v) for v in w], W_prime=[float(v) for v in w_prime])
  return write_json(layout.gsw_path(model_dir), formats.stamped(record))


def read(path):
  """A gsw.json's record, in today's format (formats.py)."""
  return formats.read("gsw", path, "delete it to recompute GSW")


def load(model_dir, expected_settings):
  """gsw.json's record if present and made with `expected_settings`, else None."""
  path = layout.gsw_path(model_dir)
  if not os.path.exists(path):
    return None
  record = read(path)
  changed = differences(record, expected_settings, expected_settings)
  if changed:
    raise UserError(f"{path} was computed with other settings ({changed}); delete it to "
                    "recompute GSW")
  return record


def log_summary(w_prime, tau, r, path):
  logging.info("gsw: W' in [%.4g, %.4g] over %d channels, %.1f effective (τ=%g, r=%g) -> %s",
               np.min(w_prime), np.max(w_prime), len(w_prime), effective_channels(w_prime),
               tau, r, path)
