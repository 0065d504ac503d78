"""Compress images to .saic files and back with a trained run (bin/compress, bin/decompress).

Images are coded at their own size (padded to the stride inside the codec, cropped back after
decoding). The entropy model of a stage is fitted once, on the latents of training images, and
saved beside its checkpoint as entropy_model.json.
"""
import os

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from saic_tf import baselines
from saic_tf import bitstream
from saic_tf import data
from saic_tf import codec as codec_lib
from saic_tf import export as export_lib
from saic_tf import loop
from saic_tf.config import TrainConfig
from saic_tf.errors import UserError
from saic_tf.files import read_json, write_bytes, write_json

ENTROPY_MODEL_FILE = "entropy_model.json"
# The encoder and decoder hold ~10 float tensors of filters × (H/2) × (W/2) at once: 2^24 pixels
# (e.g. 4096×4096) take several GiB at the default width.
DEFAULT_MAX_PIXELS = 1 << 24


def codec_stages(config: TrainConfig, model_dir):
  """[(stage, checkpoint)] of the run's trained codec stages, in training order."""
  candidates = [("tdic", os.path.join(config.init_from or model_dir, "tdic"))]
  if config.semantic:
    candidates.append((config.loss, os.path.join(model_dir, config.loss)))
  stages = [(name, tf.train.latest_checkpoint(d)) for name, d in candidates]
  stages = [(name, checkpoint) for name, checkpoint in stages if checkpoint]
  if not stages:
    raise UserError(f"{model_dir}: no trained codec checkpoint (tdic/ or {config.loss}/)")
  return stages


def restore_codec(config: TrainConfig, checkpoint):
  codec = codec_lib.BinaryCodec(config.bpp, config.stride, config.filters, name="codec")
  loop.restore(tf.train.Checkpoint(codec=codec), checkpoint, partial=True)
  return codec


class KerasBackend:
  """Binary latents <-> images with a trained codec checkpoint (a MODEL_DIR)."""

  def __init__(self, codec):
    self.codec = codec

  def encode(self, image):
    """uint8 [H, W, 3] -> binary latent int32 [h, w, C]."""
    floats = tf.image.convert_image_dtype(tf.constant(image)[None], tf.float32)
    return self.codec.encode(floats)[0].numpy().astype(np.int32)

  def decode(self, bits, height, width):
    image = self.codec.decode(tf.constant(bits[None], tf.float32), height, width)
    return baselines.to_uint8(image[0].numpy())


class SavedModelBackend:
  """The same through the encode/decode signatures of a bin/export SavedModel."""

  def __init__(self, version_dir):
    loaded = tf.saved_model.load(version_dir)
    self._loaded = loaded  # keeps the signatures' variables alive
    self._encode, self._decode = loaded.signatures["encode"], loaded.signatures["decode"]

  def encode(self, image):
    out = self._encode(image=tf.constant(image, tf.uint8))
    shape = out["latent_shape"].numpy()
    packed = np.frombuffer(out["latents_bytes"].numpy(), np.uint8)
    return np.unpackbits(packed)[:np.prod(shape)].reshape(shape).astype(np.int32)

  def decode(self, bits, height, width):
    return self._decode(latents_bytes=tf.constant(np.packbits(bits.reshape(-1)).tobytes()),
                        latent_shape=tf.constant(bits.shape, tf.int32),
                        image_shape=tf.constant([height, width], tf.int32))["image"].numpy()


