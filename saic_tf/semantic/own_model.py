"""The user's own classifier as the frozen downstream network (--downstream_model=PATH).

A Keras model file (.keras or .h5) is frozen as it is: never retrained, no head added. It is
split at the feature layer into F and the head, as the built-in backbones are
(semantic/backbones.py): by default at the input of its last global pooling layer, where
Grad-CAM (and so GSW, Eq. 2-4) takes its feature maps; --feature_layer=NAME splits at that
layer's output. The codec produces [0, 1] images; --downstream_input says what the model
expects instead (`INPUTS`), and a layer in front of it converts.

A TensorFlow SavedModel directory is accepted too, for --loss=kd only: its serving signature
gives class scores, so KL(p(x) || p(x')) needs nothing else, while the feature loss of APIC and
SAIC needs layers to split at, which a SavedModel does not expose.

The model file's SHA-256 goes into config.json and gsw.json, so that a run never resumes, and
an evaluation never runs, on a file that changed under it.
"""
import hashlib
import os
import tempfile
import zipfile

import keras as keras_package
import numpy as np
import tensorflow as tf
from tensorflow import keras

from saic_tf.common.errors import first_line, UserError

layers = keras.layers
_KERAS_VERSION = keras_package.__version__

# What the model expects, from the codec's [0, 1] images: [0, 1], [0, 255], [-1, 1], or Keras
# Applications' caffe (BGR, ImageNet means subtracted, 0..255) or torch (ImageNet mean and std)
# preprocessing.
INPUTS = ("unit", "byte", "symmetric", "caffe", "torch")
MODEL_FILE_EXTENSIONS = (".keras", ".h5")
_POOLING = (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)
SAVED_MODEL_FEATURES = "outputs"  # what a SavedModel's "feature layer" is: its class scores


class InputScaling(layers.Layer):
  """[0, 1] images -> the input `kind` (INPUTS) the user's model was trained on; float32."""

  def __init__(self, kind="unit", **kwargs):
    super().__init__(dtype="float32", **kwargs)
    if kind not in INPUTS:
      raise UserError(f"--downstream_input={kind}: must be one of {', '.join(INPUTS)}")
    self.kind = kind

  def call(self, images):
    images = tf.cast(images, tf.float32)
    if self.kind == "unit":
      return images
    if self.kind == "byte":
      return images * 255.0
    if self.kind == "symmetric":
      return images * 2.0 - 1.0
    # caffe and torch: Keras Applications' own preprocessing, on 0..255 pixels.
    return keras.applications.imagenet_utils.preprocess_input(images * 255.0, mode=self.kind)

  def get_config(self):
    return dict(super().get_config(), kind=self.kind)


class ProbabilitiesToLogits(layers.Layer):
  """log p for a model that ends in a softmax: log_softmax(log p) = log p, so the KL, GSW and
  the evaluation's softmax see the model's own probabilities."""

  def __init__(self, **kwargs):
    super().__init__(dtype="float32", **kwargs)

  def call(self, probabilities):
    return tf.math.log(tf.maximum(tf.cast(probabilities, tf.float32), 1e-30))


def sha256(path):
  """SHA-256 of a file, or of a directory's files (names and contents, in sorted order)."""
  digest = hashlib.sha256()
  if os.path.isdir(path):
    for directory, dirs, names in os.walk(path):
      dirs.sort()
      for name in sorted(names):
        file_path = os.path.join(directory, name)
        digest.update(os.path.relpath(file_path, path).encode() + b"\0")
        with open(file_path, "rb") as f:
          for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
  else:
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()


def is_saved_model(path):
  return os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb"))


def check_path(path):
  """A UserError unless `path` is a readable Keras model file or a SavedModel directory."""
  flag = f"--downstream_model={path}"
  if not os.path.exists(path):
    raise UserError(f"{flag}: no such file")
  if os.path.isdir(path):
    if not is_saved_model(path):
      raise UserError(f"{flag}: a directory without saved_model.pb; give a Keras model file "
                      f"({', '.join(MODEL_FILE_EXTENSIONS)}) or a TF SavedModel directory")
    return
  if not path.endswith(MODEL_FILE_EXTENSIONS):
    raise UserError(f"{flag}: not a Keras model file ({', '.join(MODEL_FILE_EXTENSIONS)}) nor "
                    "a SavedModel directory")
  if not os.access(path, os.R_OK):
    raise UserError(f"{flag}: not readable")


