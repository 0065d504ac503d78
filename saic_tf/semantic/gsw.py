"""GSW, gradient-based semantic weights (paper Eq. 2-4), computed once on the frozen network.

  w_ck = 1/(MN) Σ_m,n ∂y_c / ∂f_k^{mn}          (Eq. 2: spatial mean of the gradient)
  w_k  = 1/C Σ_c w_ck                            (Eq. 3: mean over the C outputs)
  W'   = r · softmax(τ W)                        (Eq. 4)

Because the class mean commutes with the derivative, Σ_c w_ck = spatial mean of ∂(Σ_c y_c)/∂f_k:
one gradient per batch instead of C (tests/test_gsw.py checks it against the per-class loop).
W is averaged over the images of `--gsw_batches` training batches.

Note on `--gsw_output=probs` (softmax confidence scores): the probabilities sum to 1 for every
input, so ∂(Σ_c p_c)/∂f = 0 and W vanishes up to rounding; W' is then uniform and SAIC trains
exactly like APIC. `compute` reports this (`class_mean_cancels`), and `--gsw_output=logits`
gives a W that does depend on the network.
"""
import os

import numpy as np
import tensorflow as tf

from saic_tf.common import layout
from saic_tf.common.config import differences
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_json


def batch_weights(features_model, head, images, output="probs"):
  """Per-image w_k [B, K] for a batch: spatial mean of ∂(1/C Σ_c y_c)/∂f_k."""
  features = features_model(images, training=False)
  with tf.GradientTape() as tape:
    tape.watch(features)
    logits = head(features, training=False)
    outputs = tf.nn.softmax(logits) if output == "probs" else logits
    # Images are independent (BatchNorm in inference mode), so the gradient of the batch sum
    # holds each image's own gradient.
    total = tf.reduce_sum(outputs)
  gradients = tape.gradient(total, features)
  num_outputs = tf.cast(tf.shape(logits)[-1], gradients.dtype)
  return tf.reduce_mean(gradients, axis=[1, 2]) / num_outputs


def compute(features_model, head, dataset, batches, output="probs"):
  """W [K] (float64 numpy): w_k averaged over the images of the first `batches` batches."""
  if output not in ("probs", "logits"):
    raise UserError(f"--gsw_output={output}: must be probs or logits")
  step = tf.function(lambda images: batch_weights(features_model, head, images, output))
  total, count = None, 0
  for images, _ in dataset.take(batches):
    per_image = step(images).numpy().astype(np.float64)
    total = per_image.sum(0) if total is None else total + per_image.sum(0)
    count += per_image.shape[0]
  if not count:
    raise UserError("GSW: the training set gave no batch")
  return total / count


def semantic_weights(w, tau, r=None):
  """W' = r · softmax(τ W) (Eq. 4); r defaults to K, so that uniform weights are all 1."""
  w = np.asarray(w, np.float64)
  r = float(len(w) if r is None else r)
  logits = tau * w
  logits -= logits.max()
  exp = np.exp(logits)
  return r * exp / exp.sum(), r


def cancels(w, dtype=np.float32):
  """True when W is indistinguishable from rounding noise (see the module note on probs)."""
  return bool(np.max(np.abs(w)) < 100 * np.finfo(dtype).eps)


def save(model_dir, w, w_prime, settings):
  record = dict(settings, W=[float(v) for v in w], W_prime=[float(v) for v in w_prime])
  return write_json(layout.gsw_path(model_dir), record)


def load(model_dir, expected_settings):
  """gsw.json's record if present and made with `expected_settings`, else None."""
  path = layout.gsw_path(model_dir)
  if not os.path.exists(path):
    return None
  record = read_json(path, "delete it to recompute GSW")
  changed = differences(record, expected_settings, expected_settings)
  if changed:
    raise UserError(f"{path} was computed with other settings ({changed}); delete it to "
                    "recompute GSW")
  return record
