"""The Python API (saic_tf.load / models) and the task-aware zoo (a classifier and a codec
fine-tuned for it), on a tiny zoo made here: tdic_run shipped as tdic-0.25, then a SAIC
fine-tune of it for a small Keras classifier that the test saves itself."""
import json
import os
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow import keras

import saic_tf
from conftest import IMAGES, ROOT
from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.data import datasets
from saic_tf.data.images import to_uint8
from saic_tf.experiments import model_zoo
from saic_tf.experiments import task_codecs
from saic_tf.training import trainer
from test_cli import run_bin

L = keras.layers


@pytest.fixture(scope="module")
def task_zoo(tdic_run, tmp_path_factory):
  """A zoo of tdic-0.25, the classifier tiny-clf and saic-0.25 fine-tuned for it."""
  root = str(tmp_path_factory.mktemp("task_zoo"))
  work = tmp_path_factory.mktemp("task_work")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(layout, "ZOO_ROOT", root)
    patch.setattr(zoo, "_FINGERPRINTS", {})
    model_zoo.package(tdic_run, "tdic-0.25", "bin/train --tiny")
    keras.utils.set_random_seed(3)
    images = keras.Input((32, 32, 3))
    x = L.Conv2D(8, 3, strides=2, activation="relu")(images)
    x = L.GlobalAveragePooling2D()(L.Conv2D(16, 3, name="block")(x))
    path = str(work / "clf.keras")
    keras.Model(images, L.Dense(10)(x)).save(path)
    run = str(work / "saic")
    trainer.train(TrainConfig(model_dir=run, dataset="sample", loss="saic", tau=2.0,
                              init_from="tdic-0.25", downstream_model=path, batch_size=8,
                              finetune_steps=4, learning_rate=1e-4, checkpoint_every=4,
                              log_every=4, image_every=4))
    task_codecs.package_classifier(run, "tiny-clf", "test", log=lambda _: None)
    task_codecs.package_codec(run, "saic-0.25", "tiny-clf", "test", log=lambda _: None)
    yield root, path


@pytest.fixture
def in_task_zoo(task_zoo, monkeypatch):
  monkeypatch.setattr(layout, "ZOO_ROOT", task_zoo[0])
  monkeypatch.setattr(zoo, "_FINGERPRINTS", {})
  return task_zoo


def test_the_readme_snippet_runs_exactly_as_written(tmp_path, monkeypatch):
  readme = open(os.path.join(ROOT, "README.md")).read()
  snippet = re.search(r"```python\n(import saic_tf\n.*?)```", readme, re.S).group(1)
  name = re.search(r'saic_tf\.load\("([^"]+)"\)', snippet).group(1)
  assert name in zoo.names(), f"the README's snippet loads {name}, which is not shipped"
  Image.open(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])).save(tmp_path / "photo.jpg")
  monkeypatch.chdir(tmp_path)
  scope = {}
  exec(compile(snippet, "README.md", "exec"), scope)  # pylint: disable=exec-used
  assert isinstance(scope["data"], bytes) and scope["image"].dtype == np.uint8
  assert scope["image"].shape == (224, 224, 3)


@pytest.mark.slow
def test_load_compress_decompress_any_input(in_task_zoo, tmp_path):
  codec = saic_tf.load("saic-0.25")
  assert codec.stage == "saic" and "saic-0.25" in repr(codec)
  path = os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])
  pil = Image.open(path).convert("RGB").resize((40, 30))
  array = np.asarray(pil)
  reference = codec.compress(array)
  # Every mode of the same pixels gives the same file: PIL modes, grey, RGBA, floats, a path.
  assert codec.compress(pil) == reference
  assert codec.compress(np.dstack([array, np.full(array.shape[:2], 7, np.uint8)])) == reference
  assert codec.compress(array / 255.0) == reference
  pil.save(tmp_path / "x.png")
  assert codec.compress(str(tmp_path / "x.png")) == reference
  grey = np.asarray(pil.convert("L"))
  assert codec.compress(grey) == codec.compress(np.repeat(grey[..., None], 3, -1))
  assert codec.compress(pil.convert("L")) == codec.compress(grey)
  decoded = codec.decompress(reference)
  assert decoded.dtype == np.uint8 and decoded.shape == (30, 40, 3)
  (tmp_path / "x.saic").write_bytes(reference)
  np.testing.assert_array_equal(codec.decompress(str(tmp_path / "x.saic")), decoded)
  for bad, words in ((np.zeros((4, 4, 2), np.uint8), "shape"), (array * 2.0, r"\[0, 1\]"),
                     (str(tmp_path / "missing.jpg"), "missing.jpg"), (5, "int")):
    with pytest.raises(UserError, match=words):
      codec.compress(bad)
  with pytest.raises(UserError):
    codec.decompress(b"not a saic file")
  with pytest.raises(UserError, match="not-shipped"):
    saic_tf.load("not-shipped")