def load_keras(path):
  """The Keras model in `path` (.keras or .h5), uncompiled; a UserError that names the file."""
  check_path(path)
  if is_saved_model(path):
    raise UserError(f"--downstream_model={path}: a SavedModel directory, but the feature "
                    "split of --loss=apic|saic needs a Keras model file (.keras or .h5); a "
                    "SavedModel serves --loss=kd (without --kd_feature_weight)")
  try:
    with tempfile.TemporaryDirectory() as directory:
      model = keras.models.load_model(_stored(path, directory), compile=False)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"--downstream_model={path}: cannot load it with Keras "
                    f"{_KERAS_VERSION} ({first_line(e, 200)})") from None
  if not isinstance(model, keras.Model):
    raise UserError(f"--downstream_model={path}: holds no Keras model")
  return model


def _stored(path, directory):
  """`path`, or for a .keras archive whose members are compressed (the shipped classifiers'
  are: task_codecs.save_float16_keras) an uncompressed copy of it in `directory`. Keras reads
  the weights' HDF5 file through zipfile, whose every backward seek in a deflated member
  decompresses it again from its start: the shipped 20 MB classifier took 6 s to load that way
  here, 2 s from the copy."""
  if not zipfile.is_zipfile(path):
    return path  # .h5
  with zipfile.ZipFile(path) as archive:
    members = archive.infolist()
    if all(member.compress_type == zipfile.ZIP_STORED for member in members):
      return path
    copy = os.path.join(directory, os.path.basename(path))
    with zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as stored:
      for member in members:
        stored.writestr(member.filename, archive.read(member))
  return copy


def check_outputs(path, output_shape, num_classes):
  """The model's output must be [batch, classes] with the dataset's number of classes."""
  if isinstance(output_shape, list) or len(output_shape) != 2:
    raise UserError(f"--downstream_model={path}: its output is {output_shape}, not [batch, "
                    "classes]; give a classifier with one output of class scores")
  if num_classes is not None and output_shape[-1] != num_classes:
    raise UserError(f"--downstream_model={path}: it has {output_shape[-1]} classes, the "
                    f"dataset {num_classes}")


def fixed_image_size(model):
  """The square input size the model fixes, or None when it takes any size."""
  shape = model.input_shape
  if isinstance(shape, list) or len(shape) != 4:
    raise UserError(f"--downstream_model: its input is {shape}, not one [batch, height, "
                    "width, 3] image")
  height, width, channels = shape[1:]
  if channels not in (None, 3):
    raise UserError(f"--downstream_model: it takes {channels}-channel images; the codec gives "
                    "RGB")
  if height and width and height != width:
    raise UserError(f"--downstream_model: it takes {height}x{width} images; only square "
                    "inputs are supported (--image_size)")
  return height or width or None


def _ends_in_softmax(model):
  last = model.layers[-1]
  if isinstance(last, layers.Softmax):
    return True
  activation = getattr(last, "activation", None)
  return activation is keras.activations.softmax or getattr(
      activation, "__name__", "") == "softmax"


def candidate_layers(model):
  """Names of the layers whose output is a feature map ([batch, h, w, channels])."""
  names = []
  for layer in model.layers:
    try:
      shape = layer.output_shape
    except AttributeError:
      continue
    if not isinstance(shape, list) and len(shape) == 4:
      names.append(layer.name)
  return names


def split_point(model, feature_layer, path):
  """(tensor, name): where F ends. NAME's output, or by default the input of the last global
  pooling layer; a UserError listing the candidate layers when neither is there."""
  candidates = candidate_layers(model)
  listing = ", ".join(candidates[-12:]) or "none"
  if feature_layer:
    try:
      return model.get_layer(feature_layer).output, feature_layer
    except ValueError:
      raise UserError(f"--feature_layer={feature_layer}: no such layer in {path} (layers with "
                      f"feature maps: {listing})") from None
  pools = [layer for layer in model.layers if isinstance(layer, _POOLING)]
  if not pools:
    raise UserError(f"--downstream_model={path}: no global pooling layer to split at; name "
                    f"the feature layer with --feature_layer (layers with feature maps: "
                    f"{listing})")
  tensor = pools[-1].input
  return tensor, tensor._keras_history.layer.name  # pylint: disable=protected-access


