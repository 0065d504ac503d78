"""Training: the codec's Keras train/test steps and the resumable run loop (paper Algorithm 1).

Stage 1 (TDIC) minimises the pixel MSE of Eq. 5. Checkpoints live in MODEL_DIR/<stage>/
(tf.train.CheckpointManager) and TensorBoard logs in MODEL_DIR/logs/<stage>/. Running the same
command again restores the newest checkpoint (weights, optimizer state and step); the data
pipeline is a function of (seed, step), so training continues on exactly the batches an
uninterrupted run would have seen and stops at --steps in total.
"""
import datetime
import math
import os
import time

from absl import logging
import tensorflow as tf
from tensorflow import keras

from saic_tf import codec as codec_lib
from saic_tf import data
from saic_tf import losses
from saic_tf.config import TrainConfig
from saic_tf.errors import UserError


def current_step(model):
  """The optimizer's step counter (a MirroredVariable under a strategy) as a Python int."""
  return int(model.optimizer.iterations.numpy())


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
    self.mse_tracker.update_state(losses.pixel_mse(images, reconstructions))
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
    variables = self.codec.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return self._update_metrics(images, reconstructions, per_image_loss)

  def test_step(self, batch):
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    reconstructions = self.codec(images, training=False)
    return self._update_metrics(images, reconstructions, self.objective(images, reconstructions))


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


class TrainingMonitor(keras.callbacks.Callback):
  """Progress lines (step, loss, PSNR, img/s, ETA) and TensorBoard scalars and images."""

  def __init__(self, stage, log_dir, total_steps, batch_size, log_every, image_every,
               preview_images):
    super().__init__()
    self.stage, self.total_steps, self.batch_size = stage, total_steps, batch_size
    self.log_every, self.image_every = log_every, image_every
    self.preview_images = preview_images
    self.writer = tf.summary.create_file_writer(log_dir)

  def on_train_begin(self, logs=None):
    self._mark = (time.time(), current_step(self.model))

  def on_train_batch_end(self, batch, logs=None):
    step = current_step(self.model)
    if step % self.image_every == 0 or step == self.total_steps:
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
    learning_rate = float(keras.backend.get_value(self.model.optimizer.learning_rate))
    logging.info("%s step %d/%d  loss %.5f  PSNR %.2f dB  %.1f img/s  ETA %s", self.stage,
                 step, self.total_steps, logs["loss"], logs["psnr"], images_per_second, eta)
    with self.writer.as_default(step=step):
      for name in ("loss", "psnr", "mse", "bpp"):
        tf.summary.scalar(name, logs[name])
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


def stage_dirs(model_dir, stage):
  return os.path.join(model_dir, stage), os.path.join(model_dir, "logs", stage)


def build_codec(config: TrainConfig):
  return codec_lib.BinaryCodec(config.bpp, config.stride, config.filters, name="codec")


def train_stage(config: TrainConfig, stage, objective, strategy):
  """Trains (or resumes) one stage to config.steps; returns test-split metrics and paths."""
  checkpoint_dir, log_dir = stage_dirs(config.model_dir, stage)
  train_source = data.load(config.dataset, "train", config.data_dir)
  test_source = data.load(config.dataset, "test", config.data_dir)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    codec = build_codec(config)
    model = CodecTrainer(codec, objective, name=f"{stage}_trainer")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    model.optimizer.build(codec.trainable_variables)
  checkpoint = tf.train.Checkpoint(codec=codec, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=3)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
  start = current_step(model)
  if start >= config.steps:
    logging.info("%s: complete at step %d (%s), skipping", stage, start, checkpoint_dir)
  else:
    if start:
      logging.info("%s: resuming from step %d (%s)", stage, start, manager.latest_checkpoint)
    logging.info("%s: training %d steps on %s (%d images, %dx%d), batch %d, %g bpp nominal",
                 stage, config.steps - start, config.dataset, train_source.num_examples,
                 config.image_size, config.image_size, config.batch_size,
                 codec.nominal_bpp(config.image_size, config.image_size))
    train_ds = data.train_dataset(train_source, config.image_size, config.batch_size,
                                  config.seed, start_step=start)
    preview = next(iter(data.eval_dataset(test_source, config.image_size, 4)))[0]
    every = min(config.checkpoint_every, config.steps)
    callbacks = [
        StepCheckpointer(manager, config.steps, every),
        TrainingMonitor(stage, log_dir, config.steps, config.batch_size,
                        min(config.log_every, config.steps), config.image_every, preview),
    ]
    model.fit(train_ds, steps_per_epoch=every, initial_epoch=start // every,
              epochs=math.ceil(config.steps / every), callbacks=callbacks, verbose=0)
  test_ds = data.eval_dataset(test_source, config.image_size, config.batch_size)
  metrics = model.evaluate(test_ds, return_dict=True, verbose=0)
  logging.info("%s: test split  loss %.5f  PSNR %.2f dB  MSE %.5f  %.4f bpp nominal", stage,
               metrics["loss"], metrics["psnr"], metrics["mse"], metrics["bpp"])
  return dict(stage=stage, step=current_step(model), checkpoint_dir=checkpoint_dir,
              log_dir=log_dir, test_metrics={k: float(v) for k, v in metrics.items()}), codec


def train(config: TrainConfig, strategy=None):
  """Algorithm 1 as far as implemented: stage 1 (TDIC). Returns the stage's summary dict."""
  if config.loss != "tdic" or config.tau is not None or config.r is not None:
    raise UserError("--loss=apic/saic, --tau and --r need the semantic stage (downstream "
                    "network, GSW), which is not implemented yet: only --loss=tdic trains")
  if config.init_from:
    raise UserError("--init_from is not implemented yet (it comes with the semantic stage)")
  try:  # refuse a bad --bpp/--stride before anything is written
    codec_lib.channels_for_bpp(config.bpp, config.stride)
  except ValueError as e:
    raise UserError(str(e)) from None
  config.write_or_check()
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy or tf.distribute.MirroredStrategy()
  if config.batch_size % strategy.num_replicas_in_sync:
    raise UserError(f"--batch_size={config.batch_size} is not divisible by the "
                    f"{strategy.num_replicas_in_sync} replicas")
  summary, _ = train_stage(config, "tdic", losses.pixel_mse, strategy)
  return summary
