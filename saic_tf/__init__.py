"""saic-tf: SAIC, Semantic-Assisted Image Compression, in TensorFlow/Keras.

Subpackages in the order data flows through them; each imports only the ones before it
(tests/test_imports.py checks it), and none imports `cli`:

  common/       errors, atomic files, config.json, distribution, the run directory's layout
  data/         the one image reader; datasets and their tf.data pipelines
  codec/        E → Q → D, the .saic bitstream, a run's trained codec stages
  semantic/     backbones, the frozen downstream network, GSW (Eq. 2–4), the feature loss
  training/     the resumable loop, the codec's train_step, Algorithm 1
  evaluation/   metrics, SI (CLUB), JPEG/WebP/AVIF, bin/evaluate, bin/report
  deploy/       .saic files, the TF Serving SavedModel, TFLite decoders, bin/export
  experiments/  the τ sweep, the reproduction, benchmarks
  cli.py        every flag of every bin/ command

The Python API (deploy/api.py):

    import saic_tf
    codec = saic_tf.load("saic-0.125")   # a shipped name, a MODEL_DIR or a bin/export directory
    data = codec.compress("photo.jpg")   # also a PIL image or a uint8 array, in any mode
    image = codec.decompress(data)       # uint8 [H, W, 3]
"""
import os as _os

__version__ = "0.1.0"


def _quiet_tensorflow():
  """TensorFlow's C++ start-up lines (CUDA, oneDNN) are noise to an API user; setdefault keeps
  a TF_CPP_MIN_LOG_LEVEL of their own."""
  _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load(model, stage=None, max_pixels=None):
  """The codec `model` names (a shipped name, a MODEL_DIR or a bin/export directory): a
  saic_tf.deploy.api.Codec with compress(image) -> bytes and decompress(bytes) -> uint8 array.
  TensorFlow is imported on the first call, not by `import saic_tf`."""
  _quiet_tensorflow()
  from saic_tf.deploy import api  # pylint: disable=g-import-not-at-top
  return api.load(model, stage, max_pixels)


def models():
  """{name: record.json} of the shipped codecs and classifiers."""
  _quiet_tensorflow()
  from saic_tf.deploy import api  # pylint: disable=g-import-not-at-top
  return api.models()
