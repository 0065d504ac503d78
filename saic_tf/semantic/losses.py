"""The fine-tune's objectives on the frozen downstream network (TDIC's pixel MSE, Eq. 5, is
codec.networks.pixel_mse). Each returns one loss per image ([B]); the trainer averages them over
the global batch (tf.nn.compute_average_loss), which is what keeps gradients right under
tf.distribute strategies."""
import tensorflow as tf


def feature_distortion(features_model, channel_weights):
  """APIC / SAIC distortion (paper Eq. 10): Σ_k w'_k ‖f'_k − f_k‖² of each image.

  f = F(x) of the original is a target (no gradient; F is frozen and its variables are not
  trainable, so the tape records nothing of it); f' = F(x') carries the gradient to the codec.
  ‖·‖² is taken as the mean over the M×N positions (a constant 1/MN factor, which keeps the loss
  independent of the image size). APIC is this loss with every w'_k = 1, SAIC with GSW's W'.
  """
  weights = tf.constant(channel_weights, tf.float32)

  def objective(images, reconstructions):
    # float32 even under mixed precision: squared feature errors overflow float16.
    target = tf.stop_gradient(tf.cast(features_model(images, training=False), tf.float32))
    features = tf.cast(features_model(reconstructions, training=False), tf.float32)
    per_channel = tf.reduce_mean(tf.math.squared_difference(features, target), axis=[1, 2])
    return tf.reduce_sum(per_channel * weights, axis=-1)

  return objective


def output_divergence(classifier, features_model=None, feature_weight=0.0):
  """The KD reference (--loss=kd): KL(p(x) ‖ p(x')) of each image between the frozen network's
  class probabilities on the original x and on the reconstruction x', the output-level
  consistency that channel weighting (SAIC) stands in for; plus `feature_weight` times APIC's
  feature loss (all channel weights 1) when it is > 0."""
  features_loss = None
  if feature_weight:
    channels = features_model.output.shape[-1]
    features_loss = feature_distortion(features_model, [1.0] * channels)

  def objective(images, reconstructions):
    # float32: log-probabilities of near-certain classes underflow in bfloat16.
    target = tf.stop_gradient(tf.nn.log_softmax(
        tf.cast(classifier(images, training=False), tf.float32)))
    log_q = tf.nn.log_softmax(tf.cast(classifier(reconstructions, training=False), tf.float32))
    kl = tf.reduce_sum(tf.exp(target) * (target - log_q), axis=-1)
    if features_loss is None:
      return kl
    return kl + feature_weight * features_loss(images, reconstructions)

  return objective
