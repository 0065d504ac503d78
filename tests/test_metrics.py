import numpy as np
import pytest
import tensorflow as tf

from saic_tf.evaluation import metrics


def test_psnr_ssim_mse_against_hand_computed_values():
  x = np.zeros([2, 16, 16, 3], np.float32)
  y = x.copy()
  y[0] += 0.1  # MSE 0.01 -> PSNR 20 dB
  y[1, :8] = 0.5  # half the pixels off by 0.5: MSE 0.125 -> PSNR 10 log10(8) dB
  m = metrics.image_metrics(tf.constant(x), tf.constant(y))
  np.testing.assert_allclose(m["mse"], [0.01, 0.125], rtol=1e-5)
  np.testing.assert_allclose(m["psnr"], [20.0, 10 * np.log10(8)], rtol=1e-4)
  assert metrics.image_metrics(tf.constant(y), tf.constant(y))["ssim"] == pytest.approx([1, 1])
  # Constant images: SSIM = (2 μx μy + C1) / (μx² + μy² + C1) with C1 = (0.01)^2.
  a, b = np.full([1, 16, 16, 3], 0.2, np.float32), np.full([1, 16, 16, 3], 0.6, np.float32)
  c1 = 0.01 ** 2
  expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
  # rel 1e-3: tf.image.ssim's float32 E[x²] - E[x]² leaves a rounding-size variance whose size
  # depends on the CPU's kernels (1.3e-4 relative seen on a CI machine).
  assert metrics.image_metrics(tf.constant(a), tf.constant(b))["ssim"][0] == pytest.approx(
      expected, rel=1e-3)


def test_feature_mse_per_image():
  f = np.zeros([2, 3, 3, 4], np.float32)
  g = f.copy()
  g[1, 0, 0, 0] = 6.0  # 36 / 36 elements
  np.testing.assert_allclose(metrics.feature_mse(f, g), [0.0, 1.0])


def test_confusion_accuracy_and_macro_f1_on_a_small_matrix():
  labels = [0, 0, 0, 1, 1, 2]
  predictions = [0, 0, 1, 1, 2, 2]
  matrix = metrics.confusion_matrix(labels, predictions, 4)
  assert matrix.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
  assert metrics.accuracy(matrix) == pytest.approx(4 / 6)
  # F1: class 0: 2*2/(4+0+1) = 0.8; class 1: 2/(2+1+1) = 0.5; class 2: 2/(2+1+0) = 2/3;
  # class 3 occurs nowhere and is left out.
  assert metrics.macro_f1(matrix) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
