import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from saic_tf.codec import networks as codec
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.data import datasets
from saic_tf.semantic import backbones, gsw, losses
from saic_tf.training import schedules, trainer
from saic_tf.training.codec_trainer import CodecTrainer


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


@pytest.mark.slow
def test_tdic_loss_decreases_on_real_images():
  keras.utils.set_random_seed(0)
  model = CodecTrainer(codec.BinaryCodec(0.5, 8, 16), codec.pixel_mse)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  source = datasets.load("sample_cifar10", "train")
  fixed = next(iter(datasets.eval_dataset(source, 32, 32)))[0]
  before = float(tf.reduce_mean(codec.pixel_mse(fixed, model(fixed))))
  model.fit(datasets.train_dataset(source, 32, 16, seed=0), steps_per_epoch=100, epochs=1,
            verbose=0)
  after = float(tf.reduce_mean(codec.pixel_mse(fixed, model(fixed))))
  assert after < 0.75 * before, (before, after)


@pytest.mark.slow
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


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path):
  trainer.train(tiny_config(tmp_path / "split", steps=5))
  trainer.train(tiny_config(tmp_path / "split", steps=9))
  trainer.train(tiny_config(tmp_path / "straight", steps=9))
  resumed = codec_weights(tmp_path / "split", 9)
  straight = codec_weights(tmp_path / "straight", 9)
  assert len(resumed) == len(straight)
  for a, b in zip(resumed, straight):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_complete_stage_is_skipped(tmp_path, caplog):
  trainer.train(tiny_config(tmp_path, steps=2))
  before = codec_weights(tmp_path, 2)
  caplog.set_level("INFO")
  assert trainer.train(tiny_config(tmp_path, steps=2))["step"] == 2
  assert "complete at step 2" in caplog.text and "skipping" in caplog.text
  for a, b in zip(before, codec_weights(tmp_path, 2)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path):
  trainer.train(tiny_config(tmp_path, steps=1))
  with pytest.raises(UserError, match=r"--bpp=0.5 there, 0.25 now"):
    trainer.train(tiny_config(tmp_path, steps=1, bpp=0.25))


@pytest.mark.slow
def test_a_first_start_that_fails_on_its_data_leaves_no_config_behind(tmp_path):
  """A newcomer's first try (a data set that is not there) must not bind MODEL_DIR to it: the
  corrected command on the same MODEL_DIR then trains."""
  missing = str(tmp_path / "no_such_folder")
  with pytest.raises(UserError, match="no_such_folder"):
    trainer.train(tiny_config(tmp_path, dataset="imagefolder", data_dir=missing))
  assert not os.path.exists(layout.config_path(str(tmp_path)))
  trainer.train(tiny_config(tmp_path, steps=2))
  assert json.load(open(layout.config_path(str(tmp_path))))["dataset"] == "sample_cifar10"


@pytest.mark.parametrize("overrides,match", [
    (dict(loss="saic"), "needs --tau"), (dict(loss="tdic", tau=400.0), "saic only"),
    (dict(tau=-1.0), "must be > 0"), (dict(init_from="elsewhere"), "nothing to reuse"),
    (dict(crop_size=12), "multiple of --stride=8"), (dict(crop_size=64), "larger than"),
    (dict(crop_scale_min=0.5), "needs --crop_size"),
    (dict(crop_size=16, crop_scale_min=0.0), r"in \(0, 1\]"),
    (dict(lr_schedule="linear"), "--lr_schedule=linear"),
    (dict(holdout_every=1), "--holdout_every=1")])
def test_contradicting_flags_fail_before_anything_is_written(tmp_path, overrides, match):
  with pytest.raises(UserError, match=match):
    trainer.train(tiny_config(tmp_path, **overrides))
  assert not os.path.exists(tmp_path / "config.json")


