"""Fault tests: damaged and hostile input, kills, non-finite losses, determinism."""
import os
import shutil
import signal
import subprocess
import time
import zlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow import keras

from conftest import IMAGES, ROOT
from saic_tf.codec import bitstream
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.data import images
from saic_tf.deploy import file_codec
from saic_tf.training import loop, trainer


# ------------------------------------------------------------------------------ .saic fuzzing

def _with_header(original, height, width, latent):
  """A file with other declared sizes around the original payload, and a valid CRC-32."""
  header = bitstream.parse(original, original[5:9], stride=8, channels=latent[2])
  fields = (original[:9] + b"".join(bitstream._varint(v) for v in (  # pylint: disable=protected-access
      height, width, *latent, len(header.payload))))
  return fields + zlib.crc32(fields + header.payload).to_bytes(4, "big") + header.payload


def test_fuzzed_saic_files_end_in_a_clear_error_or_the_right_image(tdic_run, soak):
  codec = file_codec.FileCodec(tdic_run, max_pixels=1 << 20)
  with Image.open(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])) as image:
    original_image = np.asarray(image.convert("RGB"))[:72, :88]
  original = codec.compress(original_image)
  expected = codec.decompress(original)
  rng = np.random.default_rng(0)
  latent = (9, 11, codec.channels)
  mutants = [original[:n] for n in rng.integers(0, len(original), 100 * soak)]
  for _ in range(150 * soak):
    flipped = bytearray(original)
    for position in rng.integers(0, len(original), rng.integers(1, 4)):
      flipped[position] ^= 1 << int(rng.integers(0, 8))
    mutants.append(bytes(flipped))
  mutants += [rng.bytes(int(n)) for n in rng.integers(0, 400, 40 * soak)]
  mutants += [original[:4] + rng.bytes(int(n)) for n in rng.integers(0, 400, 20 * soak)]
  # Declared sizes that are huge or disagree with the latent, with valid CRCs.
  mutants += [_with_header(original, h, w, latent) for h, w in
              [(30000, 30000), (32768, 1), (1 << 20, 8), (72, 88 * 3), (0, 88), (72, 0)]]
  mutants.append(_with_header(original, 8000, 8000, (1000, 1000, codec.channels)))
  assert len(mutants) >= 300
  outcomes = {"error": 0, "image": 0}
  for mutant in mutants:
    start = time.perf_counter()
    try:
      decoded = codec.decompress(mutant)
    except UserError as e:
      assert str(e) and "\n" not in str(e)
      outcomes["error"] += 1
    else:
      np.testing.assert_array_equal(decoded, expected)  # never a silently different image
      outcomes["image"] += 1
    assert time.perf_counter() - start < 5.0
  assert outcomes["error"] > 250 * soak, outcomes


# --------------------------------------------------------------------------------- image input

