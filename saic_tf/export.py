"""Export a trained codec for stock TF Serving (SavedModel) and TFLite (bin/export).

SavedModel, in TF Serving's layout EXPORT_DIR/<model_name>/<version>/, with four signatures over
one image at a time (any size):

  encode          image uint8 [H, W, 3] -> latents_bytes (string: the binary latents [h, w, C]
                  in row-major order, 8 per byte, most significant bit first, as
                  numpy.packbits), latent_shape int32 [3], image_shape int32 [2]
  decode          latents_bytes, latent_shape, image_shape -> image uint8 [H, W, 3]
  reconstruct     image -> image (decode of encode)
  serving_default reconstruct

Only core TensorFlow ops: packing bits into bytes is arithmetic, a gather from a 256-entry byte
table and a string join; unpacking is DecodeRaw and shifts. tensorflow-compression's range coder
is not in the graph (stock TF Serving has no tensorflow-compression ops); the .saic entropy
coding runs outside it, and its model travels in <version>/assets.extra/saic.json. Output names
ending in `_bytes` are base64-encoded by TF Serving's REST API.

TFLite: decoder.tflite (float32) and decoder_int8.tflite (full-integer quantized, float input
and output, calibrated on latents of training images), builtin ops only. Input: binary latents
float32 [1, h, w, C] (resize the input tensor for any h, w); output: the image float32
[1, s*h, s*w, 3] in [0, 1], to crop to the image size.
"""
import base64
import contextlib
import json
import os
import re
import shutil
import time
import warnings

from absl import logging
import numpy as np
import tensorflow as tf

from saic_tf import data
from saic_tf.errors import UserError
from saic_tf.files import read_json, write_bytes, write_json

INFO_FILE = os.path.join("assets.extra", "saic.json")
TFLITE_FLOAT, TFLITE_INT8 = "decoder.tflite", "decoder_int8.tflite"
PARITY_FILE = "tflite_parity.json"
SIGNATURES = ("encode", "decode", "reconstruct", "serving_default")
# Ops that exist in core TensorFlow but call back into Python: stock TF Serving cannot run them.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
_BIT_WEIGHTS = [128, 64, 32, 16, 8, 4, 2, 1]


def to_uint8(images):
  """float images in [0, 1] -> uint8, rounded (as baselines.to_uint8)."""
  return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def pack_bits(bits):
  """0/1 tensor of any shape -> string scalar, 8 bits a byte, MSB first (numpy.packbits)."""
  flat = tf.reshape(tf.cast(bits, tf.int32), [-1])
  flat = tf.pad(flat, [[0, tf.math.floormod(-tf.size(flat), 8)]])
  values = tf.reduce_sum(tf.reshape(flat, [-1, 8]) * _BIT_WEIGHTS, axis=1)
  byte_table = tf.constant([bytes([i]) for i in range(256)])
  return tf.strings.reduce_join(tf.gather(byte_table, values))


def unpack_bits(packed, shape):
  """Inverse of pack_bits: string scalar -> float32 0/1 tensor of `shape`."""
  values = tf.cast(tf.io.decode_raw(packed, tf.uint8), tf.int32)
  bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(values[:, None], [7, 6, 5, 4, 3, 2, 1, 0]),
                                1)
  bits = tf.reshape(bits, [-1])[:tf.reduce_prod(shape)]
  return tf.reshape(tf.cast(bits, tf.float32), shape)


