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
"""
__version__ = "0.1.0"
