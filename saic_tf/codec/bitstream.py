"""The .saic file: a codec's binary latents, coded losslessly with tensorflow-compression's range
coder under a probability model learned from training latents.

Probability model (`EntropyModel`): a logistic context model. The bit of channel c at latent
position (i, j) has P(1) = σ(w_c · f + b_c), where f holds all C bits of the four already-decoded
neighbours left (i, j-1), up-left (i-1, j-1), up (i-1, j) and up-right (i-1, j+1) (zeros outside
the latent): 4C features, so a channel is predicted from every channel around it. w and b are
fitted by logistic regression on the latents of training images and stored as integers (units of
1/LOGIT_SCALE) in MODEL_DIR/<stage>/entropy_model.json beside the checkpoint. The logit is an
exact integer dot product, rounded to one of BUCKETS CDF rows, so encoder and decoder pick the
same row bit for bit on any machine. Positions are coded in wavefronts t = 2i + j: a position's
four neighbours all lie on earlier wavefronts, so each wavefront is decoded with one range-
decoder call (2h + w - 2 calls for an h×w latent).

File layout (integers big-endian; "varint" = unsigned LEB128):

  magic          4 bytes   b"SAIC"
  version        1 byte    2
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

from saic_tf.common.errors import UserError

MAGIC = b"SAIC"
VERSION = 2
PRECISION = 16  # CDF precision of the range coder
NEIGHBOURS = 4  # left, up-left, up, up-right
LOGIT_SCALE = 64  # integer weights are in units of 1/LOGIT_SCALE logits
BUCKET = 8  # CDF rows are BUCKET/LOGIT_SCALE = 1/8 logit apart
LOGIT_LIMIT = 12 * LOGIT_SCALE  # logits clipped to ±12 (P ≥ 6e-6 for either bit)
BUCKETS = 2 * LOGIT_LIMIT // BUCKET + 1
MAX_SIDE = 1 << 15  # refuse declared image sides above this (no huge allocation from a header)


@dataclasses.dataclass
class EntropyModel:
  """Integer logistic weights [NEIGHBOURS * C, C] and biases [C], in units of 1/LOGIT_SCALE."""
  weights: np.ndarray
  bias: np.ndarray

  @classmethod
  def from_float(cls, weights, bias):
    return cls(np.round(np.asarray(weights) * LOGIT_SCALE).astype(np.int64),
               np.round(np.asarray(bias) * LOGIT_SCALE).astype(np.int64))

  @property
  def channels(self):
    return self.bias.shape[0]

  def cdf_indexes(self, features):
    """CDF row of each bit: features int [..., NEIGHBOURS * C] -> int32 [..., C]."""
    logits = np.clip(features.astype(np.int64) @ self.weights + self.bias, -LOGIT_LIMIT,
                     LOGIT_LIMIT)
    return ((logits + LOGIT_LIMIT + BUCKET // 2) // BUCKET).astype(np.int32)

  @staticmethod
  def cdf_table():
    """[BUCKETS, 4] rows [precision, 0, P(0)·2^p, 2^p] as the range coder expects."""
    total = 1 << PRECISION
    logits = (np.arange(BUCKETS) * BUCKET - LOGIT_LIMIT) / LOGIT_SCALE
    zeros = np.clip(np.round(total / (1.0 + np.exp(logits))), 1, total - 1)  # P(0) = σ(-l)
    return tf.constant([[PRECISION, 0, int(z), total] for z in zeros], tf.int32)

  def to_dict(self):
    return dict(kind="logistic", neighbours="left, up-left, up, up-right (all channels)",
                logit_scale=LOGIT_SCALE, weights=self.weights.tolist(), bias=self.bias.tolist())

  @classmethod
  def from_dict(cls, record):
    try:
      weights = np.asarray(record["weights"], np.int64)
      bias = np.asarray(record["bias"], np.int64)
      valid = (record.get("kind") == "logistic" and record.get("logit_scale") == LOGIT_SCALE and
               bias.ndim == 1 and weights.shape == (NEIGHBOURS * bias.shape[0], bias.shape[0]))
    except (KeyError, TypeError, ValueError, AttributeError):
      valid = False
    if not valid:
      raise UserError("entropy model: unexpected layout")
    return cls(weights, bias)


def neighbour_features(bits, rows, cols):
  """The bits of the four causal neighbours of positions (rows, cols) of a latent [h, w, C]:
  int32 [len(rows), NEIGHBOURS * C], zeros outside the latent."""
  padded = np.pad(np.asarray(bits, np.int32), ((1, 0), (1, 1), (0, 0)))
  return np.concatenate([padded[rows + 1, cols], padded[rows, cols],  # left, up-left
                         padded[rows, cols + 1], padded[rows, cols + 2]], axis=-1)  # up, up-right


def wavefronts(h, w):
  """[(rows, cols)] of each wavefront t = 2i + j, in coding order."""
  fronts = []
  for t in range(2 * (h - 1) + w):
    rows = np.arange(max(0, (t - w + 2) // 2), min(h - 1, t // 2) + 1)
    fronts.append((rows, t - 2 * rows))
  return fronts


def _rate_logits(labels):
  """Logit of each channel's rate of ones (clipped to [1e-3, 1 - 1e-3]): the biases of a model
  without neighbour weights."""
  rates = tf.clip_by_value(tf.reduce_mean(labels, 0), 1e-3, 1 - 1e-3)
  return tf.math.log(rates / (1 - rates))


def _fit_logistic(features, labels, steps, l2):
  """Float weights [F, C] and biases [C] minimizing the bits' cross-entropy (+ l2 ‖w‖²)."""
  weights = tf.Variable(tf.zeros([features.shape[1], labels.shape[1]]))
  bias = tf.Variable(_rate_logits(labels))  # start from the per-channel rate
  optimizer = tf.keras.optimizers.Adam(0.05)
  optimizer.build([weights, bias])  # its slots exist before the loop below

  @tf.function
  def fit():
    # The steps run in one graph loop: from Python, one call per step cost more than the
    # step itself on a small latent.
    for _ in tf.range(steps):
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels, features @ weights + bias)) + l2 * tf.reduce_sum(tf.square(weights))
      optimizer.apply_gradients(zip(tape.gradient(loss, [weights, bias]), [weights, bias]))

  fit()
  return weights.numpy(), bias.numpy()