class ServingCodec(tf.Module):
  """The codec's serving signatures (module doc) around a trained BinaryCodec."""

  def __init__(self, codec):
    super().__init__(name="saic_codec")
    self.codec = codec
    self.stride = codec.stride
    self.channels = codec.channels

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def encode(self, image):
    floats = tf.image.convert_image_dtype(image, tf.float32)
    bits = self.codec.encode(floats[None])[0]
    return dict(latents_bytes=pack_bits(bits), latent_shape=tf.shape(bits),
                image_shape=tf.shape(image)[:2])

  @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="latents_bytes"),
                                tf.TensorSpec([3], tf.int32, name="latent_shape"),
                                tf.TensorSpec([2], tf.int32, name="image_shape")])
  def decode(self, latents_bytes, latent_shape, image_shape):
    latent_size = -(-image_shape // self.stride)  # ceil
    checks = [
        tf.debugging.assert_equal(latent_shape, tf.concat([latent_size, [self.channels]], 0),
                                  message="latent_shape must be [ceil(H/s), ceil(W/s), C]"),
        tf.debugging.assert_positive(image_shape, message="image_shape must be positive"),
        tf.debugging.assert_equal(tf.strings.length(latents_bytes),
                                  (tf.reduce_prod(latent_shape) + 7) // 8,
                                  message="latents_bytes must hold ceil(h*w*C/8) bytes")]
    with tf.control_dependencies(checks):
      bits = unpack_bits(latents_bytes, latent_shape)
    image = self.codec.decode(bits[None], image_shape[0], image_shape[1])[0]
    return dict(image=to_uint8(image))

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def reconstruct(self, image):
    floats = tf.image.convert_image_dtype(image, tf.float32)
    return dict(image=to_uint8(self.codec(floats[None])[0]))


def graph_ops(saved_model_dir):
  """The op types used by every graph and function of a SavedModel (from saved_model.pb).

  Calls of the SavedModel's own functions are not ops and are left out."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  ops, functions = set(), set()
  for meta_graph in proto.meta_graphs:
    library = meta_graph.graph_def.library
    functions.update(f.signature.name for f in library.function)
    ops.update(node.op for node in meta_graph.graph_def.node)
    for function in library.function:
      ops.update(node.op for node in function.node_def)
  return ops - functions


def non_core_ops(saved_model_dir):
  """Ops of a SavedModel that stock TensorFlow does not register, or that call back into Python.

  Meaningful only in a process that has not imported tensorflow_compression, whose ops would be
  registered too: tests call it in a fresh interpreter."""
  from tensorflow.python.framework import op_def_registry  # pylint: disable=g-import-not-at-top
  return sorted(op for op in graph_ops(saved_model_dir)
                if op in PYTHON_OPS or op_def_registry.get(op) is None)


def rest_request_body(signature_name, **inputs):
  """The JSON body of a TF Serving REST `:predict` request (columnar "inputs" format, one
  image, no batch dimension). Bytes go as {"b64": ...}, as the REST API expects."""
  def to_json(value):
    if isinstance(value, bytes):
      return {"b64": base64.b64encode(value).decode()}
    return value.tolist() if isinstance(value, np.ndarray) else value
  return json.dumps({"signature_name": signature_name,
                     "inputs": {name: to_json(value) for name, value in inputs.items()}})


# ---------------------------------------------------------------------------------------------
# TFLite


def tflite_decoder(decoder, representative_latents=None):
  """TFLite flatbuffer of the Keras decoder: float32; or, given calibration latents
  [N, h, w, C], full-integer quantized with float input and output. Builtin ops only."""
  converter = tf.lite.TFLiteConverter.from_keras_model(decoder)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if representative_latents is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = lambda: ([latent[None].astype(np.float32)]
                                                for latent in representative_latents)
  with absl_level_kept(), warnings.catch_warnings():
    # "Statistics for quantized inputs were expected": the input stays float, as calibrated.
    warnings.simplefilter("ignore", UserWarning)
    return converter.convert()


@contextlib.contextmanager
def absl_level_kept():
  """TFLite's converter and TensorFlow's SavedModel code turn absl logging down to WARNING;
  this puts the level back, so the caller's INFO lines (progress) keep showing."""
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  try:
    yield
  finally:
    absl_logger.setLevel(level)


class TFLiteDecoder:
  """Runs a decoder .tflite on latents of any size (resizes the input tensor when it changes)."""

  def __init__(self, path):
    self.interpreter = tf.lite.Interpreter(model_path=path)
    self.input = self.interpreter.get_input_details()[0]["index"]
    self.output = self.interpreter.get_output_details()[0]["index"]
    self.shape = None

  def __call__(self, latent):
    """Binary latent [1, h, w, C] -> image float32 [1, s*h, s*w, 3]."""
    latent = np.asarray(latent, np.float32)
    if self.shape != latent.shape:
      self.interpreter.resize_tensor_input(self.input, latent.shape, strict=False)
      self.interpreter.allocate_tensors()
      self.shape = latent.shape
    self.interpreter.set_tensor(self.input, latent)
    self.interpreter.invoke()
    return self.interpreter.get_tensor(self.output)



def tflite_op_names(path):
  """The op names of a .tflite file (builtin names; a custom or Flex op shows as such)."""
  interpreter = tf.lite.Interpreter(
      model_path=path,
      experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  return sorted({op["op_name"] for op in interpreter._get_ops_details()})  # pylint: disable=protected-access


def seconds_per_call(function, inputs, repeats=3):
  """Mean seconds of `function(x)` over `inputs`, `repeats` times each, after one warm-up call
  (tracing, tensor allocation). Used by the parity check and bin/bench."""
  function(inputs[0])
  start = time.perf_counter()
  for _ in range(repeats):
    for x in inputs:
      function(x)
  return (time.perf_counter() - start) / (repeats * len(inputs))


PARITY_BARS = {TFLITE_FLOAT: 50.0, TFLITE_INT8: 35.0}  # PSNR against the Keras decoder, dB


def tflite_parity(version_dir, decoder, latents):
  """Compares each .tflite decoder with the Keras decoder on binary latents [1, h, w, C] of
  real images (any sizes). Returns {file: {size_bytes, psnr_db, max_abs_error, ms_per_image,
  bar_db, passes, shapes}} plus the Keras decoder's own latency under "keras"."""
  keras_decode = tf.function(lambda x: decoder(x, training=False), reduce_retracing=True)
  references = [keras_decode(tf.constant(x, tf.float32)).numpy() for x in latents]
  square = [x for x in latents if x.shape == latents[0].shape]
  result = dict(keras=dict(ms_per_image=1e3 * seconds_per_call(
      lambda x: keras_decode(tf.constant(x, tf.float32)).numpy(), square)))
  for name, bar in PARITY_BARS.items():
    path = os.path.join(version_dir, name)
    interpreter = TFLiteDecoder(path)
    outputs = [interpreter(x) for x in latents]
    errors = [np.abs(o - r).max() for o, r in zip(outputs, references)]
    psnr = min(float(tf.image.psnr(o, r, max_val=1.0)[0]) for o, r in zip(outputs, references))
    result[name] = dict(
        size_bytes=os.path.getsize(path), psnr_db=psnr, max_abs_error=float(max(errors)),
        ms_per_image=1e3 * seconds_per_call(interpreter, square), bar_db=bar,
        passes=bool(psnr >= bar), ops=tflite_op_names(path),
        shapes=sorted({str(tuple(x.shape[1:3])) for x in latents}))
  return result


def parity_table(parity):
  """Printable lines of a tflite_parity result."""
  lines = [f"{'decoder':22s} {'size':>10s} {'PSNR vs Keras':>14s} {'max |err|':>10s} "
           f"{'ms/image':>9s}  bar",
           f"{'Keras (float32)':22s} {'':>10s} {'':>14s} {'':>10s} "
           f"{parity['keras']['ms_per_image']:9.2f}"]
  for name in PARITY_BARS:
    row = parity[name]
    lines.append(f"{name:22s} {row['size_bytes'] / 1024:8.0f} kB {row['psnr_db']:11.2f} dB "
                 f"{row['max_abs_error']:10.2e} {row['ms_per_image']:9.2f}  "
                 f"{'>=' if row['passes'] else 'BELOW'} {row['bar_db']:g} dB")
  return lines


# ---------------------------------------------------------------------------------------------
# bin/export


def _versions(base):
  """Numeric version directories under EXPORT_DIR/<model_name> that hold a SavedModel."""
  if not os.path.isdir(base):
    return []
  return sorted(int(v) for v in os.listdir(base)
                if v.isdigit() and os.path.exists(os.path.join(base, v, "saved_model.pb")))


def resolve(path):
  """The version directory of an export given as EXPORT_DIR, EXPORT_DIR/<name> or a version
  directory (the newest version); None if `path` holds no export."""
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    return path
  versions = _versions(path)
  if versions:
    return os.path.join(path, str(versions[-1]))
  names = [n for n in sorted(os.listdir(path)) if _versions(os.path.join(path, n))] if (
      os.path.isdir(path)) else []
  if len(names) == 1:
    return resolve(os.path.join(path, names[0]))
  if len(names) > 1:
    raise UserError(f"{path}: holds several exported models ({', '.join(names)}); name one")
  return None


def read_info(version_dir):
  info = read_json(os.path.join(version_dir, INFO_FILE), "export the model again")
  if info.get("format") != "saic-tf export":
    raise UserError(f"{version_dir}: {INFO_FILE} is not a saic-tf export description")
  return info


def default_model_name(model_dir):
  return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.path.abspath(model_dir))) or "saic"


