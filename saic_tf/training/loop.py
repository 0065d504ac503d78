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

from saic_tf.common import layout
from saic_tf.common.checkpoints import restore
from saic_tf.common.files import read_json, write_json
from saic_tf.common.errors import UserError


def current_step(model):
  """The optimizer's step counter (a MirroredVariable under a strategy) as a Python int."""
  return int(model.optimizer.iterations.numpy())


class NonFiniteLoss(UserError):
  """A NaN or infinite training loss (see StopOnNonFiniteLoss)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
  """Stops training at the first NaN or infinite loss, before any checkpoint holds its weights:
  the last good checkpoint stays the newest."""

  def __init__(self, part, manager):
    super().__init__()
    self.part, self.manager = part, manager

  def on_train_batch_end(self, batch, logs=None):
    loss = float((logs or {}).get("loss", 0.0))
    if not math.isfinite(loss):
      kept = (f"the last good checkpoint, {self.manager.latest_checkpoint}, is intact"
              if self.manager.latest_checkpoint else "no checkpoint of this part was written")
      raise NonFiniteLoss(
          f"{self.part}: the loss is {loss} at step {current_step(self.model)}; stopped "
          f"without saving ({kept}). Lower the learning rate, check the data, or try another "
          "--seed")


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
    self._last_step = self._mark[1]

  def _crossed(self, step, every):
    """A multiple of `every` lies in (last step, step] (steps_per_execution may skip some)."""
    return step // every > self._last_step // every or step >= self.total_steps

  def on_train_batch_end(self, batch, logs=None):
    step = current_step(self.model)
    log_now = self._crossed(step, self.log_every)
    if self.preview_images is not None and self._crossed(step, self.image_every):
      self._write_images(step)
    self._last_step = step
    if not log_now:
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


class SaveAtEpochEnd(keras.callbacks.Callback):
  """manager.save at the end of every epoch of a fit, numbered by the optimizer's step; and,
  with `record_time` (the chief), the part's training time so far (layout.TRAINING_TIME_FILE
  beside the checkpoints: this process's CPU and wall seconds, added up over every resumption up
  to the newest checkpoint, with their history [step, cpu, wall] at every checkpoint)."""

  def __init__(self, manager, record_time=True):
    super().__init__()
    self.manager = manager
    self.record_time = record_time
    self._mark = None

  def on_train_begin(self, logs=None):
    if self._mark is None:
      self._mark = (time.process_time(), time.time())

  def on_epoch_end(self, epoch, logs=None):
    step = current_step(self.model)
    self.manager.save(checkpoint_number=step)
    if self.record_time:
      self._record_time(step)

  def _record_time(self, step):
    now = (time.process_time(), time.time())
    path = os.path.join(self.manager.directory, layout.TRAINING_TIME_FILE)
    spent = read_json(path, "delete it") if os.path.exists(path) else {}
    history = spent.get("history") or ([[spent["step"], spent["cpu_seconds"],
                                         spent["wall_seconds"]]] if spent else [])
    history = [h for h in history if h[0] < step]  # not a later state whose checkpoint is lost
    cpu = (history[-1][1] if history else 0.0) + now[0] - self._mark[0]
    wall = (history[-1][2] if history else 0.0) + now[1] - self._mark[1]
    history.append([step, round(cpu, 1), round(wall, 1)])
    write_json(path, dict(step=step, cpu_seconds=round(cpu, 1), wall_seconds=round(wall, 1),
                          history=history))
    self._mark = now


def fit_resumably(model, checkpoint, checkpoint_dir, make_dataset, total_steps, every,
                  monitor, save_dir=None, on_nonfinite="stop"):
  """Trains to `total_steps` optimizer steps, restoring `checkpoint` from `checkpoint_dir` and
  saving it every `every` steps and at the end (to `save_dir`, default the same directory; see
  distribute.write_dir).

  Each checkpoint interval is one epoch of a model.fit on `make_dataset(start_step)` (the
  batches from that step on), so that a checkpoint lands exactly on each interval's last step
  whatever steps_per_execution is, and a kill loses at most one interval. The whole intervals
  share one model.fit: under a tf.distribute strategy in TF 2.14, model.fit's return blocks in
  the deletion of its input iterator for up to about a minute (the longer it ran, the longer;
  trained with one model.fit per interval, the classifier lost about 45 s at each epoch end),
  so one model.fit per interval would pay that at every checkpoint. A start between
  checkpoints (after --checkpoint_every changed) and a last interval shorter than `every` get a
  model.fit of their own.

  A NaN or infinite loss stops training without saving (`on_nonfinite="stop"`), or
  (`"skip"`) discards its interval: the weights go back to the last checkpoint and training
  goes on with the next interval's batches. Returns False when the checkpoint was already at
  `total_steps` (nothing to do).
  """
  manager = tf.train.CheckpointManager(checkpoint, save_dir or checkpoint_dir, max_to_keep=2)
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  if latest:
    restore(checkpoint, latest)
  step = current_step(model)
  if step >= total_steps:
    logging.info("%s: complete at step %d (%s), skipping", monitor.part, step, checkpoint_dir)
    return False
  if step:
    logging.info("%s: resuming from step %d (%s)", monitor.part, step, latest)
  if on_nonfinite == "skip" and not manager.latest_checkpoint:
    manager.save(checkpoint_number=step)  # something to go back to
  chief = save_dir in (None, checkpoint_dir)  # others save to a private directory
  callbacks = [StopOnNonFiniteLoss(monitor.part, manager), monitor,
               SaveAtEpochEnd(manager, record_time=chief)]
  while step < total_steps:
    length = min(every - step % every, total_steps - step)  # to the next checkpoint
    epochs = (total_steps - step) // every if length == every else 1
    try:
      model.fit(make_dataset(step), steps_per_epoch=length, epochs=epochs, verbose=0,
                callbacks=callbacks)
    except NonFiniteLoss as e:
      if on_nonfinite != "skip":
        raise
      failed = current_step(model)
      end = min(step + length * math.ceil((failed - step) / length), total_steps)
      restore(checkpoint, manager.latest_checkpoint)
      model.optimizer.iterations.assign(end)
      logging.warning("%s; --on_nonfinite=skip: steps %d to %d skipped (weights from %s)",
                      e, end - length + 1, end, manager.latest_checkpoint)
      manager.save(checkpoint_number=end)
    step = current_step(model)
  return True


def optimizer_for(config, optimizer):
  """`optimizer`, wrapped for dynamic loss scaling under --mixed_precision=mixed_float16."""
  if config.mixed_precision == "mixed_float16":
    return keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer


class Progress:
  """Progress lines of a long pass that is not a fit (bin/evaluate's passes over a split and its
  CLUB fits): items done / total, rate and ETA, like the training lines above.

  A line at each further tenth of the total, or after `every_seconds` without one, whichever
  comes first, and one at the end: a large split gets about ten lines, not one per image."""

  def __init__(self, what, total, unit="images", every_seconds=30.0, log=None):
    self.what, self.total, self.unit = what, int(total), unit
    self.every_seconds, self.log = every_seconds, log
    self.done = 0
    self._start = self._last = time.time()
    self._next_tenth = 1

  def update(self, count=1, note=""):
    """`count` more items done; `note` is added to the line, if one is due."""
    self.done += count
    now = time.time()
    tenths = 10 * self.done // max(self.total, 1)
    finished = self.done >= self.total
    if not (finished or tenths >= self._next_tenth or now - self._last >= self.every_seconds):
      return
    self._next_tenth, self._last = tenths + 1, now
    elapsed = now - self._start
    rate = max(self.done / max(elapsed, 1e-9), 1e-9)
    when = (f"done in {datetime.timedelta(seconds=round(elapsed))}" if finished else
            f"ETA {datetime.timedelta(seconds=round((self.total - self.done) / rate))}")
    (self.log or logging.info)(
        f"{self.what}: {self.done}/{self.total} {self.unit} "
        f"({100 * self.done // max(self.total, 1)} %)  {rate:.1f} {self.unit}/s  {when}" +
        (f"  {note}" if note else ""))
