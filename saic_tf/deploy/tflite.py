"""TFLite decoders: decoder.tflite (float32) and decoder_int8.tflite (full-integer quantized,
float input and output, calibrated on latents of training images), builtin ops only, and their
parity with the Keras decoder.

Input: binary latents float32 [1, h, w, C] (resize the input tensor for any h, w); output: the
image float32 [1, s*h, s*w, 3] in [0, 1], to crop to the image size.
"""
import contextlib
import os
import time
import warnings

from absl import logging
import numpy as np
import tensorflow as tf

TFLITE_FLOAT, TFLITE_INT8 = "decoder.tflite", "decoder_int8.tflite"
PARITY_FILE = "tflite_parity.json"


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
  """Runs a decoder .tflite on latents of any size (resizes the input tensor when it changes),
  on `num_threads` threads (default: every core, as TensorFlow itself uses; the interpreter's
  own default is one thread)."""

  def __init__(self, path, num_threads=None):
    self.interpreter = tf.lite.Interpreter(model_path=path,
                                           num_threads=num_threads or os.cpu_count())
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
  keras_decode = tf.function(lambda x: decoder(x, training=False), reduce_retracing=True)
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


def parity_table(parity):
  """Printable lines of a tflite_parity result."""
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
  return lines
