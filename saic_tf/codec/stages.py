"""A run's trained codec stages (tdic, apic, saic): the networks restored from a stage's
checkpoint, its entropy model and the fingerprint that ties .saic files to both.

The entropy model (bitstream.EntropyModel) of a stage is fitted once, on the latents of
ENTROPY_FIT_IMAGES training images, and saved beside the stage's checkpoints
(layout.entropy_model_path). Fitting is an explicit step: bin/train does it at the end of every
codec stage (and again when the stage was trained further), and bin/export for runs trained
before it did. Reading a stage never fits one: a stage without it is a one-line error that
says how to make it.
"""
import contextlib
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow import keras

from saic_tf.codec import bitstream
from saic_tf.codec.networks import BinaryCodec, build_codec
from saic_tf.common import layout
from saic_tf.common.checkpoints import restore
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_json
from saic_tf.data import datasets

ENTROPY_FIT_IMAGES = 200


@dataclasses.dataclass
class TrainedStage:
  """One trained codec stage of a run, ready to code images."""
  name: str
  checkpoint: str
  codec: BinaryCodec
  entropy_model: bitstream.EntropyModel
  fingerprint: bytes


def restore_codec(config, checkpoint):
  """The run's BinaryCodec with the weights of `checkpoint` (which may hold more, e.g. the
  optimizer). A float16 checkpoint (a shipped codec stored at half the bytes, save_float16)
  gives a float32 codec with those values."""
  codec = build_codec(config)
  try:
    dtypes = set(tf.train.load_checkpoint(checkpoint).get_variable_to_dtype_map().values())
  except (tf.errors.OpError, ValueError):
    dtypes = set()  # restore() says what is wrong with it
  if tf.float16 not in dtypes:
    restore(tf.train.Checkpoint(codec=codec), checkpoint, partial=True)
    return codec
  with _policy("float16"):  # the same layers with float16 variables, as it was saved
    half = build_codec(config)
  restore(tf.train.Checkpoint(codec=half), checkpoint, partial=True)
  codec.set_weights([np.asarray(w, np.float32) for w in half.get_weights()])
  return codec


def save_float16(codec, config, directory, step):
  """Saves `codec`'s weights alone as a float16 checkpoint <directory>/ckpt-<step> (half the
  bytes of float32; the layers that Keras keeps in float32 under any policy stay so)."""
  with _policy("float16"):
    half = build_codec(config)
  half.set_weights([np.asarray(w, v.dtype.as_numpy_dtype)
                    for w, v in zip(codec.get_weights(), half.weights)])
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(codec=half), directory,
                                       max_to_keep=1)
  return manager.save(checkpoint_number=step)


def read_entropy_model(checkpoint, model_dir):
  """The entropy model saved beside `checkpoint`; a UserError that says how to fit it when it
  is missing or unreadable."""
  path = layout.entropy_model_path(os.path.dirname(checkpoint))
  remedy = f"fit it with bin/export --model_dir={model_dir} (or run bin/train again)"
  if not os.path.exists(path):
    raise UserError(f"{path}: missing (this codec stage has no entropy model yet); {remedy}")
  record = read_json(path, remedy)
  try:
    return bitstream.EntropyModel.from_dict(record)
  except UserError as e:
    raise UserError(f"{path}: {e}; {remedy}") from None


def load_stage(run, stage=None):
  """The TrainedStage `stage` (default: its last) of `run` (a common.run.Run)."""
  stage, checkpoint = run.stage(stage)
  codec = restore_codec(run.config, checkpoint)
  entropy_model = read_entropy_model(checkpoint, run.directory)
  return TrainedStage(stage, checkpoint, codec, entropy_model,
                      bitstream.fingerprint(codec, entropy_model))


@contextlib.contextmanager
def _policy(name):
  """Keras' global dtype policy `name` for what is built inside, then the one before."""
  policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(policy)


def _float32():
  """Latents as files get them: a codec built under training's mixed-precision policy would
  compute them in bfloat16 or float16."""
  return _policy("float32")


def fit_entropy_model(config, codec, count=ENTROPY_FIT_IMAGES):
  """An EntropyModel fitted on the latents of `count` training images of the run's dataset (a
  fixed random subset: the run's seed)."""
  source = datasets.load(config.dataset, "train", config.data_dir, config.holdout_every)
  images = datasets.eval_dataset(source, config.image_size, 32, limit=count,
                                 shuffle_seed=config.seed)
  latents = [codec.encode(batch).numpy() for batch, _ in images]
  return bitstream.fit_entropy_model(np.concatenate(latents))


def entropy_model_is_current(checkpoint):
  """True when the entropy model beside `checkpoint` is readable and was fitted on that
  checkpoint's weights (a file that names no checkpoint counts as current)."""
  path = layout.entropy_model_path(os.path.dirname(checkpoint))
  if not os.path.exists(path):
    return False
  try:
    record = read_json(path, "it is fitted again")
    bitstream.EntropyModel.from_dict(record)
  except UserError as e:  # derived data (e.g. of another layout): fitted again
    logging.warning("entropy model: %s; fitting it again", e)
    return False
  return record.get("checkpoint", os.path.basename(checkpoint)) == os.path.basename(checkpoint)


def fit_stage_entropy_model(config, stage, checkpoint, count=ENTROPY_FIT_IMAGES):
  """Fits the entropy model of one codec stage on the data of the run that trained it (`config`
  is that run's) and saves it beside `checkpoint`, unless the one there is current. Returns the
  path written, or None."""
  if entropy_model_is_current(checkpoint):
    return None
  with _float32():
    model = fit_entropy_model(config, restore_codec(config, checkpoint), count)
  path = layout.entropy_model_path(os.path.dirname(checkpoint))
  record = dict(model.to_dict(), checkpoint=os.path.basename(checkpoint),
                fitted_on=f"latents of {count} training images of {config.dataset}")
  try:
    write_json(path, record)
  except OSError as e:
    raise UserError(f"{path}: cannot write the {stage} stage's entropy model ({e.strerror}); "
                    f"run bin/export --model_dir={os.path.dirname(os.path.dirname(checkpoint))} "
                    "where it can be written") from None
  logging.info("%s: entropy model fitted on the latents of %d training images -> %s", stage,
               count, path)
  return path


def fit_missing_entropy_models(run, only=None, count=ENTROPY_FIT_IMAGES):
  """Fits the entropy model of every trained codec stage of `run` (a common.run.Run; or of
  stage `only`) whose model is missing, unreadable or older than its checkpoint; a stage reused
  from an --init_from base is fitted on that base's data. Returns the paths written."""
  written = []
  for stage, checkpoint in run.stages:
    if only and stage != only:
      continue
    owner = run.config
    if run.base is not None and stage == "tdic":  # the base's TDIC stage (layout.codec_stages)
      owner = run.base.config
    path = fit_stage_entropy_model(owner, stage, checkpoint, count)
    if path:
      written.append(path)
  return written