def _latents(codec, images):
  return [codec.encode(tf.constant(image[None])).numpy() for image in images]


def export(model_dir, export_dir, model_name=None, version=None, stage=None, parity_images=8):
  """Writes EXPORT_DIR/<model_name>/<version>/ (module doc); returns (version_dir, parity).

  Re-exporting the same trained stage is a no-op that returns the existing version; a new
  version is written to a temporary directory and renamed into place, so TF Serving (which
  watches EXPORT_DIR/<model_name>/) never sees half an export."""
  with absl_level_kept():
    return _export(model_dir, export_dir, model_name, version, stage, parity_images)


def _export(model_dir, export_dir, model_name, version, stage, parity_images):
  from saic_tf import compression  # pylint: disable=g-import-not-at-top  (tfc: not for serving)
  from saic_tf.config import TrainConfig  # pylint: disable=g-import-not-at-top
  file_codec = compression.FileCodec(model_dir, stage)
  config = TrainConfig.read(model_dir)
  base = os.path.join(export_dir, model_name or default_model_name(model_dir))
  fingerprint = file_codec.fingerprint.hex()
  for existing in _versions(base):
    version_dir = os.path.join(base, str(existing))
    if version is None or version == existing:
      info = read_info(version_dir)
      if info["fingerprint"] == fingerprint:
        logging.info("export: %s stage %s is already exported as %s", model_dir,
                     file_codec.stage, version_dir)
        return version_dir, read_json(os.path.join(version_dir, PARITY_FILE), "export again")
  versions = _versions(base)
  if version is not None and version in versions:
    raise UserError(f"--version={version}: {os.path.join(base, str(version))} already holds "
                    "another model; choose another version")
  version = version if version is not None else max(versions, default=0) + 1
  version_dir = os.path.join(base, str(version))
  tmp = os.path.join(base, f".tmp-{version}")
  shutil.rmtree(tmp, ignore_errors=True)

  start = time.time()
  module = ServingCodec(file_codec.codec)
  tf.saved_model.save(module, tmp, signatures={
      "encode": module.encode, "decode": module.decode, "reconstruct": module.reconstruct,
      "serving_default": module.reconstruct})
  train_images = _images(config, "train", 32)
  write_bytes(os.path.join(tmp, TFLITE_FLOAT), tflite_decoder(file_codec.codec.decoder))
  calibration = np.concatenate(_latents(file_codec.codec, train_images))
  write_bytes(os.path.join(tmp, TFLITE_INT8), tflite_decoder(file_codec.codec.decoder,
                                                              calibration))
  write_json(os.path.join(tmp, INFO_FILE), dict(
      format="saic-tf export", model_dir=os.path.abspath(model_dir), stage=file_codec.stage,
      bpp=config.bpp, stride=config.stride, channels=file_codec.channels,
      image_size=config.image_size, fingerprint=fingerprint,
      entropy_model=file_codec.entropy_model.to_dict(), signatures=list(SIGNATURES),
      tflite=dict(input="binary latents float32 [1, h, w, C]",
                  output="image float32 [1, s*h, s*w, 3] in [0, 1]; crop to the image size")))
  test_images = _images(config, "test", parity_images)
  size = config.image_size
  odd = _images(config, "test", max(1, parity_images // 4), (size // 2 + 3, size + 5))
  parity = tflite_parity(tmp, file_codec.codec.decoder,
                         _latents(file_codec.codec, test_images + odd))
  write_json(os.path.join(tmp, PARITY_FILE), parity)
  os.replace(tmp, version_dir)
  logging.info("export: %s stage %s -> %s (%.0f s)", model_dir, file_codec.stage, version_dir,
               time.time() - start)
  return version_dir, parity


def _images(config, split, count, size=None):
  """`count` float images of a split of the run's dataset at `size` (default: the run's)."""
  source = data.load(config.dataset, split, config.data_dir)
  batches = data.eval_dataset(source, size or config.image_size, count, limit=count,
                              shuffle_seed=config.seed)
  return [image for batch, _ in batches for image in batch.numpy()]
