"""Your own classifier (--downstream_model): a small Keras model that the test saves itself,
frozen as it is, through APIC/SAIC/KD fine-tunes and bin/evaluate; and one line per bad input."""
import json
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.evaluation import evaluate
from saic_tf.semantic import own_model
from saic_tf.training import trainer

L = keras.layers


def _classifier(size=32, classes=10, softmax=True, pool=True, name="block"):
  images = keras.Input((size, size, 3))
  x = L.Conv2D(8, 3, strides=2, activation="relu", name="stem")(images)
  x = L.Conv2D(16, 3, name=name)(x)
  if pool:
    x = L.GlobalAveragePooling2D(name="pool")(x)
  else:
    x = L.Flatten()(x)
  return keras.Model(images, L.Dense(classes, activation="softmax" if softmax else None,
                                     name="scores")(x))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("own") / "clf.keras")
  keras.utils.set_random_seed(1)
  _classifier().save(path)
  return path


def _fine_tune(model_dir, base, model, **overrides):
  settings = dict(model_dir=str(model_dir), dataset="sample", image_size=96, loss="saic",
                  tau=2.0, init_from=base, downstream_model=model, batch_size=8,
                  finetune_steps=4, learning_rate=1e-4, checkpoint_every=4, log_every=4,
                  image_every=4)
  settings.update(overrides)
  return trainer.train(TrainConfig(**settings))


@pytest.mark.slow
def test_saic_from_a_base_on_your_own_keras_model_records_it_and_evaluates(
    tdic_run, model_file, tmp_path):
  before = own_model.sha256(model_file)
  _fine_tune(tmp_path / "saic", tdic_run, model_file)
  config = json.load(open(tmp_path / "saic" / "config.json"))
  # The model fixes 32x32 inputs, so --image_size=96 gives way; the default split is the
  # input of the last global pooling layer, i.e. the output of "block".
  assert config["image_size"] == 32
  assert config["feature_layer"] == "block"
  assert config["downstream_sha256"] == before
  gsw = json.load(open(tmp_path / "saic" / "gsw.json"))
  assert gsw["downstream_sha256"] == before and gsw["feature_layer"] == "block"
  assert len(gsw["W_prime"]) == 16  # the channels of "block"
  assert own_model.sha256(model_file) == before  # frozen: never retrained, never re-saved
  assert not os.path.exists(tmp_path / "saic" / "downstream")  # no head trained
  record = evaluate.evaluate(str(tmp_path / "saic"), evaluate.EvalSettings(
      max_images=8, baselines=(), club_train_images=8))
  assert record["downstream"]["sha256"] == before
  assert record["downstream"]["feature_layer"] == "block"
  assert set(record["rows"]) == {"original", "tdic", "saic"}


def test_the_network_is_the_model_itself_behind_the_input_scaling(model_file):
  model = keras.models.load_model(model_file, compile=False)
  images = tf.random.stateless_uniform([2, 32, 32, 3], seed=(1, 2))
  for kind, scaled in (("unit", images), ("byte", images * 255.0),
                       ("symmetric", images * 2.0 - 1.0)):
    classifier, features, head, name = own_model.network_from_keras(model, model_file, "", kind)
    # The model ends in a softmax: the classifier gives log-probabilities, which softmax
    # turns back into the model's own probabilities.
    np.testing.assert_allclose(tf.nn.softmax(classifier(images)), model(scaled), atol=1e-5)
    np.testing.assert_allclose(head(features(images)), classifier(images), atol=1e-5)
    assert name == "block" and not classifier.trainable_weights
  torch = own_model.InputScaling("torch")(images)
  np.testing.assert_allclose(torch[..., 0], (images[..., 0] - 0.485) / 0.229, atol=1e-4)
  caffe = own_model.InputScaling("caffe")(images)  # BGR, 0..255 less the ImageNet means
  np.testing.assert_allclose(caffe[..., 0], images[..., 2] * 255.0 - 103.939, atol=1e-3)
  _, _, _, name = own_model.network_from_keras(model, model_file, "stem", "unit")
  assert name == "stem"