@pytest.mark.slow
def test_downstream_network_is_bit_identical_after_fine_tuning():
  classifier = backbones.freeze(backbones.build_classifier("resnet18", 32, num_classes=10))
  features, _ = backbones.split(classifier, "stage4")
  before = [w.copy() for w in classifier.get_weights()]  # includes BatchNorm statistics
  model = CodecTrainer(codec.BinaryCodec(0.5, 8, 8),
                               losses.feature_distortion(features, np.ones(512)))
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  source = datasets.load("sample_cifar10", "train")
  codec_before = [w.copy() for w in model.codec.get_weights()]
  model.fit(datasets.train_dataset(source, 32, 4, seed=0), steps_per_epoch=2, verbose=0)
  for a, b in zip(before, classifier.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(codec_before, model.codec.get_weights()))


def semantic_config(model_dir, **overrides):
  settings = dict(dataset="sample", filters=8, downstream_epochs=1, steps=4,
                  finetune_steps=2, gsw_batches=1, checkpoint_every=2)
  settings.update(overrides)
  return tiny_config(model_dir, **settings)


@pytest.fixture(scope="module")
def apic_run(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("apic")
  summary = trainer.train(semantic_config(model_dir, loss="apic"))
  return model_dir, summary


@pytest.mark.slow
def test_apic_pipeline_writes_every_artifact(apic_run):
  model_dir, summary = apic_run
  assert summary["stage"] == "apic" and summary["step"] == 2
  info = json.load(open(model_dir / "downstream" / "downstream.json"))
  assert info["feature_layer"] == "stage4" and 0.0 <= info["test_accuracy"] <= 1.0
  assert info["class_names"][0] == "n01440764"
  for path in ("config.json", "tdic/ckpt-4.index", "apic/ckpt-2.index", "logs/downstream",
               "logs/tdic", "logs/apic"):
    assert os.path.exists(model_dir / path), path
  assert not os.path.exists(model_dir / "gsw.json")  # APIC uses uniform weights
  listed = [what for what, _ in layout.outputs(str(model_dir))]
  assert listed == ["run configuration", "downstream network", "TDIC checkpoints",
                    "APIC checkpoints", "TensorBoard logs"]
  # Each codec stage ends with its entropy model: TDIC's before the fine-tune started.
  entropy = {stage: json.load(open(model_dir / stage / layout.ENTROPY_MODEL_FILE))
             for stage in ("tdic", "apic")}
  assert entropy["tdic"]["checkpoint"] == "ckpt-4" and entropy["apic"]["checkpoint"] == "ckpt-2"
  assert (os.path.getmtime(model_dir / "tdic" / layout.ENTROPY_MODEL_FILE) <=
          min(os.path.getmtime(p) for p in glob.glob(str(model_dir / "apic" / "ckpt-*"))))


@pytest.mark.slow
def test_a_stage_trained_further_gets_its_entropy_model_fitted_again(tmp_path):
  trainer.train(tiny_config(tmp_path, steps=4, checkpoint_every=4))
  path = tmp_path / "tdic" / layout.ENTROPY_MODEL_FILE
  assert json.load(open(path))["checkpoint"] == "ckpt-4"
  trainer.train(tiny_config(tmp_path, steps=6, checkpoint_every=4))
  assert json.load(open(path))["checkpoint"] == "ckpt-6"


@pytest.mark.slow
def test_kd_reference_fine_tunes_on_the_output_kl_without_gsw(apic_run, tmp_path):
  base, _ = apic_run
  # Another seed than the base's: it seeds this fine-tune only (bin/sweep_tau --seeds).
  config = semantic_config(tmp_path, loss="kd", init_from=str(base), kd_feature_weight=0.1,
                           seed=7)
  assert TrainConfig.read(str(base)).seed != 7
  summary = trainer.train(config)
  assert summary["stage"] == "kd" and summary["step"] == 2
  assert os.path.exists(tmp_path / "kd" / "ckpt-2.index")
  assert not os.path.exists(tmp_path / "gsw.json")
  assert [name for name, _ in layout.codec_stages(config, str(tmp_path))] == ["tdic", "kd"]
  with pytest.raises(UserError, match="--kd_feature_weight=0.1: a weight >= 0 of --loss=kd"):
    semantic_config(tmp_path, loss="apic", kd_feature_weight=0.1).validate()


@pytest.mark.slow
def test_saic_from_a_shared_base_then_restart_skips_everything(apic_run, tmp_path, caplog,
                                                                 monkeypatch):
  base, _ = apic_run
  config = semantic_config(tmp_path, tau=2.0, init_from=str(base), gsw="fisher",
                           gsw_scale="mean_abs")
  caplog.set_level("INFO")
  assert trainer.train(config)["stage"] == "saic"
  assert "effective (τ=2, r=512)" in caplog.text
  assert not os.path.exists(tmp_path / "tdic") and not os.path.exists(tmp_path / "downstream")
  record = json.load(open(tmp_path / "gsw.json"))
  assert record["tau"] == 2.0 and record["r"] == 512.0 and len(record["W_prime"]) == 512
  assert record["gsw"] == "fisher" and record["gsw_scale"] == "mean_abs"
  assert record["class_mean_cancels"] is False and record["image_spread"] > 0
  assert sum(record["W_prime"]) == pytest.approx(512.0)
  assert 1 < record["effective_channels"] < 512
  assert record["effective_channels"] == pytest.approx(gsw.effective_channels(record["W_prime"]))
  tags = set()
  for event_file in glob.glob(str(tmp_path / "logs" / "gsw" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(event_file):
      tags.update(value.tag for value in event.summary.value)
  assert {"W", "W_prime"} <= tags
  caplog.clear()
  trainer.train(config)
  for line in ("downstream: complete", "gsw: reusing", "saic: complete at step 2"):
    assert line in caplog.text
  assert "saic step" not in caplog.text
  # The experiment commands pass over a finished run without loading data or scoring it again.
  caplog.clear()
  def no_data(*args, **kwargs):
    raise AssertionError("a complete run loaded data")
  monkeypatch.setattr(trainer.datasets, "load", no_data)
  summary = trainer.train(config, skip_complete=True)
  assert (summary["stage"], summary["step"], summary["test_metrics"]) == ("saic", 2, None)
  assert "is complete (step 2): nothing to train" in caplog.text


def test_init_from_a_different_base_is_refused(apic_run, tmp_path):
  base, _ = apic_run
  with pytest.raises(UserError, match="--bpp=0.5 there, 0.25 now"):
    trainer.train(semantic_config(tmp_path, tau=400.0, init_from=str(base), bpp=0.25))


@pytest.mark.slow
def test_paper_gsw_at_an_earlier_layer_of_a_shared_classifier_depends_on_the_images(
    apic_run, tmp_path, caplog):
  """The classifier of another run split at stage3: the head is non-linear there, so Eq. 2-3 on
  logits vary across images (at stage4, GAP + dense, they would not)."""
  base, _ = apic_run
  caplog.set_level("INFO")
  trainer.train(semantic_config(tmp_path, tau=1.0, gsw="paper", feature_layer="stage3",
                                downstream_from=str(base), gsw_batches=2))
  record = json.load(open(tmp_path / "gsw.json"))
  assert record["feature_layer"] == "stage3" and len(record["W"]) == 256
  assert record["image_spread"] > gsw.IMAGE_INDEPENDENT
  assert "the same for every image" not in caplog.text


@pytest.mark.slow
def test_downstream_from_reuses_only_the_downstream_network(apic_run, tmp_path, caplog):
  base, _ = apic_run
  caplog.set_level("INFO")
  summary = trainer.train(semantic_config(tmp_path, loss="apic", bpp=0.25,
                                          downstream_from=str(base)))
  assert summary["stage"] == "apic" and "downstream: complete" in caplog.text
  assert not os.path.exists(tmp_path / "downstream")  # not trained again
  assert os.path.exists(tmp_path / "tdic") and os.path.exists(tmp_path / "apic")
  with pytest.raises(UserError, match="--image_size=32 there, 40 now"):
    trainer.train(semantic_config(tmp_path / "other", loss="apic", image_size=40,
                                  downstream_from=str(base)))


@pytest.mark.parametrize("overrides", [
    dict(mixed_precision="mixed_bfloat16", loss="apic"), dict(mixed_precision="mixed_float16"),
    dict(jit=True), dict(steps_per_execution=3)], ids=lambda o: "-".join(map(str, o.values())))
@pytest.mark.slow
def test_speed_features_train_to_the_exact_step_with_finite_losses(tmp_path, overrides, request):
  """checkpoint_every=4 with steps_per_execution=3 still checkpoints at 4 and ends at 6. The
  semantic one fine-tunes for apic_run's classifier (its own training is apic_run's test)."""
  config = semantic_config(tmp_path, downstream_from=str(request.getfixturevalue("apic_run")[0]),
                           **overrides) if "loss" in overrides else tiny_config(tmp_path,
                                                                               **overrides)
  summary = trainer.train(config)
  assert summary["step"] == (config.finetune_steps if config.semantic else 6)
  assert np.isfinite(summary["test_metrics"]["loss"]), summary
  checkpoints = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "tdic" / "*.index")))
  assert checkpoints == [f"ckpt-{config.steps - 2}.index", f"ckpt-{config.steps}.index"]
  restored = codec.BinaryCodec(0.5, 8, config.filters)  # float32 weights, whatever the policy
  tf.train.Checkpoint(codec=restored).restore(os.path.join(
      tmp_path, "tdic", f"ckpt-{config.steps}")).assert_existing_objects_matched().expect_partial()
  assert all(w.dtype == np.float32 for w in restored.get_weights())


