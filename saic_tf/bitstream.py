"""The .saic file: a codec's binary latents, coded losslessly with tensorflow-compression's range
coder under a probability model learned from training latents.

Probability model (`EntropyModel`): P(bit | channel c, context k), where k ∈ 0..7 packs the
three already-decoded neighbours in the row above (up-left, up, up-right; 0 outside the latent)
of the same channel. Estimated by counting on latents of training images, with add-one
smoothing, and stored as MODEL_DIR/<stage>/entropy_model.json beside the checkpoint. Rows are
decoded one at a time (each row's contexts come from the row above), so decoding takes h range-
decoder calls for an h-row latent.

File layout (integers big-endian; "varint" = unsigned LEB128):

  magic          4 bytes   b"SAIC"
  version        1 byte    1
  fingerprint    4 bytes   first 4 bytes of SHA-256 over the codec weights and the model
  height, width  varints   the image size
  h, w, C        varints   the latent shape (h = ceil(height/s), w = ceil(width/s))
  payload bytes  varint
  CRC-32         4 bytes   of everything else: the fields above and the payload
  payload                  the range coder's output

The header takes 13 bytes plus the varints (6 to 12 bytes): 19 bytes for a 96×96 image.
"""
import dataclasses
import hashlib
import io
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from saic_tf.errors import UserError

MAGIC = b"SAIC"
VERSION = 1
PRECISION = 16  # CDF precision of the range coder
CONTEXTS = 8
MAX_SIDE = 1 << 15  # refuse declared image sides above this (no huge allocation from a header)


@dataclasses.dataclass
class EntropyModel:
  """Quantized P(bit = 0) · 2^PRECISION per channel and context: integers [C, CONTEXTS].

  Integers, so that the stored model is exactly the one the encoder used."""
  zeros: np.ndarray

  @classmethod
  def from_probabilities(cls, ones_probability):
    total = 1 << PRECISION
    zeros = np.round((1.0 - np.asarray(ones_probability)) * total).astype(np.int64)
    return cls(np.clip(zeros, 1, total - 1))  # both symbols stay codable

  @property
  def channels(self):
    return self.zeros.shape[0]

  def cdf_table(self):
    """[C * CONTEXTS, 4] rows [precision, 0, P(0)·2^p, 2^p] as the range coder expects."""
    total = 1 << PRECISION
    rows = [[PRECISION, 0, int(z), total] for z in self.zeros.reshape(-1)]
    return tf.constant(rows, tf.int32)

  def to_dict(self):
    return dict(contexts="up-left, up, up-right of the row above", precision=PRECISION,
                zeros=self.zeros.tolist())

  @classmethod
  def from_dict(cls, record):
    try:
      zeros = np.asarray(record["zeros"], np.int64)
    except (KeyError, TypeError, ValueError):
      zeros = None
    if (zeros is None or zeros.ndim != 2 or zeros.shape[1] != CONTEXTS or
        record.get("precision") != PRECISION):
      raise UserError("entropy model: unexpected layout; delete it to fit it again")
    return cls(zeros)


def contexts(bits):
  """Context index k [h, w, C] of every latent bit from the row above (see module doc)."""
  bits = np.asarray(bits, np.int32)
  above = np.zeros_like(bits)
  above[1:] = bits[:-1]
  padded = np.pad(above, ((0, 0), (1, 1), (0, 0)))
  return 4 * padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]


def fit_entropy_model(latents):
  """Counts bits per channel and context over latents [N, h, w, C] (add-one smoothing)."""
  channels = latents[0].shape[-1]
  ones = np.zeros((channels, CONTEXTS))
  total = np.zeros((channels, CONTEXTS))
  for bits in latents:
    bits = np.asarray(bits, np.int32)
    k = contexts(bits)
    for context in range(CONTEXTS):
      mask = k == context
      ones[:, context] += (bits * mask).sum(axis=(0, 1))
      total[:, context] += mask.sum(axis=(0, 1))
  return EntropyModel.from_probabilities((ones + 1.0) / (total + 2.0))


def fingerprint(codec, model: EntropyModel):
  digest = hashlib.sha256()
  for weight in codec.get_weights():
    digest.update(np.ascontiguousarray(weight, np.float32).tobytes())
  digest.update(np.ascontiguousarray(model.zeros, np.int64).tobytes())
  return digest.digest()[:4]


