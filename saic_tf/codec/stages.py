"""A run's trained codec stages (tdic, apic, saic): the networks restored from a stage's
checkpoint, its entropy model and the fingerprint that ties .saic files to both.

The entropy model (bitstream.EntropyModel) of a stage is fitted once, on the latents of
ENTROPY_FIT_IMAGES training images, and saved beside the stage's checkpoints
(layout.entropy_model_path). Fitting is an explicit step: bin/train does it at the end of every
codec stage, and bin/export for runs trained before it did. Reading a stage never fits one: a
stage without it is a one-line error that says how to make it.
"""
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf

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
  optimizer)."""
  codec = build_codec(config)
  restore(tf.train.Checkpoint(codec=codec), checkpoint, partial=True)
  return codec


def _select(config, model_dir, stage):
  """(stage, checkpoint): `stage` of the run, default its last."""
  stages = dict(layout.codec_stages(config, model_dir))
  stage = stage or list(stages)[-1]
  if stage not in stages:
    raise UserError(f"--stage={stage}: {model_dir} has only {', '.join(stages)}")
  return stage, stages[stage]


def read_entropy_model(checkpoint, model_dir):
  """The entropy model saved beside `checkpoint`; a UserError that says how to fit it when it
  is missing or unreadable."""
  path = layout.entropy_model_path(os.path.dirname(checkpoint))
  remedy = f"fit it with bin/export --model_dir={model_dir} (or run bin/train again)"
  if not os.path.exists(path):
    raise UserError(f"{path}: missing (this codec stage has no entropy model yet); {remedy}")
  try:
    return bitstream.EntropyModel.from_dict(read_json(path, remedy))
  except UserError as e:
    raise UserError(f"{path}: {e}") from None


def load_stage(config, model_dir, stage=None):
  """The TrainedStage `stage` (default: the run's last) of the run in `model_dir`."""
  stage, checkpoint = _select(config, model_dir, stage)
  codec = restore_codec(config, checkpoint)
  entropy_model = read_entropy_model(checkpoint, model_dir)
  return TrainedStage(stage, checkpoint, codec, entropy_model,
                      bitstream.fingerprint(codec, entropy_model))


def fit_entropy_model(config, codec, count=ENTROPY_FIT_IMAGES):
  """An EntropyModel fitted on the latents of `count` training images of the run's dataset (a
  fixed random subset: the run's seed)."""
  source = datasets.load(config.dataset, "train", config.data_dir)
  images = datasets.eval_dataset(source, config.image_size, 32, limit=count,
                                 shuffle_seed=config.seed)
  latents = [codec.encode(batch).numpy() for batch, _ in images]
  return bitstream.fit_entropy_model(np.concatenate(latents))


def _has_entropy_model(checkpoint):
  path = layout.entropy_model_path(os.path.dirname(checkpoint))
  if not os.path.exists(path):
    return False
  try:
    bitstream.EntropyModel.from_dict(read_json(path, "it is fitted again"))
    return True
  except UserError as e:  # derived data (e.g. of an older layout): fitted again
    logging.warning("entropy model: %s: %s; fitting it again", path, e)
    return False


def fit_missing_entropy_models(config, model_dir, count=ENTROPY_FIT_IMAGES):
  """Fits and saves the entropy model of every trained codec stage of the run that has none
  (or an unreadable one); returns the paths written."""
  written = []
  for stage, checkpoint in layout.codec_stages(config, model_dir):
    if _has_entropy_model(checkpoint):
      continue
    model = fit_entropy_model(config, restore_codec(config, checkpoint), count)
    path = write_json(layout.entropy_model_path(os.path.dirname(checkpoint)), model.to_dict())
    logging.info("%s: entropy model fitted on the latents of %d training images -> %s", stage,
                 count, path)
    written.append(path)
  return written
