"""The binary codec: encoder E, binarizer Q (paper Eq. 7) and decoder D, as Keras models.

Architecture (why): E is a stack of stride-2 convolutions, each followed by a residual block, so
the total stride is s = 2^k; a 3x3 convolution with a sigmoid gives C latent channels, which Q
makes binary. D mirrors it with sub-pixel upsampling (a convolution to 4x the channels, then
depth-to-space), which avoids the checkerboard artefacts of transposed convolutions. Residual
blocks let the straight-through gradient of Q reach the early layers in a deep stack. There is no
normalization layer: a codec must give the same output for an image whatever else is in its
batch, and at any image size; and there is no GDN, whose tensorflow-compression ops stock
TF Serving and TFLite cannot run. All layers are core Keras layers.

The rate is fixed by the latent shape: bpp = C * (H/s) * (W/s) / (H * W) = C / s^2.
"""
import math

import tensorflow as tf
from tensorflow import keras

layers = keras.layers


def pixel_mse(images, reconstructions):
  """Mean squared pixel error of each image [B] on [0, 1] values: TDIC's distortion (paper
  Eq. 5), and the MSE column of the evaluation."""
  return tf.reduce_mean(tf.math.squared_difference(images, reconstructions), axis=[1, 2, 3])


def check_stride(stride):
  if stride < 2 or stride & (stride - 1):
    raise ValueError(f"--stride={stride}: must be a power of two >= 2 (e.g. 8)")
  return int(math.log2(stride))


def channels_for_bpp(bpp, stride):
  """C = bpp * s^2 latent channels; refuses a rate for which C is not a whole number >= 1."""
  check_stride(stride)
  channels = bpp * stride * stride
  if channels < 1 or abs(channels - round(channels)) > 1e-6:
    raise ValueError(
        f"--bpp={bpp:g} gives C = bpp*stride^2 = {channels:g} latent channels at "
        f"--stride={stride}; C must be a whole number >= 1 (e.g. --bpp=0.125, 0.25 or 0.5 "
        f"at stride 8)")
  return int(round(channels))


def nominal_bpp(latent_shape, image_height, image_width):
  """Bits per pixel of a binary latent [..., h, w, C] for an H x W image: C*h*w / (H*W).

  Works on Python ints and on (int) tensors alike.
  """
  h, w, c = latent_shape[-3], latent_shape[-2], latent_shape[-1]
  return c * h * w / (image_height * image_width)


@tf.custom_gradient
def binarize(e):
  """Q(e) = 1 if e > 0.5 else 0 (paper Eq. 7); backward: straight-through (dQ/de := 1)."""
  def straight_through(upstream):
    return upstream
  return tf.cast(e > 0.5, e.dtype), straight_through


class Binarizer(layers.Layer):
  """Keras layer applying `binarize`: exact 0/1 forward, identity gradient."""

  def call(self, e):
    return binarize(e)


class DepthToSpace(layers.Layer):
  """Sub-pixel upsampling by `block_size` (tf.nn.depth_to_space: a builtin op in TFLite)."""

  def __init__(self, block_size=2, **kwargs):
    super().__init__(**kwargs)
    self.block_size = block_size

  def call(self, x):
    return tf.nn.depth_to_space(x, self.block_size)

  def get_config(self):
    return dict(super().get_config(), block_size=self.block_size)


def _residual_block(x, filters, name):
  y = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
  y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
  return layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, y]))


def build_encoder(channels, stride=8, filters=96):
  """E: float image [B, H, W, 3] in [0, 1] -> latent probabilities [B, H/s, W/s, C]."""
  steps = check_stride(stride)
  image = keras.Input(shape=(None, None, 3), name="image")
  x = image
  for i in range(steps):
    x = layers.Conv2D(filters, 5 if i == 0 else 3, strides=2, padding="same",
                      activation="relu", name=f"down{i}")(x)
    x = _residual_block(x, filters, name=f"enc_res{i}")
  # float32 under a mixed-precision policy: Q compares with 0.5 (Eq. 7) in full precision.
  e = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="latent",
                    dtype="float32")(x)
  return keras.Model(image, e, name="encoder")


def build_decoder(channels, stride=8, filters=96):
  """D: binary latent [B, h, w, C] -> image [B, s*h, s*w, 3] in [0, 1] (sigmoid output)."""
  steps = check_stride(stride)
  latent = keras.Input(shape=(None, None, channels), name="latent")
  x = layers.Conv2D(filters, 3, padding="same", activation="relu", name="stem")(latent)
  for i in range(steps):
    x = _residual_block(x, filters, name=f"dec_res{i}")
    x = layers.Conv2D(4 * filters, 3, padding="same", name=f"up{i}_conv")(x)
    x = layers.ReLU(name=f"up{i}_relu")(DepthToSpace(2, name=f"up{i}")(x))
  image = layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="image",
                        dtype="float32")(x)  # float32 images under mixed precision too
  return keras.Model(latent, image, name="decoder")


def pad_to_multiple(images, multiple):
  """Pads [B, H, W, C] at the bottom/right by repeating the edge, up to multiples of `multiple`.

  Edge repetition works for any size (even 1x1, where reflection cannot) and adds no new content
  for the encoder to spend bits on.
  """
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  pad_h = (-height) % multiple
  pad_w = (-width) % multiple
  images = tf.concat([images, tf.repeat(images[:, -1:], pad_h, axis=1)], axis=1)
  return tf.concat([images, tf.repeat(images[:, :, -1:], pad_w, axis=2)], axis=2)


class BinaryCodec(keras.Model):
  """x -> E -> Q -> D -> x'. Images of any size: padded to the stride, output cropped back."""

  def __init__(self, bpp, stride=8, filters=96, **kwargs):
    super().__init__(**kwargs)
    self.stride = stride
    self.channels = channels_for_bpp(bpp, stride)
    self.filters = filters
    self.encoder = build_encoder(self.channels, stride, filters)
    self.binarizer = Binarizer(name="binarizer", dtype="float32")
    self.decoder = build_decoder(self.channels, stride, filters)

  def encode(self, images, training=False):
    """Binary latents (float 0/1) [B, ceil(H/s), ceil(W/s), C] of float images in [0, 1]."""
    padded = pad_to_multiple(images, self.stride)
    return self.binarizer(self.encoder(padded, training=training))

  def decode(self, bits, height, width, training=False):
    """Images [B, height, width, 3] from binary latents (crops the stride padding off)."""
    return self.decoder(bits, training=training)[:, :height, :width, :]

  def call(self, images, training=False):
    bits = self.encode(images, training=training)
    return self.decode(bits, tf.shape(images)[1], tf.shape(images)[2], training=training)

  def nominal_bpp(self, height, width):
    """C / s^2 for sizes that are multiples of s; more when stride padding is needed."""
    h, w = -(-height // self.stride), -(-width // self.stride)
    return nominal_bpp((h, w, self.channels), height, width)


def build_codec(config):
  """The BinaryCodec of a run's settings (TrainConfig: --bpp, --stride, --filters)."""
  return BinaryCodec(config.bpp, config.stride, config.filters, name="codec")
