"""Per-image image-quality metrics (on [0, 1] floats) and classification metrics.

PSNR and SSIM come from tf.image; MSE is per pixel and channel, as in the paper's tables.
"""
import numpy as np
import tensorflow as tf

from saic_tf.codec.networks import pixel_mse


def image_metrics(images, reconstructions):
  """Per image: PSNR (dB), SSIM and MSE of [B, H, W, 3] floats in [0, 1]."""
  return dict(
      psnr=tf.image.psnr(images, reconstructions, max_val=1.0).numpy(),
      ssim=tf.image.ssim(images, reconstructions, max_val=1.0).numpy(),
      mse=pixel_mse(images, reconstructions).numpy())


def feature_mse(features, reconstructed_features):
  """Per image: mean squared difference of two feature maps (the paper's Table 1)."""
  axes = list(range(1, len(features.shape)))
  return tf.reduce_mean(tf.math.squared_difference(features, reconstructed_features),
                        axis=axes).numpy()


def confusion_matrix(labels, predictions, num_classes):
  """[true class, predicted class] counts."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
  return matrix


def accuracy(matrix):
  return float(np.trace(matrix) / max(matrix.sum(), 1))


def macro_f1(matrix):
  """Mean over classes of 2TP / (2TP + FP + FN), over the classes that occur in the labels or
  the predictions (those that occur in neither have no defined F1)."""
  tp = np.diag(matrix).astype(np.float64)
  fp = matrix.sum(axis=0) - tp
  fn = matrix.sum(axis=1) - tp
  present = (tp + fp + fn) > 0
  if not present.any():
    return 0.0
  return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))
