"""Images <-> .saic files with a trained codec stage (bin/compress, bin/decompress).

Images are coded at their own size (padded to the stride inside the codec, cropped back after
decoding), with the stage's entropy model (codec/stages.py), from a run directory or from a
bin/export directory: both give the same fingerprint, so files made with one decode with the
other.
"""
import io
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from saic_tf.codec import bitstream
from saic_tf.codec import networks
from saic_tf.codec import stages
from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_bytes
from saic_tf.common.run import Run
from saic_tf.data.images import (check_pixels, DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS,
                                 read_image, to_uint8)
from saic_tf.deploy import serving


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
    return to_uint8(image[0]).numpy()


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

  `model` is a MODEL_DIR (a stage's checkpoint and entropy_model.json), the name of a shipped
  codec (codec/zoo.py), a common.run.Run, or a bin/export directory (its SavedModel and
  assets.extra/saic.json). Nothing is fitted or written here: a stage without its entropy model
  is a UserError that says how to fit it. `run` is the Run it codes with (None: an export)."""

  def __init__(self, model, stage=None, max_pixels=None):
    self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    self.run = Run.find(model)  # a run directory, or a shipped codec's name (e.g. tdic-0.25)
    version_dir = None if self.run else serving.resolve(model)
    if version_dir:
      info = serving.read_info(version_dir)
      if stage and stage != info["stage"]:
        raise UserError(f"--stage={stage}: the export {version_dir} holds {info['stage']}")
      self.stage, self.stride, self.channels = info["stage"], info["stride"], info["channels"]
      self.entropy_model = bitstream.EntropyModel.from_dict(info["entropy_model"])
      self.fingerprint = bytes.fromhex(info["fingerprint"])
      self.backend = SavedModelBackend(version_dir)
      return
    if not self.run and not os.path.isdir(model):
      raise UserError(f"--model={model}: no such directory, nor a shipped codec "
                      f"({', '.join(zoo.names()) or 'none shipped yet'}; bin/models)")
    self.run = self.run or Run.resolve(model)  # a directory without config.json: its error
    trained = stages.load_stage(self.run, stage)
    self.stage, self.stride = trained.name, self.run.config.stride
    self.codec = trained.codec
    self.channels = self.codec.channels
    self.backend = KerasBackend(self.codec)
    self.entropy_model, self.fingerprint = trained.entropy_model, trained.fingerprint

  def nominal_bpp(self, height, width):
    h, w = -(-height // self.stride), -(-width // self.stride)
    return float(networks.nominal_bpp((h, w, self.channels), height, width))

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


def input_files(paths, extensions):
  """Files named on the command line, and the matching files inside named directories, as
  (path, its name under the output directory): a named file's base name, a file found in a
  named directory its path relative to that directory (so cat/x.png and dog/x.png stay apart)."""
  files = []
  for path in paths:
    if os.path.isdir(path):
      for directory, _, names in sorted(os.walk(path)):
        files += [(os.path.join(directory, n), os.path.relpath(os.path.join(directory, n), path))
                  for n in sorted(names) if n.lower().endswith(extensions)]
    else:
      files.append((path, os.path.basename(path)))
  return files


def _target(path, relative, output, single, suffix):
  if output is None:  # no -o: beside the input; like gzip, never over an existing file
    return os.path.splitext(path)[0] + suffix
  if single and not os.path.isdir(output) and output.endswith(suffix):
    return output
  target = os.path.join(output, os.path.splitext(relative)[0] + suffix)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  return target


def process(paths, output, extensions, suffix, work):
  """Runs `work(path) -> (bytes, message)` on every input, writing `output` files atomically
  (`output` None: each beside its input, <stem><suffix>; a directory: the tree of each named
  directory mirrored under it). Bad inputs are listed and skipped; returns the list of
  (path, error)."""
  files = input_files(paths, extensions)
  if not files:
    raise UserError(f"no input files ({', '.join(extensions)}) in {' '.join(paths)}")
  failures, written = [], {}
  for number, (path, relative) in enumerate(files, 1):
    try:
      target = _target(path, relative, output, len(files) == 1, suffix)
      if target in written:  # e.g. a/x.webp and b/x.tif: the second would overwrite the first
        raise UserError(f"its output {target} is {written[target]}'s already; give the inputs "
                        "different names")
      exists = UserError(f"{target} exists: not overwritten without -o (give -o OUT, or move "
                         "it away)")
      if output is None and os.path.exists(target):  # before the work; checked again below
        raise exists
      content, message = work(path)
      try:
        write_bytes(target, content, overwrite=output is not None)
      except FileExistsError:  # made while this input was being coded
        raise exists from None
      written[target] = path
      print(f"[{number}/{len(files)}] {path} -> {target}  {message}", flush=True)
    except (UserError, OSError) as e:
      failures.append((path, str(e) if isinstance(e, UserError) else
                       f"cannot read or write ({e.strerror or e})"))
      print(f"[{number}/{len(files)}] {path}: error: {e}", flush=True)
  return failures


def compress_files(codec: FileCodec, paths, output):
  """bin/compress: every image of `paths` (files, directories) to a .saic file in `output`,
  with a progress line each. Returns (failures [(path, error)], the summary line or None)."""
  totals = dict(bits=0, pixels=0, nominal_bits=0.0)

  def work(path):
    image = read_image(path, codec.max_pixels)
    content = codec.compress(image)
    height, width = image.shape[:2]
    nominal = codec.nominal_bpp(height, width)
    totals["bits"] += 8 * len(content)
    totals["pixels"] += height * width
    totals["nominal_bits"] += nominal * height * width
    return content, (f"{height}x{width}, {len(content)} bytes, "
                     f"{8 * len(content) / (height * width):.4f} bpp (nominal {nominal:.4f})")

  failures = process(paths, output, IMAGE_EXTENSIONS, ".saic", work)
  summary = None
  if totals["pixels"]:
    summary = (f"{codec.stage}: {totals['bits'] / totals['pixels']:.4f} bpp actual, "
               f"{totals['nominal_bits'] / totals['pixels']:.4f} bpp nominal over "
               f"{totals['pixels']} pixels")
  return failures, summary


def decompress_files(codec, paths, output, max_pixels=None):
  """bin/decompress: every .saic file of `paths` to a PNG image in `output`, with a progress
  line each. `codec` is a FileCodec, or None: each file is decoded by the shipped codec whose
  fingerprint it carries (codec/zoo.py). Returns the failures [(path, error)]."""
  shipped = {}

  def codec_for(content):
    if codec is not None:
      return codec
    name = zoo.by_fingerprint(bitstream.file_fingerprint(content))
    if name is None:
      raise UserError(f"made by a model that is not shipped (fingerprint "
                      f"{bitstream.file_fingerprint(content).hex()}): pass --model=MODEL_DIR")
    if name not in shipped:
      shipped[name] = FileCodec(layout.zoo_dir(name), max_pixels=max_pixels)
    return shipped[name]

  def work(path):
    with open(path, "rb") as f:
      content = f.read()
    image = codec_for(content).decompress(content)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue(), f"{image.shape[0]}x{image.shape[1]}"

  return process(paths, output, (".saic",), ".png", work)