@pytest.mark.parametrize("decay, expected", [
    ("constant", [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("step", [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.1]),
    ("cosine", [0.25, 0.5, 0.75, 1.0] + [schedules.ALPHA + (1 - schedules.ALPHA) * 0.5 *
                                         (1 + np.cos(np.pi * t / 3)) for t in range(4)])])
def test_learning_rate_warms_up_then_decays(decay, expected):
  schedule = schedules.WarmupThenDecay(1.0, total_steps=8, warmup_steps=4, decay=decay)
  np.testing.assert_allclose([float(schedule(step)) for step in range(8)], expected, rtol=1e-6)
  assert float(schedules.WarmupThenDecay(2.0, 8, 0, "cosine")(7)) == pytest.approx(
      2.0 * schedules.ALPHA)  # the last step trained


@pytest.mark.slow
def test_recipe_flags_train_on_crops_with_a_schedule(tmp_path, caplog, monkeypatch):
  """--crop_size, --crop_scale_min, --lr_schedule and --warmup_steps reach TDIC's batches and
  optimizer; the fine-tune trains on whole images."""
  caplog.set_level("INFO")
  crops, rates = [], []
  train_dataset, for_stage = datasets.train_dataset, schedules.for_stage
  monkeypatch.setattr(datasets, "train_dataset", lambda *a, **k: (
      crops.append((k.get("crop_size"), k.get("crop_scale_min"))), train_dataset(*a, **k))[1])
  monkeypatch.setattr(schedules, "for_stage", lambda *a: (
      rates.append(for_stage(*a)), rates[-1])[1])
  config = tiny_config(tmp_path, crop_size=16, crop_scale_min=0.5, lr_schedule="cosine",
                       warmup_steps=2, steps=6, log_every=1)
  summary = trainer.train(config)
  assert summary["step"] == 6 and np.isfinite(summary["test_metrics"]["psnr"])
  assert "random 16x16 crops at scales 0.5..1" in caplog.text
  assert "lr 0.001 (cosine, 2 warm-up steps)" in caplog.text
  assert tf.train.latest_checkpoint(str(tmp_path / "tdic")).endswith("ckpt-6")
  assert crops and set(crops) == {(16, 0.5)}
  [schedule] = rates
  assert schedule.get_config() == dict(peak=1e-3, total_steps=6, warmup_steps=2,
                                       decay="cosine")
  # A fine-tune from it: whole images (crop 0) and its own schedule over its steps.
  crops.clear(), rates.clear()
  trainer.train(semantic_config(tmp_path / "apic", loss="apic", crop_size=16,
                                lr_schedule="cosine", warmup_steps=1))
  # The classifier's stream (None: no crop argument), TDIC on crops, APIC on whole images.
  assert [c for c, _ in crops if c is not None] == sorted(
      [c for c, _ in crops if c is not None], reverse=True)
  assert {c for c, _ in crops} == {None, 16, 0}
  assert [r.total_steps for r in rates] == [4, 2]
