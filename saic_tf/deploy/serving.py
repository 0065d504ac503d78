"""The SavedModel that stock TF Serving runs: its signatures, the directory layout of an
export, and the checks that keep it servable.

In TF Serving's layout EXPORT_DIR/<model_name>/<version>/, with four signatures over one image at
a time (any size):

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
"""
import base64
import json
import os

import numpy as np
import tensorflow as tf

from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json
from saic_tf.data.images import to_uint8

INFO_FILE = os.path.join("assets.extra", "saic.json")
SIGNATURES = ("encode", "decode", "reconstruct", "serving_default")
# Ops that exist in core TensorFlow but call back into Python: stock TF Serving cannot run them.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
_BIT_WEIGHTS = [128, 64, 32, 16, 8, 4, 2, 1]


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


def versions(base):
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
  numbers = versions(path)
  if numbers:
    return os.path.join(path, str(numbers[-1]))
  names = [n for n in sorted(os.listdir(path)) if versions(os.path.join(path, n))] if (
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