def test_bad_and_awkward_image_files(tmp_path):
  with Image.open(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])) as image:
    real = image.convert("RGB")
  real.save(tmp_path / "good.jpg")
  jpeg = (tmp_path / "good.jpg").read_bytes()
  (tmp_path / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 3])
  real.save(tmp_path / "good.png")
  png = (tmp_path / "good.png").read_bytes()
  (tmp_path / "truncated.png").write_bytes(png[:len(png) // 2])
  (tmp_path / "notes.png").write_text("not an image")
  sixteen = (np.asarray(real.convert("L"), np.uint16) * 257)
  Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
  real.convert("P").save(tmp_path / "palette.png")
  Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")  # a few kB, 400 megapixels
  for name in ("truncated.jpg", "truncated.png", "notes.png", "missing.png"):
    with pytest.raises(UserError, match="not a readable image"):
      images.read_image(str(tmp_path / name))
  with pytest.raises(UserError, match="--max_pixels"):
    images.read_image(str(tmp_path / "huge.png"), max_pixels=1 << 24)
  grey = images.read_image(str(tmp_path / "sixteen.png"))
  assert grey.dtype == np.uint8 and grey.shape == (224, 224, 3)
  np.testing.assert_allclose(grey[..., 0], np.asarray(real.convert("L")), atol=1)
  assert images.read_image(str(tmp_path / "palette.png")).shape == (224, 224, 3)


@pytest.mark.slow
def test_a_damaged_file_in_an_image_folder_is_named(tmp_path, awkward_folder):
  damaged = os.path.join(awkward_folder, "train", "cat", "damaged.jpg")
  with open(os.path.join(awkward_folder, "train", "dog", "plain.jpg"), "rb") as f:
    content = f.read()
  with open(damaged, "wb") as f:
    f.write(content[:len(content) // 3])
  with pytest.raises(UserError, match="damaged.jpg"):
    trainer.train(TrainConfig(model_dir=str(tmp_path / "run"), dataset="imagefolder",
                              data_dir=awkward_folder, image_size=16, bpp=0.5, filters=4,
                              batch_size=2, steps=10, checkpoint_every=10))


# -------------------------------------------------------------------------- training faults

def tiny(model_dir, **overrides):
  settings = dict(model_dir=str(model_dir), dataset="sample_cifar10", image_size=32, bpp=0.5,
                  filters=8, batch_size=8, learning_rate=1e-3, steps=12, checkpoint_every=3,
                  log_every=3, image_every=12, seed=21)
  settings.update(overrides)
  return TrainConfig(**settings)


def weights_at(model_dir, step):
  reader = tf.train.load_checkpoint(os.path.join(str(model_dir), "tdic", f"ckpt-{step}"))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n.startswith("codec/")}


@pytest.mark.slow
def test_two_runs_with_one_seed_are_bit_identical(tmp_path):
  first = trainer.train(tiny(tmp_path / "a", steps=4, checkpoint_every=4))
  second = trainer.train(tiny(tmp_path / "b", steps=4, checkpoint_every=4))
  assert first["test_metrics"] == second["test_metrics"]
  a, b = weights_at(tmp_path / "a", 4), weights_at(tmp_path / "b", 4)
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.slow
def test_kill_9_then_the_same_command_ends_where_a_straight_run_does(tmp_path):
  command = [os.path.join(ROOT, "bin", "train"), "--dataset=sample_cifar10", "--image_size=32",
             "--bpp=0.5", "--filters=8", "--batch_size=8", "--learning_rate=1e-3",
             "--steps=12", "--checkpoint_every=3", "--log_every=3", "--image_every=12",
             "--seed=21", "--noexport"]
  killed = subprocess.Popen(command + [f"--model_dir={tmp_path / 'killed'}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
  deadline = time.time() + 300
  # A checkpoint counts once the manager's state file names it (its files are written first).
  while not tf.train.latest_checkpoint(str(tmp_path / "killed" / "tdic")):
    assert killed.poll() is None and time.time() < deadline, "no first checkpoint"
    time.sleep(0.05)
  os.killpg(killed.pid, signal.SIGKILL)
  killed.wait()
  latest = tf.train.latest_checkpoint(str(tmp_path / "killed" / "tdic"))
  assert latest and int(latest.rsplit("-", 1)[1]) < 12  # it was killed mid-run
  for model_dir in ("killed", "straight"):
    result = subprocess.run(command + [f"--model_dir={tmp_path / model_dir}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("resuming from step" in result.stderr) == (model_dir == "killed")
  resumed, straight = weights_at(tmp_path / "killed", 12), weights_at(tmp_path / "straight", 12)
  for name in straight:
    np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)


def toy_training(tmp_path, total_steps, nan_from_batch=None):
  """A one-layer regression trained by loop.fit_resumably, batches of 4 from an epoch of 10;
  targets are NaN from batch `nan_from_batch` of the epoch on. Returns (model, checkpoint,
  make_dataset, monitor)."""
  model = keras.Sequential([keras.Input([2]), keras.layers.Dense(1)])
  model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
  model.optimizer.build(model.trainable_variables)
  x = np.ones([40, 2], np.float32)
  y = np.ones([40, 1], np.float32)
  if nan_from_batch is not None:
    y[4 * nan_from_batch:] = np.nan

  def make_dataset(start):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat().skip(start)

  monitor = loop.TrainingMonitor("toy", str(tmp_path / "logs"), total_steps, 4, 1)
  return model, tf.train.Checkpoint(model=model, optimizer=model.optimizer), make_dataset, monitor


def test_checkpoints_land_on_every_interval_and_whole_intervals_share_one_fit(tmp_path,
                                                                              monkeypatch):
  saved, fits = [], []
  save = tf.train.CheckpointManager.save
  monkeypatch.setattr(tf.train.CheckpointManager, "save", lambda self, checkpoint_number: (
      saved.append(checkpoint_number), save(self, checkpoint_number=checkpoint_number))[1])
  model, checkpoint, make_dataset, monitor = toy_training(tmp_path, 10)
  fit = model.fit
  monkeypatch.setattr(model, "fit", lambda *args, **kwargs: (
      fits.append((kwargs["steps_per_epoch"], kwargs["epochs"])), fit(*args, **kwargs))[1])
  assert loop.fit_resumably(model, checkpoint, str(tmp_path / "ckpt"), make_dataset, 10, 3,
                            monitor)
  assert saved == [3, 6, 9, 10] and fits == [(3, 3), (1, 1)]
  # Resumed with another --checkpoint_every: first to its next multiple, then to the end.
  saved.clear(), fits.clear()
  assert loop.fit_resumably(model, checkpoint, str(tmp_path / "ckpt"), make_dataset, 14, 4,
                            monitor)
  assert saved == [12, 14] and fits == [(2, 1), (2, 1)]
  assert int(model.optimizer.iterations.numpy()) == 14
  assert not loop.fit_resumably(model, checkpoint, str(tmp_path / "ckpt"), make_dataset, 14, 4,
                                monitor)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  # Batches 5 onwards carry a NaN target.
  model, checkpoint, make_dataset, monitor = toy_training(tmp_path, 8, nan_from_batch=5)
  with pytest.raises(UserError, match=r"toy: the loss is nan at step \d.*ckpt-4.*intact"):
    loop.fit_resumably(model, checkpoint, str(tmp_path / "ckpt"), make_dataset, 8, 2, monitor)
  assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-4")
  reader = tf.train.load_checkpoint(str(tmp_path / "ckpt"))
  assert all(np.all(np.isfinite(reader.get_tensor(n)))
             for n in reader.get_variable_to_shape_map() if "kernel" in n)


@pytest.mark.slow
def test_damaged_and_mismatched_checkpoints_are_refused_by_name(tmp_path):
  trainer.train(tiny(tmp_path / "run", steps=3, checkpoint_every=3))
  trainer.train(tiny(tmp_path / "other", steps=3, checkpoint_every=3, bpp=0.25))
  # A checkpoint of another rate, placed in this run: restoring it names the shapes.
  shutil.rmtree(tmp_path / "run" / "tdic")
  shutil.copytree(tmp_path / "other" / "tdic", tmp_path / "run" / "tdic")
  with pytest.raises(UserError, match=r"ckpt-3: cannot restore .*shape"):
    trainer.train(tiny(tmp_path / "run", steps=6, checkpoint_every=3))
  # A damaged checkpoint file.
  data_file = [f for f in os.listdir(tmp_path / "other" / "tdic") if ".data-" in f][0]
  with open(tmp_path / "other" / "tdic" / data_file, "r+b") as f:
    f.truncate(100)
  with pytest.raises(UserError, match="ckpt-3: cannot restore"):
    trainer.train(tiny(tmp_path / "other", steps=6, checkpoint_every=3, bpp=0.25))
  with pytest.raises(UserError, match="ckpt-3: cannot restore"):  # bin/compress, bin/export
    file_codec.FileCodec(str(tmp_path / "other"))


def test_non_finite_loss_can_skip_the_interval_instead(tmp_path, caplog):
  model, checkpoint, make_dataset, monitor = toy_training(tmp_path, 10, nan_from_batch=5)
  caplog.set_level("WARNING")
  loop.fit_resumably(model, checkpoint, str(tmp_path / "ckpt"), make_dataset, 10, 2, monitor,
                     on_nonfinite="skip")
  # Steps 6 to 10 train on NaN targets: the intervals (4, 6], (6, 8], (8, 10] are skipped.
  assert int(model.optimizer.iterations.numpy()) == 10
  assert "steps 5 to 6 skipped" in caplog.text and "steps 9 to 10 skipped" in caplog.text
  assert all(np.all(np.isfinite(w)) for w in model.get_weights())
