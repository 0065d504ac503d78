"""SI: mutual information between downstream outputs y (original) and y' (compressed), estimated
with CLUB (Cheng et al., ICML 2020; paper Eq. 11).

A small Keras network q(y'|y) = N(μ(y), diag(exp(logvar(y)))) is fitted by maximum likelihood on
(y, y') pairs of the training split; then, on the test split,

  I_CLUB = E_p(y,y')[log q(y'|y)] − E_p(y) E_p(y')[log q(y'|y)]      (nats)

The second expectation is over every (y_i, y'_j) pair of the test split (the product of the
empirical marginals), which for a Gaussian q has a closed form in the mean and mean square of
y', so no pairs need to be drawn. CLUB is an upper bound of the mutual information when q
matches p(y'|y): for jointly Gaussian y, y' with correlation ρ it gives ρ²/(1−ρ²) per
dimension, against the true −½ log(1−ρ²). The log-variance is kept in [LOGVAR_MIN, LOGVAR_MAX]
so that y' = y (the "original" row) gives a large but finite value.
"""
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow import keras

LOGVAR_MIN, LOGVAR_MAX = -10.0, 4.0


@dataclasses.dataclass
class ClubSettings:
  hidden: int = 64
  steps: int = 2000
  batch_size: int = 256
  learning_rate: float = 1e-3
  seed: int = 0


def _conditional_gaussian(dims, hidden):
  y = keras.Input((dims,))
  h = keras.layers.Dense(hidden, activation="relu")(y)
  h = keras.layers.Dense(hidden, activation="relu")(h)
  mean = keras.layers.Dense(dims)(h)
  squash = keras.layers.Dense(dims, activation="sigmoid")(h)
  logvar = LOGVAR_MIN + (LOGVAR_MAX - LOGVAR_MIN) * squash
  return keras.Model(y, [mean, logvar])


def _log_likelihood(mean, logvar, y_prime):
  """log q(y'|y) per pair, without the constant −½ d log 2π (it cancels in I_CLUB)."""
  return -0.5 * tf.reduce_sum(tf.square(y_prime - mean) * tf.exp(-logvar) + logvar, axis=-1)


def fit(y, y_prime, settings=ClubSettings()):
  """q(y'|y) fitted by maximum likelihood on the pairs (rows of two [N, d] arrays)."""
  y = np.asarray(y, np.float32)
  y_prime = np.asarray(y_prime, np.float32)
  keras.utils.set_random_seed(settings.seed)
  q = _conditional_gaussian(y.shape[1], settings.hidden)
  optimizer = keras.optimizers.Adam(settings.learning_rate)
  # Its slots now: created inside `step`'s first call, they would make tf.function trace it twice.
  optimizer.build(q.trainable_variables)
  pairs = tf.data.Dataset.from_tensor_slices((y, y_prime)).shuffle(
      len(y), seed=settings.seed, reshuffle_each_iteration=True).repeat().batch(
          min(settings.batch_size, len(y)))

  @tf.function
  def step(batch_y, batch_y_prime):
    with tf.GradientTape() as tape:
      mean, logvar = q(batch_y, training=True)
      loss = -tf.reduce_mean(_log_likelihood(mean, logvar, batch_y_prime))
    optimizer.apply_gradients(zip(tape.gradient(loss, q.trainable_variables),
                                  q.trainable_variables))
    return loss

  for batch_y, batch_y_prime in pairs.take(settings.steps):
    step(batch_y, batch_y_prime)
  return q


def estimate(q, y, y_prime):
  """I_CLUB in nats on the pairs (rows of y and y'); see the module doc."""
  y = np.asarray(y, np.float32)
  y_prime = np.asarray(y_prime, np.float32)
  mean, logvar = (t.numpy().astype(np.float64) for t in q(y, training=False))
  precision = np.exp(-logvar)
  joint = -0.5 * np.sum((y_prime - mean) ** 2 * precision + logvar, axis=1)
  # E_j (y'_j − μ_i)² = mean(y'²) − 2 μ_i mean(y') + μ_i², per dimension.
  first, second = y_prime.mean(0), (y_prime.astype(np.float64) ** 2).mean(0)
  spread = second - 2 * mean * first + mean ** 2
  marginal = -0.5 * np.sum(spread * precision + logvar, axis=1)
  return float(np.mean(joint) - np.mean(marginal))


def mutual_information(train_pairs, test_pairs, settings=ClubSettings()):
  """Fit q on the training pairs, estimate I_CLUB on the test pairs."""
  return estimate(fit(*train_pairs, settings=settings), *test_pairs)