def _cross_entropy(features, labels, weights, bias):
  logits = features @ weights + bias
  return float(tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits)))


def fit_entropy_model(latents, steps=500, l2=1e-4):
  """Logistic regression of each bit on its neighbour features over latents [N, h, w, C].

  Guard against overfitting few latents: fitted on the first 80 % of the positions (whole
  images when there are several) first, the neighbour weights are kept only if they predict
  the other 20 % better than the per-channel rates alone."""
  latents = np.asarray(latents, np.int32)
  n, h, w, c = latents.shape
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  rows, cols = rows.reshape(-1), cols.reshape(-1)
  features = np.concatenate([neighbour_features(bits, rows, cols) for bits in latents])
  features = tf.constant(features, tf.float32)
  labels = tf.constant(latents.reshape(n * h * w, c), tf.float32)
  split = (4 * n * h * w) // 5
  if 0 < split < n * h * w:
    weights, bias = _fit_logistic(features[:split], labels[:split], steps, l2)
    rates_only = _cross_entropy(features[split:], labels[split:], np.zeros_like(weights),
                                 _rate_logits(labels[:split]))
    if _cross_entropy(features[split:], labels[split:], weights, bias) >= rates_only:
      return EntropyModel.from_float(np.zeros_like(weights), _rate_logits(labels).numpy())
  return EntropyModel.from_float(*_fit_logistic(features, labels, steps, l2))


def fingerprint(codec, model: EntropyModel):
  digest = hashlib.sha256()
  for weight in codec.get_weights():
    digest.update(np.ascontiguousarray(weight, np.float32).tobytes())
  digest.update(np.ascontiguousarray(model.weights, np.int64).tobytes())
  digest.update(np.ascontiguousarray(model.bias, np.int64).tobytes())
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
  """Binary latent [h, w, C] -> range-coded payload bytes (positions in wavefront order)."""
  bits = np.asarray(bits, np.int32)
  fronts = wavefronts(*bits.shape[:2])
  rows = np.concatenate([r for r, _ in fronts])
  cols = np.concatenate([c for _, c in fronts])
  index = model.cdf_indexes(neighbour_features(bits, rows, cols))
  encoder = tfc.create_range_encoder([], model.cdf_table())
  encoder = tfc.entropy_encode_index(encoder, tf.constant(index), tf.constant(bits[rows, cols]))
  return tfc.entropy_encode_finalize(encoder).numpy()


def decode_bits(payload, shape, model: EntropyModel):
  """Payload -> binary latent [h, w, C] (int32), one wavefront per range-decoder call."""
  h, w, c = shape
  bits = np.zeros((h, w, c), np.int32)
  decoder = tfc.create_range_decoder(tf.constant(payload), model.cdf_table())
  for rows, cols in wavefronts(h, w):
    index = model.cdf_indexes(neighbour_features(bits, rows, cols))
    decoder, values = tfc.entropy_decode_index(decoder, tf.constant(index), index.shape,
                                               tf.int32)
    bits[rows, cols] = np.clip(values.numpy(), 0, 1)
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


def file_fingerprint(data):
  """The fingerprint a .saic file carries (which model made it), read from its header alone;
  the whole file is checked by `parse`."""
  if data[:4] != MAGIC:
    raise UserError("not a .saic file (wrong magic)")
  if len(data) < 9:
    raise UserError("truncated header")
  if data[4] != VERSION:
    raise UserError(f"unsupported .saic version {data[4]} (this reads {VERSION})")
  return bytes(data[5:9])


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
