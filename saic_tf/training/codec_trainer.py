"""The codec's Keras model for training: one objective per image, a train_step that reads like
the paper (x' = D(Q(E(x))), loss, straight-through gradients into E and D), and the metrics
Keras reports (loss, PSNR, MSE, nominal bpp)."""
import tensorflow as tf
from tensorflow import keras

from saic_tf.codec.networks import pixel_mse


class CodecTrainer(keras.Model):
  """Trains a BinaryCodec on one objective: loss(x, D(Q(E(x)))) per image."""

  def __init__(self, codec, objective, **kwargs):
    super().__init__(**kwargs)
    self.codec = codec
    self.objective = objective
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.psnr_tracker = keras.metrics.Mean(name="psnr")
    self.mse_tracker = keras.metrics.Mean(name="mse")
    self.bpp_tracker = keras.metrics.Mean(name="bpp")

  @property
  def metrics(self):
    return [self.loss_tracker, self.psnr_tracker, self.mse_tracker, self.bpp_tracker]

  def call(self, images, training=False):
    return self.codec(images, training=training)

  def _update_metrics(self, images, reconstructions, per_image_loss):
    self.loss_tracker.update_state(per_image_loss)
    self.psnr_tracker.update_state(tf.image.psnr(images, reconstructions, max_val=1.0))
    self.mse_tracker.update_state(pixel_mse(images, reconstructions))
    shape = tf.shape(images)
    bpp = self.codec.nominal_bpp(shape[1], shape[2])
    self.bpp_tracker.update_state(tf.fill([shape[0]], tf.cast(bpp, tf.float32)))
    return {m.name: m.result() for m in self.metrics}

  def train_step(self, batch):
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    with tf.GradientTape() as tape:
      reconstructions = self.codec(images, training=True)
      per_image_loss = self.objective(images, reconstructions)
      # Mean over the *global* batch, so that summing gradients over replicas is right.
      loss = tf.nn.compute_average_loss(per_image_loss)
    # minimize() applies the loss scaling of a LossScaleOptimizer (--mixed_precision).
    self.optimizer.minimize(loss, self.codec.trainable_variables, tape=tape)
    return self._update_metrics(images, reconstructions, per_image_loss)

  def test_step(self, batch):
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    reconstructions = self.codec(images, training=False)
    return self._update_metrics(images, reconstructions, self.objective(images, reconstructions))
