"""bin/export: a trained codec stage -> EXPORT_DIR/<model_name>/<version>/ with the SavedModel for
stock TF Serving (serving.py), the TFLite decoders and encoders (tflite.py),
assets.extra/saic.json (the stage, its rate and its entropy model, for .saic files) and
tflite_parity.json.

A stage without a current entropy model (missing, unreadable, or fitted on other weights) gets
it fitted here (the one other place it is fitted; codec/stages.py).
"""
import os
import re
import shutil
import time

from absl import logging
import numpy as np
import tensorflow as tf

from saic_tf.codec import stages
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_bytes, write_json
from saic_tf.common.run import Run
from saic_tf.data import datasets
from saic_tf.data.images import to_uint8
from saic_tf.deploy import serving
from saic_tf.deploy import tflite


def default_model_name(model_dir):
  return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.path.abspath(model_dir))) or "saic"


def _latents(codec, images):
  return [codec.encode(tf.constant(image[None])).numpy() for image in images]


def export(model_dir, export_dir, model_name=None, version=None, stage=None, parity_images=8):
  """Writes EXPORT_DIR/<model_name>/<version>/ (module doc) of the run in `model_dir` (or a
  common.run.Run); returns (version_dir, parity).

  Re-exporting the same trained stage is a no-op that returns the existing version; a new
  version is written to a temporary directory and renamed into place, so TF Serving (which
  watches EXPORT_DIR/<model_name>/) never sees half an export."""
  with tflite.absl_level_kept():
    return _export(Run.at(model_dir), export_dir, model_name, version, stage, parity_images)


def _export(run, export_dir, model_name, version, stage, parity_images):
  config, model_dir = run.config, run.directory
  stage, _ = run.stage(stage)
  stages.fit_missing_entropy_models(run, only=stage)
  trained = stages.load_stage(run, stage)
  codec = trained.codec
  base = os.path.join(export_dir, model_name or default_model_name(model_dir))
  fingerprint = trained.fingerprint.hex()
  existing_versions = serving.versions(base)
  for existing in existing_versions:
    version_dir = os.path.join(base, str(existing))
    if version is None or version == existing:
      if serving.read_info(version_dir)["fingerprint"] != fingerprint:
        continue
      missing = [n for n in tflite.FILES if not os.path.exists(os.path.join(version_dir, n))]
      if not missing:
        logging.info("export: %s stage %s is already exported as %s", model_dir,
                     trained.name, version_dir)
        return version_dir, read_json(os.path.join(version_dir, tflite.PARITY_FILE),
                                      "export again")
      # This stage without some of the files (e.g. deleted): a new version gets all of them.
      if version == existing:
        raise UserError(f"--version={version}: {version_dir} holds this stage without "
                        f"{', '.join(missing)}; choose another version to export it whole")
      logging.info("export: %s holds stage %s without %s: exporting it as a new version",
                   version_dir, trained.name, ", ".join(missing))
  if version is not None and version in existing_versions:
    raise UserError(f"--version={version}: {os.path.join(base, str(version))} already holds "
                    "another model; choose another version")
  version = version if version is not None else max(existing_versions, default=0) + 1
  version_dir = os.path.join(base, str(version))
  tmp = os.path.join(base, f".tmp-{version}")
  shutil.rmtree(tmp, ignore_errors=True)

  start = time.time()
  module = serving.ServingCodec(codec)
  tf.saved_model.save(module, tmp, signatures={
      "encode": module.encode, "decode": module.decode, "reconstruct": module.reconstruct,
      "serving_default": module.reconstruct})
  train_images = _images(config, "train", 32)
  write_bytes(os.path.join(tmp, tflite.TFLITE_FLOAT), tflite.tflite_decoder(codec.decoder))
  calibration = np.concatenate(_latents(codec, train_images))
  write_bytes(os.path.join(tmp, tflite.TFLITE_INT8), tflite.tflite_decoder(codec.decoder,
                                                                            calibration))
  write_bytes(os.path.join(tmp, tflite.ENCODER_FLOAT), tflite.tflite_encoder(codec))
  write_bytes(os.path.join(tmp, tflite.ENCODER_INT8), tflite.tflite_encoder(
      codec, [to_uint8(image).numpy() for image in train_images]))
  write_json(os.path.join(tmp, serving.INFO_FILE), dict(
      format="saic-tf export", model_dir=os.path.abspath(model_dir), stage=trained.name,
      bpp=config.bpp, stride=config.stride, channels=codec.channels,
      image_size=config.image_size, fingerprint=fingerprint,
      entropy_model=trained.entropy_model.to_dict(), signatures=list(serving.SIGNATURES),
      tflite=dict(
          decoder=dict(files=[tflite.TFLITE_FLOAT, tflite.TFLITE_INT8],
                       input="binary latents float32 [1, h, w, C]",
                       output="image float32 [1, s*h, s*w, 3] in [0, 1]; crop to the image size"),
          encoder=dict(files=[tflite.ENCODER_FLOAT, tflite.ENCODER_INT8],
                       input="image uint8 [1, H, W, 3], any size",
                       output="binary latents [ceil(H/s), ceil(W/s), C] packed 8 a byte, "
                              "most significant bit first (numpy.packbits), uint8 "
                              "[ceil(h*w*C/8)]: the decode signature's latents_bytes"))))
  test_images = _images(config, "test", parity_images)
  size = config.image_size
  odd = _images(config, "test", max(1, parity_images // 4), (size // 2 + 3, size + 5))
  images = test_images + odd
  parity = tflite.tflite_parity(tmp, codec.decoder, _latents(codec, images), images)
  parity.update(tflite.encoder_parity(tmp, module.encode, codec.decoder,
                                      [to_uint8(image).numpy() for image in images]))
  write_json(os.path.join(tmp, tflite.PARITY_FILE), parity)
  os.replace(tmp, version_dir)
  logging.info("export: %s stage %s -> %s (%.0f s)", model_dir, trained.name, version_dir,
               time.time() - start)
  return version_dir, parity


def _images(config, split, count, size=None):
  """`count` float images of a split of the run's dataset at `size` (default: the run's)."""
  source = datasets.load(config.dataset, split, config.data_dir, config.holdout_every)
  batches = datasets.eval_dataset(source, size or config.image_size, count, limit=count,
                                  shuffle_seed=config.seed)
  return [image for batch, _ in batches for image in batch.numpy()]
