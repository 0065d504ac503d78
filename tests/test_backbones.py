import urllib.error

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from saic_tf.common.errors import UserError
from saic_tf.semantic import backbones


@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_every_backbone_splits_into_features_and_head(backbone):
  classifier = backbones.build_classifier(backbone, 32, num_classes=7)
  features, head = backbones.split(classifier, backbones.DEFAULT_FEATURE_LAYERS[backbone])
  images = tf.random.uniform([2, 32, 32, 3], seed=0)
  f = features(images)
  assert f.shape.rank == 4 and classifier(images).shape == (2, 7)
  np.testing.assert_allclose(head(f), classifier(images), rtol=1e-4, atol=1e-4)


def test_resnet18_other_sizes_and_an_intermediate_layer():
  classifier = backbones.build_classifier("resnet18", 96, num_classes=10)
  features, head = backbones.split(classifier, "stage3")
  images = tf.random.uniform([1, 96, 96, 3], seed=1)
  assert features(images).shape == (1, 6, 6, 256)
  np.testing.assert_allclose(head(features(images)), classifier(images), rtol=1e-4, atol=1e-5)


def test_a_layer_inside_a_residual_block_cannot_split():
  classifier = backbones.build_classifier("resnet18", 32, num_classes=3)
  with pytest.raises(UserError, match="cannot be split"):
    backbones.split(classifier, "stage2_block1_conv1")
  with pytest.raises(UserError, match="no such layer"):
    backbones.split(classifier, "nope")


def test_freeze_keeps_batchnorm_in_inference_mode():
  classifier = backbones.freeze(backbones.build_classifier("resnet18", 32, num_classes=3))
  before = [w.copy() for w in classifier.get_weights()]
  images = tf.random.uniform([4, 32, 32, 3], seed=2)
  np.testing.assert_allclose(classifier(images, training=True), classifier(images),
                             rtol=1e-6, atol=1e-6)
  assert not classifier.trainable_variables
  for a, b in zip(before, classifier.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_offline_imagenet_weights_is_one_clear_line(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))  # empty Keras cache
  def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")
  monkeypatch.setattr("keras.src.utils.data_utils.urlopen", offline)
  with pytest.raises(UserError) as error:
    backbones.build_classifier("vgg16", 32, 10, weights="imagenet")
  message = str(error.value)
  assert "\n" not in message and "--backbone_weights=none" in message and "PATH" in message


def test_resnet18_has_no_keras_imagenet_weights_and_missing_files_are_named():
  with pytest.raises(UserError, match="no ResNet-18"):
    backbones.build_classifier("resnet18", 32, 10, weights="imagenet")
  with pytest.raises(UserError, match="/no/such.h5: no such file"):
    backbones.build_classifier("vgg16", 32, 10, weights="/no/such.h5")


def test_local_weights_file_is_loaded(tmp_path):
  keras.utils.set_random_seed(3)
  source = backbones.build_classifier("resnet18", 32, num_classes=4)
  path = str(tmp_path / "resnet18.h5")
  source.save_weights(path)
  keras.utils.set_random_seed(4)
  loaded = backbones.build_classifier("resnet18", 32, num_classes=4, weights=path)
  images = tf.random.uniform([1, 32, 32, 3], seed=5)
  np.testing.assert_allclose(loaded(images), source(images), rtol=1e-5, atol=1e-6)
