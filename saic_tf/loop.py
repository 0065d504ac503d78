"""A resumable keras fit: checkpoints every N steps, progress lines and TensorBoard scalars.

Used by every trained part of a run (downstream classifier, TDIC, APIC/SAIC). The optimizer's
step counter is the clock: a restored checkpoint sets it, and training stops at a total step
count however often the run was interrupted.
"""
import datetime
import math
import os
import time

from absl import logging
import tensorflow as tf
from tensorflow import keras


def current_step(model):
  """The optimizer's step counter (a MirroredVariable under a strategy) as a Python int."""
  return int(model.optimizer.iterations.numpy())


class StepCheckpointer(keras.callbacks.Callback):
  """Saves every `every` steps and at `total_steps`, where it also stops training."""

  def __init__(self, manager, total_steps, every):
    super().__init__()
    self.manager, self.total_steps, self.every = manager, total_steps, every

  def on_train_batch_end(self, batch, logs=None):
    step = current_step(self.model)
    if step % self.every == 0 or step >= self.total_steps:
      self.manager.save(checkpoint_number=step)
    if step >= self.total_steps:
      self.model.stop_training = True


_PROGRESS_FORMATS = {"loss": "loss %.5f", "psnr": "PSNR %.2f dB", "accuracy": "acc %.3f"}


class TrainingMonitor(keras.callbacks.Callback):
  """Progress lines (step, loss, PSNR or accuracy, img/s, ETA), TensorBoard scalars, images."""

  def __init__(self, part, log_dir, total_steps, batch_size, log_every, image_every=None,
               preview_images=None):
    super().__init__()
    self.part, self.total_steps, self.batch_size = part, total_steps, batch_size
    self.log_every, self.image_every = log_every, image_every
    self.preview_images = preview_images
    self.writer = tf.summary.create_file_writer(log_dir)

  def on_train_begin(self, logs=None):
    self._mark = (time.time(), current_step(self.model))

  def on_train_batch_end(self, batch, logs=None):
    step = current_step(self.model)
    if self.preview_images is not None and (step % self.image_every == 0 or
                                            step == self.total_steps):
      self._write_images(step)
    if step % self.log_every and step < self.total_steps:
      return
    now = time.time()
    last_time, last_step = self._mark
    self._mark = (now, step)
    steps_per_second = (step - last_step) / max(now - last_time, 1e-9)
    images_per_second = steps_per_second * self.batch_size
    eta = datetime.timedelta(
        seconds=round((self.total_steps - step) / max(steps_per_second, 1e-9)))
    learning_rate = self.model.optimizer.learning_rate
    if callable(learning_rate):  # a schedule
      learning_rate = learning_rate(self.model.optimizer.iterations)
    learning_rate = float(keras.backend.get_value(learning_rate))
    shown = "  ".join(fmt % logs[name] for name, fmt in _PROGRESS_FORMATS.items() if name in logs)
    logging.info("%s step %d/%d  %s  %.1f img/s  ETA %s", self.part, step, self.total_steps,
                 shown, images_per_second, eta)
    with self.writer.as_default(step=step):
      for name, value in logs.items():
        tf.summary.scalar(name, value)
      tf.summary.scalar("learning_rate", learning_rate)
      tf.summary.scalar("images_per_second", images_per_second)
    for metric in self.model.metrics:  # the next line averages over the next interval only
      metric.reset_state()

  def _write_images(self, step):
    reconstructions = self.model.codec(self.preview_images, training=False)
    side_by_side = tf.concat([self.preview_images, reconstructions], axis=2)
    with self.writer.as_default(step=step):
      tf.summary.image("original | reconstruction", side_by_side, max_outputs=4)

  def on_train_end(self, logs=None):
    self.writer.flush()


def fit_resumably(model, checkpoint, checkpoint_dir, make_dataset, total_steps, every,
                  monitor):
  """model.fit to `total_steps` optimizer steps, restoring and saving `checkpoint` on the way.

  `make_dataset(start_step)` must give the batches from that step on. Returns False when the
  checkpoint was already at `total_steps` (nothing to do).
  """
  manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
  start = current_step(model)
  if start >= total_steps:
    logging.info("%s: complete at step %d (%s), skipping", monitor.part, start, checkpoint_dir)
    return False
  if start:
    logging.info("%s: resuming from step %d (%s)", monitor.part, start,
                 manager.latest_checkpoint)
  every = min(every, total_steps)
  model.fit(make_dataset(start), steps_per_epoch=every, initial_epoch=start // every,
            epochs=math.ceil(total_steps / every), verbose=0,
            callbacks=[StepCheckpointer(manager, total_steps, every), monitor])
  return True


def part_dirs(model_dir, part):
  """(checkpoint dir, TensorBoard dir) of one part of the run (tdic, saic, downstream, ...)."""
  return os.path.join(model_dir, part), os.path.join(model_dir, "logs", part)


