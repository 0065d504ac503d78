"""Training objectives. Each returns one loss per image ([B]); the trainer averages them over the
global batch (tf.nn.compute_average_loss), which is what keeps gradients right under
tf.distribute strategies."""
import tensorflow as tf


def pixel_mse(images, reconstructions):
  """TDIC distortion (paper Eq. 5): mean squared pixel error of each image, on [0, 1] values."""
  return tf.reduce_mean(tf.math.squared_difference(images, reconstructions), axis=[1, 2, 3])