def test_a_deflated_keras_file_loads_from_a_stored_copy_with_the_same_weights(model_file,
                                                                              tmp_path):
  """A .keras archive of deflated members (as the shipped classifiers are), which Keras' reader
  seeks through slowly: load_keras reads an uncompressed copy (the same bytes in each member);
  an archive stored so already (as Keras writes one), or an .h5 file, is read as it is."""
  stored = own_model._stored  # pylint: disable=protected-access
  deflated = str(tmp_path / "deflated.keras")
  with zipfile.ZipFile(model_file) as archive, zipfile.ZipFile(
      deflated, "w", zipfile.ZIP_DEFLATED) as target:
    members = {m.filename: archive.read(m) for m in archive.infolist()}
    for name, content in members.items():
      target.writestr(name, content)
  (tmp_path / "copy").mkdir()
  copy = stored(deflated, str(tmp_path / "copy"))
  assert copy != deflated
  with zipfile.ZipFile(copy) as archive:
    assert all(m.compress_type == zipfile.ZIP_STORED for m in archive.infolist())
    assert {m.filename: archive.read(m) for m in archive.infolist()} == members
  assert stored(copy, str(tmp_path / "other")) == copy
  assert stored(model_file, str(tmp_path / "other")) == model_file
  h5 = str(tmp_path / "clf.h5")
  keras.models.load_model(model_file, compile=False).save(h5)
  assert stored(h5, str(tmp_path / "other")) == h5
  loaded = own_model.load_keras(deflated)
  for ours, theirs in zip(loaded.get_weights(),
                          keras.models.load_model(model_file, compile=False).get_weights()):
    np.testing.assert_array_equal(ours, theirs)

@pytest.mark.slow
def test_a_changed_model_file_is_refused_on_resume(tdic_run, tmp_path):
  path = str(tmp_path / "clf.keras")
  _classifier().save(path)
  _fine_tune(tmp_path / "run", tdic_run, path, loss="apic", tau=None, finetune_steps=2)
  keras.utils.set_random_seed(7)
  _classifier().save(path)  # other weights under the same name
  with pytest.raises(UserError, match=r"the file changed since .* was started"):
    _fine_tune(tmp_path / "run", tdic_run, path, loss="apic", tau=None, finetune_steps=4)
  with pytest.raises(UserError, match="the file changed since"):
    evaluate.evaluate(str(tmp_path / "run"), evaluate.EvalSettings(max_images=4, baselines=()))


@pytest.mark.slow
def test_a_saved_model_serves_kd_only(tdic_run, tmp_path):
  directory = str(tmp_path / "saved")
  tf.saved_model.save(_classifier(softmax=False), directory)
  _fine_tune(tmp_path / "kd", tdic_run, directory, loss="kd", tau=None, finetune_steps=2)
  record = evaluate.evaluate(str(tmp_path / "kd"), evaluate.EvalSettings(
      max_images=4, baselines=(), club_train_images=4))
  assert set(record["rows"]) == {"original", "tdic", "kd"}
  for loss, extra, words in (("saic", {}, "--loss=saic needs the feature split"),
                             ("kd", dict(kd_feature_weight=0.1, tau=None),
                              "--kd_feature_weight needs the feature split")):
    with pytest.raises(UserError, match=words):
      _fine_tune(tmp_path / f"refused_{loss}", tdic_run, directory, loss=loss, **extra)
    assert not os.path.exists(tmp_path / f"refused_{loss}" / "config.json")


def test_bad_input_gets_one_line_each(tdic_run, tmp_path, model_file):
  def refused(path, match, **overrides):
    with pytest.raises(UserError, match=match) as raised:
      _fine_tune(tmp_path / "bad", tdic_run, path, **overrides)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(tmp_path / "bad" / "config.json")

  refused(str(tmp_path / "missing.keras"), "missing.keras: no such file")
  (tmp_path / "broken.keras").write_bytes(b"not a zip file")
  refused(str(tmp_path / "broken.keras"), "broken.keras: cannot load it with Keras")
  (tmp_path / "notes.txt").write_text("x")
  refused(str(tmp_path / "notes.txt"), "not a Keras model file")
  maps = keras.Model(*(lambda i: (i, L.Conv2D(3, 3)(i)))(keras.Input((32, 32, 3))))
  maps.save(str(tmp_path / "maps.keras"))
  refused(str(tmp_path / "maps.keras"), r"its output is .* not \[batch, classes\]")
  refused(model_file, r"--feature_layer=nope: no such layer .* \(layers with feature maps: "
          r"stem, block\)", feature_layer="nope")
  _classifier(pool=False).save(str(tmp_path / "flat.keras"))
  refused(str(tmp_path / "flat.keras"), r"no global pooling layer .* --feature_layer .*"
          r"stem, block")
  _classifier(classes=3).save(str(tmp_path / "three.keras"))
  refused(str(tmp_path / "three.keras"), "it has 3 classes, the dataset 10")
