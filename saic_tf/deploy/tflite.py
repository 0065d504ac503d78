"""TFLite models of a codec stage, builtin ops only, and their parity with the Keras decoder and
the SavedModel's encoder.

Decoders: decoder.tflite (float32) and decoder_int8.tflite (full-integer quantized, float input
and output, calibrated on latents of training images). Input: binary latents float32
[1, h, w, C] (resize the input tensor for any h, w); output: the image float32 [1, s*h, s*w, 3]
in [0, 1], to crop to the image size.

Encoders (the edge half of the codec): encoder.tflite (float32) and encoder_int8.tflite
(full-integer quantized, calibrated on training images). Input: the image uint8 [1, H, W, 3],
any H, W (resize the input tensor); output: the binary latents [ceil(H/s), ceil(W/s), C] packed
8 a byte, uint8 [ceil(h*w*C/8)]: the bytes numpy.packbits gives, which is what the SavedModel's
`decode` signature takes as `latents_bytes` (serving.py) and what bitstream.write codes into a
.saic file once unpacked.
"""
import contextlib
import os
import time
import warnings

from absl import logging
import numpy as np
import tensorflow as tf

from saic_tf.common.errors import UserError

TFLITE_FLOAT, TFLITE_INT8 = "decoder.tflite", "decoder_int8.tflite"
ENCODER_FLOAT, ENCODER_INT8 = "encoder.tflite", "encoder_int8.tflite"
FILES = (TFLITE_FLOAT, TFLITE_INT8, ENCODER_FLOAT, ENCODER_INT8)  # what bin/export writes
PARITY_FILE = "tflite_parity.json"
_BIT_WEIGHTS = [128, 64, 32, 16, 8, 4, 2, 1]


def _convert(function, trackable, calibration_inputs=None):
  """TFLite flatbuffer of a concrete function of one input: float32; or, given calibration
  inputs (each without the batch dimension), full-integer quantized, the input and output
  keeping their types. Builtin ops only."""
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function], trackable)
  # Convert the traced graph itself. The default first saves it as a temporary SavedModel,
  # which walks the whole Keras object graph: the same ops and outputs, ten times slower.
  converter.experimental_lower_to_saved_model = False
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if calibration_inputs is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration_inputs)
  with absl_level_kept(), warnings.catch_warnings():
    # "Statistics for quantized inputs were expected": the input stays as it is, as calibrated.
    warnings.simplefilter("ignore", UserWarning)
    return converter.convert()


def tflite_decoder(decoder, representative_latents=None):
  """TFLite flatbuffer of the Keras decoder: float32; or, given calibration latents
  [N, h, w, C], full-integer quantized with float input and output. Builtin ops only."""
  spec = tf.TensorSpec([1, None, None, decoder.input_shape[-1]], tf.float32, name="latent")
  function = tf.function(lambda latent: decoder(latent, training=False))
  return _convert(function.get_concrete_function(spec), decoder,
                  None if representative_latents is None else
                  np.asarray(representative_latents, np.float32))


def packed_bits(bits):
  """0/1 tensor of any shape -> uint8 [ceil(n/8)], the bytes of numpy.packbits (row-major, 8 a
  byte, most significant bit first): serving.pack_bits without the string ops TFLite lacks."""
  flat = tf.reshape(tf.cast(bits, tf.int32), [-1])
  flat = tf.pad(flat, [[0, tf.math.floormod(-tf.size(flat), 8)]])
  return tf.cast(tf.reduce_sum(tf.reshape(flat, [-1, 8]) * _BIT_WEIGHTS, axis=1), tf.uint8)


def tflite_encoder(codec, calibration_images=None):
  """TFLite flatbuffer of the codec's encoder E and binarizer Q, computed as the SavedModel's
  `encode` signature computes them (edge padding to the stride included): image uint8
  [1, H, W, 3] -> packed binary latents uint8 [ceil(h*w*C/8)] (module doc). Float32; or, given
  calibration images uint8 [H, W, 3] (one size), full-integer quantized. Builtin ops only."""
  spec = tf.TensorSpec([1, None, None, 3], tf.uint8, name="image")
  function = tf.function(lambda image: packed_bits(
      codec.encode(tf.image.convert_image_dtype(image, tf.float32))))
  return _convert(function.get_concrete_function(spec), codec,
                  None if calibration_images is None else
                  np.asarray(calibration_images, np.uint8))


