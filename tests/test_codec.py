import numpy as np
import pytest
import tensorflow as tf

from saic_tf.codec import networks as codec


def test_binarizer_forward_is_exactly_eq7():
  e = tf.constant([0.0, 0.2, 0.5, 0.5000001, 0.7, 1.0])
  np.testing.assert_array_equal(codec.binarize(e).numpy(), [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(codec.Binarizer()(e).numpy(), [0, 0, 0, 1, 1, 1])


def test_binarizer_gradient_is_straight_through():
  e = tf.Variable([[0.1, 0.6], [0.5, 0.9]])
  upstream = tf.constant([[1.5, -2.0], [0.25, 3.0]])
  with tf.GradientTape() as tape:
    y = tf.reduce_sum(codec.Binarizer()(e) * upstream)
  np.testing.assert_array_equal(tape.gradient(y, e).numpy(), upstream.numpy())


@pytest.mark.parametrize("bpp,channels", [(0.125, 8), (0.25, 16), (0.5, 32)])
def test_latent_shape_gives_the_nominal_bpp(bpp, channels):
  model = codec.BinaryCodec(bpp, stride=8, filters=8)
  images = tf.random.uniform([2, 32, 48, 3], seed=1)
  bits = model.encode(images)
  assert bits.shape == (2, 4, 6, channels)
  assert set(np.unique(bits.numpy())) <= {0.0, 1.0}
  assert codec.nominal_bpp(bits.shape, 32, 48) == bpp
  assert model.nominal_bpp(32, 48) == bpp


@pytest.mark.parametrize("bpp,stride", [(0.3, 8), (0.001, 8), (0.125, 6), (0.5, 1)])
def test_rates_without_a_whole_channel_count_are_refused(bpp, stride):
  with pytest.raises(ValueError, match="--bpp|--stride"):
    codec.channels_for_bpp(bpp, stride)


def test_other_strides_and_rates():
  assert codec.channels_for_bpp(1.0, 4) == 16
  assert codec.channels_for_bpp(0.0625, 16) == 16


@pytest.mark.parametrize("height,width", [(33, 47), (1, 1), (8, 5)])
def test_any_image_size_is_padded_and_cropped_back(height, width):
  model = codec.BinaryCodec(0.25, stride=8, filters=8)
  images = tf.random.uniform([1, height, width, 3], seed=2)
  out = model(images)
  assert out.shape == (1, height, width, 3)
  assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
  assert model.encode(images).shape == (1, -(-height // 8), -(-width // 8), 16)


def test_pad_to_multiple_repeats_the_edge():
  images = tf.reshape(tf.range(6, dtype=tf.float32), [1, 2, 3, 1])
  padded = codec.pad_to_multiple(images, 4)[0, :, :, 0].numpy()
  np.testing.assert_array_equal(padded, [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5],
                                         [3, 4, 5, 5]])
