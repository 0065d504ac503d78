"""The Python API (saic_tf.load, saic_tf.models), documented in the README:

    import saic_tf
    codec = saic_tf.load("saic-0.125")   # a shipped name, a MODEL_DIR or a bin/export directory
    data = codec.compress("photo.jpg")   # also a PIL image or a uint8 array, in any mode
    image = codec.decompress(data)       # uint8 [H, W, 3]

The files are the .saic files of bin/compress (file_codec.FileCodec): each image is coded at
its own size. A task-aware codec (one fine-tuned for a classifier: a shipped saic-* codec, or a
run with a downstream network) also gives that classifier (`Codec.classifier`), a Keras model
of [0, 1] images at `Codec.image_size`.
"""
import os

import numpy as np

from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json
from saic_tf.data import datasets
from saic_tf.data.images import as_rgb_uint8, to_uint8
from saic_tf.deploy import file_codec
from saic_tf.semantic import downstream


def models():
  """{name: record} of the shipped codecs and classifiers (bin/models lists the same): each
  record says what it is (`kind`), how it was trained and what it measures."""
  return {name: zoo.record(name) for name in zoo.all_names()}


def load(model, stage=None, max_pixels=None):
  """The codec `model` names: a shipped codec's name (models()), a MODEL_DIR (its last
  stage, or `stage`) or a bin/export directory."""
  return Codec(model, stage, max_pixels)


class Codec:
  """One trained codec stage: images <-> .saic bytes, and its classifier if it has one."""

  def __init__(self, model, stage=None, max_pixels=None):
    if not isinstance(model, (str, os.PathLike)):
      raise UserError(f"saic_tf.load: give a model name or directory, not {type(model).__name__}")
    self.name = os.fspath(model)
    self._codec = file_codec.FileCodec(self.name, stage, max_pixels)
    self._classifier = None

  def __repr__(self):
    return f"saic_tf.Codec({self.name!r}, stage={self.stage!r})"

  @property
  def stage(self):
    return self._codec.stage

  @property
  def fingerprint(self):
    """The 4 bytes that tie its .saic files to its weights and entropy model."""
    return self._codec.fingerprint

  def nominal_bpp(self, height, width):
    """C / s² for an image of this size (padded to the stride)."""
    return self._codec.nominal_bpp(height, width)

  def compress(self, image):
    """An image (a file path, a PIL image or an array, in any mode) -> .saic bytes."""
    return self._codec.compress(as_rgb_uint8(image, self._codec.max_pixels))

  def decompress(self, data):
    """.saic bytes (or a .saic file's path) -> uint8 [H, W, 3]."""
    if isinstance(data, (str, os.PathLike)):
      with open(data, "rb") as f:
        data = f.read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
      raise UserError(f"decompress takes .saic bytes, not {type(data).__name__}")
    return self._codec.decompress(bytes(data))

  def _run(self):
    """The common.run.Run it codes with (resolved once, by its FileCodec), or None for a
    bin/export directory."""
    return self._codec.run

  @property
  def image_size(self):
    """The size its classifier takes (and it was fine-tuned at); None without a classifier."""
    run = self._run()
    return run.config.image_size if run and run.config.semantic else None

  @property
  def class_names(self):
    """Its classifier's class names, in the order of its outputs; None without one."""
    run = self._run()
    if not run or not run.config.semantic:
      return None
    config = run.config
    if config.downstream_model:
      if config.downstream_model not in zoo.classifier_names():
        return None  # a model file of the user's: its class names are the user's to know
      # A shipped classifier: readable names where it has them.
      known = zoo.record(config.downstream_model)
      return known.get("display_names") or known.get("class_names")
    info = read_json(layout.downstream_info_path(run.downstream_dir),
                     "its downstream network is missing")
    return info.get("class_names")

  @property
  def classifier(self):
    """The frozen Keras classifier this codec was fine-tuned for ([0, 1] images at
    `image_size` -> logits; a model file's own input scaling is inside it), or None for a
    codec fine-tuned for none (tdic-*)."""
    if self._classifier is None:
      run = self._run()
      if not run or not run.config.semantic:
        return None
      names = self.class_names
      self._classifier = downstream.load(run.config, run.downstream_dir,
                                         len(names) if names else None).classifier
    return self._classifier

  def resize(self, image):
    """An image (anything compress takes) at the classifier's size, uint8 [S, S, 3], by the
    resize path the classifier and the codec's fine-tune used (bilinear, antialiased, to a
    square: the aspect ratio is not kept). A task-aware codec's measured figures are for images
    prepared so: `codec.compress(codec.resize(photo))`."""
    size = self.image_size
    if size is None:
      raise UserError(f"{self.name}: a codec fine-tuned for no classifier has no image size")
    return to_uint8(datasets.resize(as_rgb_uint8(image, self._codec.max_pixels), size)).numpy()

  def classify(self, images):
    """Class indices the classifier gives `images`: a float batch [B, S, S, 3] in [0, 1], or a
    list of images of any size and kind (each through `resize`)."""
    classifier = self.classifier
    if classifier is None:
      raise UserError(f"{self.name}: a codec fine-tuned for no classifier")
    if isinstance(images, (list, tuple)):
      if not images:
        raise UserError("classify: no images given")
      images = np.stack([self.resize(image) for image in images]).astype(np.float32) / 255.0
    return np.argmax(classifier(np.asarray(images, np.float32), training=False), axis=-1)