def unpack(packed, latent_shape):
  """Packed bits (bytes or uint8 array, as an encoder .tflite or `encode` gives them) -> 0/1
  uint8 latent of `latent_shape`."""
  packed = np.frombuffer(packed, np.uint8) if isinstance(packed, bytes) else packed
  count = int(np.prod(latent_shape))
  if packed.size != -(-count // 8):
    raise UserError(f"{packed.size} packed bytes do not hold a latent of shape "
                    f"{tuple(latent_shape)} ({-(-count // 8)} bytes)")
  return np.unpackbits(packed, count=count).reshape(latent_shape)


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


class _TFLiteModel:
  """Runs a .tflite of one input on inputs of any size (resizes the input tensor when it
  changes), on `num_threads` threads (default: every core, as TensorFlow itself uses; the
  interpreter's own default is one thread)."""

  def __init__(self, path, num_threads=None):
    self.interpreter = tf.lite.Interpreter(model_path=path,
                                           num_threads=num_threads or os.cpu_count())
    self.input = self.interpreter.get_input_details()[0]["index"]
    self.output = self.interpreter.get_output_details()[0]["index"]
    self.shape = None

  def _run(self, x):
    x = np.ascontiguousarray(x)
    if self.shape != x.shape:
      self.interpreter.resize_tensor_input(self.input, x.shape, strict=False)
      self.interpreter.allocate_tensors()
      self.shape = x.shape
    self.interpreter.set_tensor(self.input, x)
    self.interpreter.invoke()
    return self.interpreter.get_tensor(self.output)


class TFLiteDecoder(_TFLiteModel):
  """A decoder .tflite: binary latent [1, h, w, C] -> image float32 [1, s*h, s*w, 3]."""

  def __call__(self, latent):
    return self._run(np.asarray(latent, np.float32))


class TFLiteEncoder(_TFLiteModel):
  """An encoder .tflite: image uint8 [1, H, W, 3] -> packed binary latents uint8
  [ceil(h*w*C/8)] (`unpack` with the latent shape [ceil(H/s), ceil(W/s), C] for the bits)."""

  def __call__(self, image):
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[0] != 1 or (
        image.shape[3] != 3):
      raise UserError(f"the TFLite encoder takes one uint8 image [1, H, W, 3], not "
                      f"{image.dtype} {list(image.shape)}")
    return self._run(image)


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
# Fraction of latent bits equal to the SavedModel encoder's. Float32 differs from TensorFlow only
# in rounding, which flips a bit only where E's output is within rounding error of the threshold
# 0.5. Int8 moves E's output by up to a quantization step, and a trained E can put many outputs
# that near 0.5, which then flip; what the flips cost is measured too (PSNR against the images):
# below its bar, use the float32 encoder.
ENCODER_BARS = {ENCODER_FLOAT: 0.999, ENCODER_INT8: 0.95}


def _keras_decode(decoder):
  return tf.function(lambda x: decoder(x, training=False), reduce_retracing=True)


def _psnr_vs_images(outputs, images):
  """Mean PSNR of decoder outputs [1, s*h, s*w, 3] (cropped to each image) against the images."""
  return float(np.mean([tf.image.psnr(o[0, :i.shape[0], :i.shape[1]], i, max_val=1.0)
                        for o, i in zip(outputs, images)]))


def tflite_parity(version_dir, decoder, latents, images):
  """Compares each .tflite decoder with the Keras decoder on binary latents [1, h, w, C] of
  real images (any sizes; `images` [h, w, 3] in [0, 1] are those images). Returns {file:
  {size_bytes, psnr_db, max_abs_error, psnr_vs_images_db, ms_per_image, bar_db, passes,
  shapes}} plus the Keras decoder's own latency and PSNR against the images under "keras": so
  what the int8 decoder's speed costs in quality is measured, not guessed."""
  keras_decode = _keras_decode(decoder)
  references = [keras_decode(tf.constant(x, tf.float32)).numpy() for x in latents]
  square = [x for x in latents if x.shape == latents[0].shape]
  result = dict(keras=dict(
      psnr_vs_images_db=_psnr_vs_images(references, images),
      ms_per_image=1e3 * seconds_per_call(
          lambda x: keras_decode(tf.constant(x, tf.float32)).numpy(), square)))
  for name, bar in PARITY_BARS.items():
    path = os.path.join(version_dir, name)
    interpreter = TFLiteDecoder(path)
    outputs = [interpreter(x) for x in latents]
    errors = [np.abs(o - r).max() for o, r in zip(outputs, references)]
    psnr = min(float(tf.image.psnr(o, r, max_val=1.0)[0]) for o, r in zip(outputs, references))
    result[name] = dict(
        size_bytes=os.path.getsize(path), psnr_db=psnr, max_abs_error=float(max(errors)),
        psnr_vs_images_db=_psnr_vs_images(outputs, images),
        ms_per_image=1e3 * seconds_per_call(interpreter, square), bar_db=bar,
        passes=bool(psnr >= bar), ops=tflite_op_names(path),
        shapes=sorted({str(tuple(x.shape[1:3])) for x in latents}))
  return result


def encoder_parity(version_dir, serving_encode, decoder, images):
  """Compares each .tflite encoder with the SavedModel's encoder (`serving_encode`: the function
  saved as its `encode` signature) on real images uint8 [H, W, 3] (any sizes): the fraction of
  latent bits that are equal (over all images, and on the worst image), and what the unequal
  ones cost: the Keras decoder's PSNR against the images from each encoder's bits. Latency is
  timed on the images of the first image's size, in this process for both. Returns
  {"saved_model_encode": {psnr_vs_images_db, ms_per_image}, file: {size_bytes, bits_equal,
  worst_image_bits_equal, bits_compared, psnr_vs_images_db, ms_per_image, bar, passes, ops,
  shapes}}."""
  def saved_model(image):
    return {k: v.numpy() for k, v in serving_encode(tf.constant(image)).items()}

  encoded = [saved_model(image) for image in images]
  references = [unpack(e["latents_bytes"], e["latent_shape"]) for e in encoded]
  keras_decode = _keras_decode(decoder)
  floats = [image.astype(np.float32) / 255 for image in images]

  def psnr_vs_images(latents):
    return _psnr_vs_images([keras_decode(tf.constant(b[None], tf.float32)).numpy()
                            for b in latents], floats)

  square = [image for image in images if image.shape == images[0].shape]
  result = dict(saved_model_encode=dict(
      psnr_vs_images_db=psnr_vs_images(references),
      ms_per_image=1e3 * seconds_per_call(saved_model, square)))
  for name, bar in ENCODER_BARS.items():
    path = os.path.join(version_dir, name)
    interpreter = TFLiteEncoder(path)
    latents = [unpack(interpreter(image[None]), r.shape) for image, r in zip(images, references)]
    equal = [int(np.sum(b == r)) for b, r in zip(latents, references)]
    bits_equal = sum(equal) / sum(r.size for r in references)
    result[name] = dict(
        size_bytes=os.path.getsize(path), bits_equal=bits_equal,
        worst_image_bits_equal=min(e / r.size for e, r in zip(equal, references)),
        bits_compared=sum(r.size for r in references), psnr_vs_images_db=psnr_vs_images(latents),
        ms_per_image=1e3 * seconds_per_call(lambda image: interpreter(image[None]), square),
        bar=bar, passes=bool(bits_equal >= bar), ops=tflite_op_names(path),
        shapes=sorted({str(image.shape[:2]) for image in images}))
  return result


def parity_table(parity):
  """Printable lines of a parity result (tflite_parity's, updated with encoder_parity's)."""
  lines = [f"{'decoder':22s} {'size':>10s} {'PSNR vs Keras':>14s} {'max |err|':>10s} "
           f"{'vs images':>10s} {'ms/image':>9s}  bar",
           f"{'Keras (float32)':22s} {'':>10s} {'':>14s} {'':>10s} "
           f"{parity['keras']['psnr_vs_images_db']:7.2f} dB "
           f"{parity['keras']['ms_per_image']:9.2f}"]
  for name in PARITY_BARS:
    row = parity[name]
    lines.append(f"{name:22s} {row['size_bytes'] / 1024:8.0f} kB {row['psnr_db']:11.2f} dB "
                 f"{row['max_abs_error']:10.2e} {row['psnr_vs_images_db']:7.2f} dB "
                 f"{row['ms_per_image']:9.2f}  "
                 f"{'>=' if row['passes'] else 'BELOW'} {row['bar_db']:g} dB")
  lines += ["", f"{'encoder':22s} {'size':>10s} {'bits = SavedModel':>18s} {'worst image':>12s} "
                f"{'decoded vs images':>18s} {'ms/image':>9s}  bar",
            f"{'SavedModel encode':22s} {'':>10s} {'':>18s} {'':>12s} "
            f"{parity['saved_model_encode']['psnr_vs_images_db']:15.2f} dB "
            f"{parity['saved_model_encode']['ms_per_image']:9.2f}"]
  for name in ENCODER_BARS:
    row = parity[name]
    lines.append(f"{name:22s} {row['size_bytes'] / 1024:8.0f} kB {100 * row['bits_equal']:16.3f} %"
                 f" {100 * row['worst_image_bits_equal']:10.3f} % "
                 f"{row['psnr_vs_images_db']:15.2f} dB {row['ms_per_image']:9.2f}  "
                 f"{'>=' if row['passes'] else 'BELOW'} {100 * row['bar']:g} %")
  return lines
