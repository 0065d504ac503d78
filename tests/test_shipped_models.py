"""The codecs shipped in saic_tf/codec/models/: each loads, carries the fingerprint its record
names, and reproduces its recorded PSNR on the shipped sample within 0.1 dB; its entropy-coded
payload stays within its nominal rate (at 96×96 a file's ~20-byte header adds ~0.017 bpp; on
Kodak's full-size photos, as recorded, the whole file does); together they stay within the
zoo's 40 MB (10^6 bytes). The task-aware codecs reproduce their recorded accuracy on the
sample, and their classifier is the file its record names."""
import os

import numpy as np
import pytest
from tensorflow import keras

from saic_tf.codec import bitstream
from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.deploy.file_codec import FileCodec
from saic_tf.experiments import model_zoo
from saic_tf.experiments import task_codecs
from saic_tf.semantic import own_model

HERE = layout.ZOO_ROOT.startswith(os.path.dirname(os.path.dirname(__file__)))
TASK_AWARE = [name for name in zoo.names()
              if HERE and zoo.record(name).get("kind") == "task-aware codec"]
SHIPPED = [name for name in zoo.names() if HERE and name not in TASK_AWARE]  # pixel codecs
CLASSIFIERS = zoo.classifier_names() if HERE else []
NONE_YET = [pytest.param(None, marks=pytest.mark.skip(
    reason="no codec is shipped in this checkout, or SAIC_ZOO_ROOT points at another zoo"))]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED or NONE_YET)
def test_a_shipped_codec_reproduces_its_recorded_figures(name):
  record = zoo.record(name)
  codec = FileCodec(layout.zoo_dir(name))
  assert codec.fingerprint.hex() == record["fingerprint"]
  images = model_zoo.resized_split("sample", "test", "", 96)
  measured = model_zoo.measure_images(codec, images)
  recorded = record["figures"]["sample96"]
  assert abs(measured["psnr"] - recorded["psnr"]) < 0.1, (measured, recorded)
  payload = [bitstream.parse(codec.compress(image), codec.fingerprint, codec.stride,
                             codec.channels).payload for image in images]
  assert 8 * np.mean([len(p) for p in payload]) / 96**2 <= record["bpp"], measured
  if "kodak" in record["figures"]:
    assert record["figures"]["kodak"]["bpp"] <= record["bpp"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TASK_AWARE or NONE_YET)
def test_a_task_aware_codec_reproduces_its_recorded_accuracy(name):
  """Also bin/demo's step 1 (--demo_codec=NAME): it prints task_codecs.gain_lines of this
  measure (the demo's own test, in test_cli, runs its step 2)."""
  record = zoo.record(name)
  classifier = zoo.record(record["classifier"])
  assert own_model.sha256(layout.zoo_classifier_path(record["classifier"])) == (
      classifier["sha256"])
  measured = task_codecs.accuracy_on(name, log=lambda _: None)
  recorded = record["figures"]["sample96"]
  for method, row in recorded["rows"].items():  # 100 images: one image is 1 point
    assert abs(measured["rows"][method]["accuracy"] - row["accuracy"]) <= 0.011, method
    if "bpp" in row:
      assert abs(measured["rows"][method]["bpp"] - row["bpp"]) < 1e-3, method
  lines = task_codecs.gain_lines(name, measured)
  assert lines[0] == "100 images at 96x96, the shipped classifier's accuracy:"
  for row in ("original images", f"{name} ", f"{record['base']} (its base)",
              "JPEG at the same bytes", "WEBP at the same bytes", "AVIF at the same bytes"):
    assert sum(line.startswith(f"  {row}") for line in lines) == 1, row
  assert all(f"{name} − this:" in line for line in lines[3:])


@pytest.mark.parametrize("name", CLASSIFIERS or NONE_YET)
def test_a_shipped_classifier_is_a_plain_keras_file_that_still_classifies(name):
  record = zoo.record(name)
  path = layout.zoo_classifier_path(name)
  assert own_model.sha256(path) == record["sha256"]
  model = keras.models.load_model(path, compile=False)  # stock Keras, no saic_tf layer
  assert model.input_shape == (None, record["image_size"], record["image_size"], 3)
  assert model.output_shape == (None, record["classes"])
  images, labels, _ = task_codecs.labelled_split("sample", "test", "", record["image_size"])
  accuracy = np.mean(task_codecs.predictions(model, images) == labels)
  # The sample's 100 val images are Imagenette val images: within 3 standard errors of the
  # recorded val accuracy (a broken, mis-scaled or untrained network is far outside).
  expected = record["float16_cost"]["accuracy_float16"]
  assert abs(accuracy - expected) <= 3 * np.sqrt(expected * (1 - expected) / len(labels))


def test_the_zoo_stays_small():
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(layout.ZOO_ROOT)
              for f in files) if os.path.isdir(layout.ZOO_ROOT) else 0
  assert total <= 40 * 10**6
