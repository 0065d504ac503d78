"""Shared fixtures: tiny real-image folders with awkward images, and paths of the repository."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import pytest  # noqa: E402

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
  # bin/test runs a worker per core: each worker's ops on one thread, so that the workers do not
  # contend for each other's core (on the 2-core machine, 20 tests took 149 s instead of 172).
  # Through TensorFlow's environment variable, so that the bin/ commands a test starts compute
  # as the test's own process does (an SI compared across the two agrees to 1e-3 then).
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_CIFAR = os.path.join(ROOT, "saic_tf", "sample_data", "cifar10")
# Real 224x224 JPEGs of the shipped sample (church), two of them greyscale.
IMAGES = os.path.join(ROOT, "saic_tf", "sample_data", "imagenette", "val", "n03028079")


@pytest.fixture(scope="session")
def tdic_run(tmp_path_factory):
  """A tiny TDIC run trained on the real sample (shared by the compression and export tests)."""
  from saic_tf.common.config import TrainConfig  # pylint: disable=g-import-not-at-top
  from saic_tf.training import trainer  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path_factory.mktemp("tdic")
  trainer.train(TrainConfig(model_dir=str(model_dir), dataset="sample", image_size=32,
                            bpp=0.25, filters=8, batch_size=8, learning_rate=1e-3, steps=30,
                            checkpoint_every=30, log_every=30, image_every=30, seed=5))
  return str(model_dir)


ZOO_NAME = "tdic-0.25"  # the name tdic_run is shipped under by tiny_zoo


@pytest.fixture(scope="session")
def tiny_zoo(tdic_run, tmp_path_factory):
  """A zoo of one codec: tdic_run packaged as ZOO_NAME."""
  from saic_tf.common import layout  # pylint: disable=g-import-not-at-top
  from saic_tf.experiments import model_zoo  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp("zoo"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(layout, "ZOO_ROOT", root)
    model_zoo.package(tdic_run, ZOO_NAME, "bin/train --tiny")
  return root


@pytest.fixture
def in_zoo(tiny_zoo, monkeypatch):
  """tiny_zoo as the zoo, for the test."""
  from saic_tf.codec import zoo  # pylint: disable=g-import-not-at-top
  from saic_tf.common import layout  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(layout, "ZOO_ROOT", tiny_zoo)
  monkeypatch.setattr(zoo, "_FINGERPRINTS", {})
  return tiny_zoo


def small_photos(directory, count=2):
  """`count` of the sample's real photos as 80x64 PNGs kodimNN.png in `directory` (a stand-in
  for Kodak); returns the directory."""
  os.makedirs(directory)
  for index, name in enumerate(sorted(os.listdir(IMAGES))[:count]):
    image = Image.open(os.path.join(IMAGES, name)).convert("RGB").resize((80, 64))
    image.save(os.path.join(directory, f"kodim{index + 1:02d}.png"))
  return str(directory)


def pytest_addoption(parser):
  parser.addoption("--soak", type=int, default=1, help="Multiply the fault tests' workloads "
                   "(fuzzed files) by this factor: long soak runs, e.g. bin/test --soak=20.")
  parser.addoption("--fast", action="store_true", help="The quick loop while editing: leave "
                   "out the tests marked slow (end to end, each several seconds or more).")


# bin/test gives each worker whole modules (--dist=loadscope: a module fixture that trains is
# built once), in this order: the modules of the most test time first, so that the workers
# fill the end with short modules instead of one worker finishing a long one alone.
LONGEST_FIRST = ("test_trainer.py", "test_reproduce.py", "test_bench.py", "test_shipped_models.py",
                 "test_zoo.py", "test_evaluate.py", "test_cli.py", "test_robustness.py")


def _module_rank(item):
  name = os.path.basename(str(item.path))
  return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
  items.sort(key=_module_rank)  # stable: each module's own order stays
  if config.getoption("--fast"):
    slow = [item for item in items if item.get_closest_marker("slow")]
    config.hook.pytest_deselected(items=slow)
    items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def soak(request):
  return request.config.getoption("--soak")


@pytest.fixture(autouse=True)
def global_state_restored():
  """Puts back what a test may change globally: Keras' dtype policy (runs with
  --mixed_precision set it) and absl's log level (TensorFlow's SavedModel and TFLite code turn
  it down to WARNING, which would hide the INFO lines later tests look for)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  level = logging.get_absl_logger().level
  yield
  from tensorflow import keras  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy("float32")
  logging.get_absl_logger().setLevel(level)


@pytest.fixture
def awkward_folder(tmp_path):
  """An imagefolder of real CIFAR images saved as greyscale, RGBA, palette and odd sizes."""
  sources = sorted(os.listdir(os.path.join(SAMPLE_CIFAR, "train", "cat")))[:3]
  real = [Image.open(os.path.join(SAMPLE_CIFAR, "train", "cat", f)) for f in sources]
  variants = {
      "train/cat/grey.png": real[0].convert("L").resize((17, 23)),
      "train/cat/rgba.png": real[1].convert("RGBA").resize((40, 30)),
      "train/dog/palette.png": real[2].convert("P").resize((9, 64)),
      "train/dog/plain.jpg": real[0],
      "val/cat/tiny.png": real[1].resize((1, 1)),
      "val/dog/grey.jpg": real[2].convert("L"),
  }
  for name, image in variants.items():
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
  (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image, not listed")
  return str(tmp_path)


def write_stl10_binary(directory, split, images, labels):
  """Writes STL-10's original format: uint8 (N, 3, 96, 96) with each channel column-major."""
  os.makedirs(directory, exist_ok=True)
  column_major = np.asarray(images, np.uint8).transpose(0, 3, 2, 1)  # (N, C, W, H)
  column_major.tofile(os.path.join(directory, f"{split}_X.bin"))
  (np.asarray(labels, np.uint8) + 1).tofile(os.path.join(directory, f"{split}_y.bin"))
