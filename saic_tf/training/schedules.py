"""The learning rate of a codec stage (--lr_schedule, --warmup_steps): a linear warm-up from
peak/warmup to the peak over the first `warmup_steps` steps, then

  constant   the peak
  cosine     peak · (ALPHA + (1 − ALPHA) · ½(1 + cos(π t))), t going from 0 at the first step
             after warm-up to 1 at the stage's last step: down to ALPHA · peak there
  step       the peak, then peak · STEP_FACTOR for the last STEP_FRACTION of the steps

The rate is a function of the optimizer's step alone, so a resumed stage follows the same curve
(changing --steps on resume stretches it from then on).
"""
import math

import tensorflow as tf
from tensorflow import keras

ALPHA = 0.01
STEP_FACTOR, STEP_FRACTION = 0.1, 0.25


class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
  """See the module doc."""

  def __init__(self, peak, total_steps, warmup_steps=0, decay="constant"):
    super().__init__()
    if decay not in ("constant", "cosine", "step"):
      raise ValueError(f"unknown decay {decay!r}")
    self.peak, self.total_steps = float(peak), int(total_steps)
    self.warmup_steps, self.decay = int(min(warmup_steps, total_steps)), decay

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = float(self.warmup_steps)
    # The last step trained is total_steps - 1 (the optimizer counts from 0): t = 1 there.
    decaying = float(max(self.total_steps - self.warmup_steps - 1, 1))
    done = tf.clip_by_value((step - warmup) / decaying, 0.0, 1.0)
    if self.decay == "cosine":
      rate = self.peak * (ALPHA + (1 - ALPHA) * 0.5 * (1 + tf.cos(math.pi * done)))
    elif self.decay == "step":
      rate = tf.where(done >= 1 - STEP_FRACTION, self.peak * STEP_FACTOR, self.peak)
    else:
      rate = tf.constant(self.peak)
    if self.warmup_steps:
      rate = tf.where(step < warmup, self.peak * (step + 1) / warmup, rate)
    return rate

  def get_config(self):
    return dict(peak=self.peak, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                decay=self.decay)


def for_stage(config, peak, steps):
  """The stage's learning rate: the plain float `peak` for a constant rate without warm-up
  (what earlier runs used), else a WarmupThenDecay over the stage's `steps`."""
  if config.lr_schedule == "constant" and not config.warmup_steps:
    return peak
  return WarmupThenDecay(peak, steps, config.warmup_steps, config.lr_schedule)
