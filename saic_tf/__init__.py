"""saic-tf: SAIC, Semantic-Assisted Image Compression, in TensorFlow/Keras.

Modules by concept: data (sources, tf.data), codec (encoder, binarizer, decoder), losses,
trainer (train/test steps, resumable runs), config (config.json), cli (absl flags).
"""
__version__ = "0.1.0"