def network_from_keras(model, path, feature_layer="", kind="unit"):
  """(classifier, features, head, feature_layer) of the frozen `model`: each takes the codec's
  [0, 1] images (the head takes F's output), and the classifier and head give logits."""
  tensor, name = split_point(model, feature_layer, path)
  try:
    inner_features = keras.Model(model.inputs, tensor, name="own_features")
    head_outputs = model.output
    inner_head = keras.Model(tensor, head_outputs, name="own_head")
  except Exception:  # pylint: disable=broad-except
    raise UserError(f"--feature_layer={name}: {path} cannot be split there (a skip connection "
                    "bypasses it); pick another layer") from None
  to_logits = _ends_in_softmax(model)
  size = fixed_image_size(model)
  images = keras.Input((size, size, 3), name="image")
  scaled = InputScaling(kind, name="downstream_input")(images)
  features = keras.Model(images, inner_features(scaled), name="features")
  head_input = keras.Input(inner_features.output_shape[1:], name="features")
  logits = inner_head(head_input)
  if to_logits:
    logits = ProbabilitiesToLogits(name="logits")(logits)
  head = keras.Model(head_input, logits, name="head")
  classifier = keras.Model(images, head(features(images)), name="own_classifier")
  for part in (model, inner_features, inner_head, features, head, classifier):
    part.trainable = False
  return classifier, features, head, name


class SavedModelClassifier:
  """A SavedModel's serving signature as the classifier of --loss=kd: [0, 1] images ->
  logits (log-probabilities if the signature gives probabilities)."""

  def __init__(self, path, kind="unit", num_classes=None, image_size=None):
    check_path(path)
    try:
      self._loaded = tf.saved_model.load(path)
      self._signature = self._loaded.signatures["serving_default"]
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"--downstream_model={path}: cannot load it as a SavedModel with a "
                      f"serving_default signature ({first_line(e, 200)})") from None
    inputs = self._signature.structured_input_signature[1]
    if len(inputs) != 1:
      raise UserError(f"--downstream_model={path}: its signature takes {len(inputs)} inputs, "
                      "not one image batch")
    (self._input_name, spec), = inputs.items()
    self._input_dtype = spec.dtype
    outputs = self._signature.structured_outputs
    if len(outputs) != 1:
      raise UserError(f"--downstream_model={path}: its signature returns {len(outputs)} "
                      f"outputs ({', '.join(outputs)}), not one of class scores")
    (self._output_name, out_spec), = outputs.items()
    check_outputs(path, tuple(out_spec.shape), num_classes)
    self.num_classes = out_spec.shape[-1]
    self.path = path
    fixed = spec.shape[1] if spec.shape.rank == 4 else None
    self.image_size = fixed or image_size
    self.scaling = InputScaling(kind)
    # Softmax outputs (rows of non-negative numbers summing to 1 on a probe batch) are turned
    # into log-probabilities; anything else is taken as logits.
    probe = tf.random.stateless_uniform([4, self.image_size or 32, self.image_size or 32, 3],
                                        seed=(0, 0))
    self.probabilities = False
    try:
      values = self(probe).numpy()
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"--downstream_model={path}: its signature fails on a batch of "
                      f"{probe.shape[1]}x{probe.shape[2]} images ({first_line(e, 200)})") from None
    self.probabilities = bool(np.all(values >= 0) and
                              np.allclose(values.sum(-1), 1.0, atol=1e-3))

  def __call__(self, images, training=False):
    del training  # frozen
    scaled = tf.cast(self.scaling(images), self._input_dtype)
    scores = tf.cast(self._signature(**{self._input_name: scaled})[self._output_name],
                     tf.float32)
    return tf.math.log(tf.maximum(scores, 1e-30)) if self.probabilities else scores