def test_a_task_aware_codec_brings_its_classifier(in_task_zoo):
  _, original_path = in_task_zoo
  listed = saic_tf.models()
  assert list(listed) == ["saic-0.25", "tdic-0.25", "tiny-clf"]  # codecs by rate, then classifiers
  assert listed["saic-0.25"]["kind"] == "task-aware codec"
  assert listed["saic-0.25"]["classifier"] == "tiny-clf"
  assert listed["tiny-clf"]["kind"] == "classifier" and listed["tiny-clf"]["weights"] == "float16"
  codec = saic_tf.load("saic-0.25")
  assert codec.image_size == 32 and len(codec.class_names) == 10
  images = tf.random.stateless_uniform([3, 32, 32, 3], seed=(4, 2))
  original = keras.models.load_model(original_path, compile=False)
  # The shipped classifier is the given model, stored at float16.
  np.testing.assert_allclose(codec.classifier(images), original(images), atol=2e-2)
  assert codec.classify(images).shape == (3,)
  # Images of any size and kind go through the pipeline's resize path to the classifier's size.
  photo = (np.arange(48 * 40 * 4) % 256).astype(np.uint8).reshape(48, 40, 4)
  resized = codec.resize(photo)
  assert resized.shape == (32, 32, 3) and resized.dtype == np.uint8
  expected = to_uint8(datasets.resize(photo[..., :3], 32)).numpy()
  np.testing.assert_array_equal(resized, expected)
  np.testing.assert_array_equal(codec.classify([photo, images[0].numpy()]),
                                codec.classify(np.stack([resized, to_uint8(images[0]).numpy()])
                                               / 255.0))
  assert saic_tf.load("tdic-0.25").classifier is None
  # The shipped file is a plain Keras model file.
  clf = keras.models.load_model(layout.zoo_classifier_path("tiny-clf"), compile=False)
  assert clf.count_params() == original.count_params()


@pytest.mark.slow
def test_task_zoo_figures_and_listing(in_task_zoo, tmp_path):
  settings = model_zoo.MeasureSettings(kodak_dir=str(tmp_path / "none"),
                                       imagenette_dir=str(tmp_path / "none"))
  figures = task_codecs.measure("saic-0.25", settings, log=lambda _: None)
  sample = figures["sample96"]
  assert sample["images"] == 100
  assert set(sample["rows"]) == {"original", "codec", "tdic-0.25", "jpeg", "webp", "avif"}
  # The others never get more bytes than the .saic file, unless even their lowest quality is
  # larger (then counted).
  for name in ("jpeg", "webp", "avif"):
    row = sample["rows"][name]
    assert row["bpp"] <= sample["rows"]["codec"]["bpp"] + 1e-9 or row["images_over_budget"]
  assert -1 <= sample["codec_minus"]["webp"]["difference"] <= 1
  assert zoo.record("saic-0.25")["figures"]["sample96"] == sample
  # Each packager's files, and the record measure rewrote, are today's (common/formats.py).
  for name, file_name in (("saic-0.25", layout.CONFIG_FILE), ("saic-0.25", zoo.RECORD_FILE),
                          ("tiny-clf", zoo.RECORD_FILE)):
    with open(os.path.join(layout.zoo_dir(name), file_name)) as f:
      assert list(json.load(f).items())[0] == ("format_version", 2)
  lines = task_codecs.table()
  assert any(line.startswith("saic-0.25") and "this codec" in line for line in lines)
  result = run_bin("models", env=dict(SAIC_ZOO_ROOT=in_task_zoo[0]))
  assert "saic-0.25" in result.stdout and "tiny-clf" in result.stdout