def _varint(value):
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def _read_varint(stream, what):
  value, shift = 0, 0
  while True:
    byte = stream.read(1)
    if not byte:
      raise UserError(f"truncated header (while reading {what})")
    value |= (byte[0] & 0x7F) << shift
    if not byte[0] & 0x80:
      return value
    shift += 7
    if shift > 35:
      raise UserError(f"corrupt header ({what} is not a valid number)")


def encode_bits(bits, model: EntropyModel):
  """Binary latent [h, w, C] -> range-coded payload bytes."""
  bits = np.asarray(bits, np.int32)
  index = contexts(bits) + CONTEXTS * np.arange(bits.shape[-1], dtype=np.int32)
  encoder = tfc.create_range_encoder([], model.cdf_table())
  encoder = tfc.entropy_encode_index(encoder, tf.constant(index), tf.constant(bits))
  return tfc.entropy_encode_finalize(encoder).numpy()


def decode_bits(payload, shape, model: EntropyModel):
  """Payload -> binary latent [h, w, C] (int32), one row at a time."""
  h, w, c = shape
  bits = np.zeros((h, w, c), np.int32)
  channel_offset = CONTEXTS * np.arange(c, dtype=np.int32)
  decoder = tfc.create_range_decoder(tf.constant(payload), model.cdf_table())
  previous = np.zeros((w, c), np.int32)
  for row in range(h):
    padded = np.pad(previous, ((1, 1), (0, 0)))
    index = 4 * padded[:-2] + 2 * padded[1:-1] + padded[2:] + channel_offset
    decoder, values = tfc.entropy_decode_index(decoder, tf.constant(index), [w, c],
                                               tf.int32)
    bits[row] = previous = np.clip(values.numpy(), 0, 1)
  if not bool(tfc.entropy_decode_finalize(decoder)):
    raise UserError("corrupt payload (the range decoder did not end cleanly)")
  return bits


def write(height, width, bits, model: EntropyModel, model_fingerprint):
  """The .saic bytes of one image's binary latent [h, w, C]."""
  payload = encode_bits(bits, model)
  h, w, c = np.shape(bits)
  fields = (MAGIC + bytes([VERSION]) + model_fingerprint +
            b"".join(_varint(v) for v in (height, width, h, w, c, len(payload))))
  return fields + zlib.crc32(fields + payload).to_bytes(4, "big") + payload


@dataclasses.dataclass
class Header:
  height: int
  width: int
  latent_shape: tuple
  payload: bytes


def parse(data, model_fingerprint, stride, channels):
  """Checks a .saic file against the model; returns its Header. One-line UserError if bad."""
  stream = io.BytesIO(data)
  if stream.read(4) != MAGIC:
    raise UserError("not a .saic file (wrong magic)")
  version = stream.read(1)
  if not version:
    raise UserError("truncated header")
  if version[0] != VERSION:
    raise UserError(f"unsupported .saic version {version[0]} (this reads {VERSION})")
  file_fingerprint = stream.read(4)
  if len(file_fingerprint) < 4:
    raise UserError("truncated header")
  height, width, h, w, c, length = (_read_varint(stream, what) for what in (
      "height", "width", "latent height", "latent width", "channels", "payload length"))
  fields_end = stream.tell()
  crc = stream.read(4)
  if len(crc) < 4:
    raise UserError("truncated header")
  payload = stream.read(length + 1)
  if len(payload) < length:
    raise UserError(f"truncated file ({len(payload)} of {length} payload bytes)")
  if len(payload) > length:
    raise UserError("corrupt file (bytes after the payload)")
  if zlib.crc32(data[:fields_end] + payload).to_bytes(4, "big") != crc:
    raise UserError("corrupt file (CRC-32 does not match)")
  if file_fingerprint != model_fingerprint:
    raise UserError(f"made with another model (fingerprint {file_fingerprint.hex()}, this "
                    f"model {model_fingerprint.hex()})")
  expected = (-(-height // stride), -(-width // stride), channels)
  if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE) or (h, w, c) != expected:
    raise UserError(f"corrupt header (image {height}x{width}, latent {h}x{w}x{c})")
  return Header(height, width, (h, w, c), payload)
