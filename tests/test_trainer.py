import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from saic_tf import codec, data, losses, trainer
from saic_tf.config import TrainConfig
from saic_tf.errors import UserError


def tiny_config(model_dir, **overrides):
  settings = dict(model_dir=str(model_dir), dataset="sample_cifar10", image_size=32,
                  bpp=0.5, filters=16, batch_size=8, learning_rate=1e-3, steps=6,
                  checkpoint_every=4, log_every=2, image_every=4, seed=11)
  settings.update(overrides)
  return TrainConfig(**settings)


def codec_weights(model_dir, step):
  restored = codec.BinaryCodec(0.5, 8, 16)
  tf.train.Checkpoint(codec=restored).restore(
      os.path.join(model_dir, "tdic", f"ckpt-{step}")).expect_partial()
  return restored.get_weights()


def test_tdic_loss_decreases_on_real_images():
  keras.utils.set_random_seed(0)
  model = trainer.CodecTrainer(codec.BinaryCodec(0.5, 8, 16), losses.pixel_mse)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  source = data.load("sample_cifar10", "train")
  fixed = next(iter(data.eval_dataset(source, 32, 32)))[0]
  before = float(tf.reduce_mean(losses.pixel_mse(fixed, model(fixed))))
  model.fit(data.train_dataset(source, 32, 16, seed=0), steps_per_epoch=100, epochs=1,
            verbose=0)
  after = float(tf.reduce_mean(losses.pixel_mse(fixed, model(fixed))))
  assert after < 0.75 * before, (before, after)


def test_train_writes_config_checkpoints_and_tensorboard(tmp_path):
  summary = trainer.train(tiny_config(tmp_path))
  assert summary["step"] == 6
  assert json.load(open(tmp_path / "config.json"))["bpp"] == 0.5
  assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "tdic" / "*.index"))) == [
      "ckpt-4.index", "ckpt-6.index"]
  tags = set()
  for event_file in glob.glob(str(tmp_path / "logs" / "tdic" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(event_file):
      tags.update(value.tag for value in event.summary.value)
  assert {"loss", "psnr", "mse", "bpp", "learning_rate", "images_per_second"} <= tags
  assert any(tag.startswith("original | reconstruction") for tag in tags)
  assert summary["test_metrics"]["bpp"] == pytest.approx(0.5)
  assert 5.0 < summary["test_metrics"]["psnr"] < 60.0


def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path):
  trainer.train(tiny_config(tmp_path / "split", steps=5))
  trainer.train(tiny_config(tmp_path / "split", steps=9))
  trainer.train(tiny_config(tmp_path / "straight", steps=9))
  resumed = codec_weights(tmp_path / "split", 9)
  straight = codec_weights(tmp_path / "straight", 9)
  assert len(resumed) == len(straight)
  for a, b in zip(resumed, straight):
    np.testing.assert_array_equal(a, b)


def test_a_complete_stage_is_skipped(tmp_path, caplog):
  trainer.train(tiny_config(tmp_path, steps=2))
  before = codec_weights(tmp_path, 2)
  caplog.set_level("INFO")
  assert trainer.train(tiny_config(tmp_path, steps=2))["step"] == 2
  assert "complete at step 2" in caplog.text and "skipping" in caplog.text
  for a, b in zip(before, codec_weights(tmp_path, 2)):
    np.testing.assert_array_equal(a, b)


def test_resume_with_other_settings_is_refused(tmp_path):
  trainer.train(tiny_config(tmp_path, steps=1))
  with pytest.raises(UserError, match=r"--bpp=0.5 there, 0.25 now"):
    trainer.train(tiny_config(tmp_path, steps=1, bpp=0.25))


@pytest.mark.parametrize("overrides", [dict(loss="saic"), dict(loss="apic"), dict(tau=400.0),
                                       dict(init_from="elsewhere")])
def test_semantic_flags_fail_clearly_until_implemented(tmp_path, overrides):
  with pytest.raises(UserError, match="not implemented yet"):
    trainer.train(tiny_config(tmp_path, **overrides))
  assert not os.path.exists(tmp_path / "config.json")