class FileCodec:
  """A trained codec stage with its entropy model: image <-> .saic bytes.

  `model` is a MODEL_DIR (the entropy model is fitted on first use and kept beside the stage's
  checkpoint) or a bin/export directory (its SavedModel and assets.extra/saic.json). Both give
  the same fingerprint, so files made with one decode with the other."""

  def __init__(self, model, stage=None, fit_images=200, max_pixels=None):
    self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    version_dir = None if os.path.exists(os.path.join(model, "config.json")) else (
        export_lib.resolve(model))
    if version_dir:
      info = export_lib.read_info(version_dir)
      if stage and stage != info["stage"]:
        raise UserError(f"--stage={stage}: the export {version_dir} holds {info['stage']}")
      self.stage, self.stride, self.channels = info["stage"], info["stride"], info["channels"]
      self.entropy_model = bitstream.EntropyModel.from_dict(info["entropy_model"])
      self.fingerprint = bytes.fromhex(info["fingerprint"])
      self.backend = SavedModelBackend(version_dir)
      return
    if not os.path.isdir(model):
      raise UserError(f"--model={model}: no such directory")
    config = TrainConfig.read(model)
    stages = dict(codec_stages(config, model))
    stage = stage or list(stages)[-1]
    if stage not in stages:
      raise UserError(f"--stage={stage}: {model} has only {', '.join(stages)}")
    self.stage, self.stride = stage, config.stride
    self.codec = restore_codec(config, stages[stage])
    self.channels = self.codec.channels
    self.backend = KerasBackend(self.codec)
    path = os.path.join(os.path.dirname(stages[stage]), ENTROPY_MODEL_FILE)
    self.entropy_model = None
    if os.path.exists(path):
      try:
        self.entropy_model = bitstream.EntropyModel.from_dict(
            read_json(path, "delete it to fit the entropy model again"))
      except UserError as e:  # derived data (e.g. from an older version): fit it again
        logging.warning("compression: %s: %s", path, e)
    if self.entropy_model is None:
      self.entropy_model = self._fit(config, fit_images)
      write_json(path, self.entropy_model.to_dict())
      logging.info("compression: entropy model of %s fitted on %d training images -> %s",
                   stage, fit_images, path)
    self.fingerprint = bitstream.fingerprint(self.codec, self.entropy_model)

  def _fit(self, config, count):
    source = data.load(config.dataset, "train", config.data_dir)
    images = data.eval_dataset(source, config.image_size, 32, limit=count,
                               shuffle_seed=config.seed)
    latents = [self.codec.encode(batch).numpy() for batch, _ in images]
    return bitstream.fit_entropy_model(np.concatenate(latents))

  def nominal_bpp(self, height, width):
    h, w = -(-height // self.stride), -(-width // self.stride)
    return float(codec_lib.nominal_bpp((h, w, self.channels), height, width))

  def compress(self, image):
    """uint8 [H, W, 3] -> .saic bytes."""
    height, width = image.shape[:2]
    if not (0 < height <= bitstream.MAX_SIDE and 0 < width <= bitstream.MAX_SIDE):
      raise UserError(f"image size {height}x{width} outside 1..{bitstream.MAX_SIDE}")
    check_pixels(height, width, self.max_pixels)
    bits = self.backend.encode(image)
    return bitstream.write(height, width, bits, self.entropy_model, self.fingerprint)

  def decompress(self, data_bytes):
    """.saic bytes -> uint8 [H, W, 3]."""
    header = bitstream.parse(data_bytes, self.fingerprint, self.stride, self.channels)
    check_pixels(header.height, header.width, self.max_pixels)
    bits = bitstream.decode_bits(header.payload, header.latent_shape, self.entropy_model)
    return self.backend.decode(bits, header.height, header.width)


def _inputs(paths, extensions):
  """Files named on the command line, and the matching files inside named directories."""
  files = []
  for path in paths:
    if os.path.isdir(path):
      for directory, _, names in sorted(os.walk(path)):
        files += [os.path.join(directory, n) for n in sorted(names)
                  if n.lower().endswith(extensions)]
    else:
      files.append(path)
  return files


def _target(path, output, single, suffix):
  if single and not os.path.isdir(output) and output.endswith(suffix):
    return output
  os.makedirs(output, exist_ok=True)
  return os.path.join(output, os.path.splitext(os.path.basename(path))[0] + suffix)


def process(paths, output, extensions, suffix, work):
  """Runs `work(path) -> (bytes, message)` on every input, writing `output` files atomically.
  Bad inputs are listed and skipped; returns the list of (path, error)."""
  files = _inputs(paths, extensions)
  if not files:
    raise UserError(f"no input files ({', '.join(extensions)}) in {' '.join(paths)}")
  failures = []
  for number, path in enumerate(files, 1):
    try:
      content, message = work(path)
      target = _target(path, output, len(files) == 1, suffix)
      write_bytes(target, content)
      print(f"[{number}/{len(files)}] {path} -> {target}  {message}", flush=True)
    except (UserError, OSError) as e:
      failures.append((path, str(e) if isinstance(e, UserError) else
                       f"cannot read or write ({e.strerror or e})"))
      print(f"[{number}/{len(files)}] {path}: error: {e}", flush=True)
  return failures


def check_pixels(height, width, max_pixels):
  """Bounded memory: the codec runs on the whole image at once."""
  if height * width > max_pixels:
    raise UserError(f"image of {height}x{width} = {height * width} pixels is above "
                    f"--max_pixels={max_pixels} (raise it if the machine has the memory)")


def read_image(path, max_pixels=None):
  """uint8 RGB [H, W, 3] of an image file; a UserError if unreadable or above `max_pixels`
  (checked from the file's header, before anything is decoded)."""
  if max_pixels:
    try:
      with Image.open(path) as image:
        width, height = image.size
    except Image.DecompressionBombError:
      width = height = max_pixels  # far above any sane limit
    except OSError:
      width = height = 0  # not an image Pillow knows: TensorFlow's decoder says what is wrong
    check_pixels(height, width, max_pixels)
  try:
    return data.decode_image_file(path).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
          tf.errors.PermissionDeniedError, tf.errors.FailedPreconditionError) as e:
    reason = (e.message.strip().splitlines() or ["unreadable"])[0]
    raise UserError(f"not a readable image ({reason[:120]})") from None
