"""Shipped codecs by name: the machinery, on a zoo of one tiny model packaged from the tdic_run
fixture (conftest's in_zoo; SAIC_ZOO_ROOT points the commands at it). The shipped models themselves are checked
in test_shipped_models.py."""
import dataclasses
import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from conftest import IMAGES, ROOT, ZOO_NAME as NAME
from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_json
from saic_tf.deploy import file_codec
from saic_tf.evaluation import club, evaluate
from saic_tf.experiments import model_zoo
from saic_tf.training import trainer
from test_cli import run_bin

def zoo_files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                for f in fs)


def test_a_packaged_run_is_a_shipped_codec_with_the_same_files(in_zoo, tdic_run):
  assert zoo.names() == [NAME]
  assert zoo_files(in_zoo) == [f"{NAME}/config.json", f"{NAME}/record.json",
                               f"{NAME}/tdic/checkpoint", f"{NAME}/tdic/ckpt-30.data-00000-of-00001",
                               f"{NAME}/tdic/ckpt-30.index", f"{NAME}/tdic/entropy_model.json"]
  record = zoo.record(NAME)
  assert record["steps"] == 30 and record["command"] == "bin/train --tiny"
  for name in (layout.CONFIG_FILE, zoo.RECORD_FILE):  # today's format (common/formats.py)
    with open(os.path.join(in_zoo, NAME, name)) as f:
      assert list(json.load(f).items())[0] == ("format_version", 2)
  by_name, by_run = file_codec.FileCodec(NAME), file_codec.FileCodec(tdic_run)
  assert by_name.fingerprint == by_run.fingerprint == bytes.fromhex(record["fingerprint"])
  assert zoo.by_fingerprint(by_run.fingerprint) == NAME
  assert zoo.by_fingerprint(b"\0\0\0\0") is None
  with pytest.raises(UserError, match="tdic-9: not a shipped model"):
    zoo.check_name("tdic-9")


@pytest.mark.slow
def test_compress_by_name_and_decompress_without_naming_the_model(in_zoo, tdic_run, tmp_path):
  """The issue's commands as they are: `bin/compress photo.jpg --model=tdic-0.25`, then
  `bin/decompress photo.saic` (no -o: each output beside its input, never over a file)."""
  env = dict(SAIC_ZOO_ROOT=in_zoo)
  image = os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])
  shutil.copyfile(image, tmp_path / "a.jpg")
  result = run_bin("compress", str(tmp_path / "a.jpg"), f"--model={NAME}", env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  result = run_bin("decompress", str(tmp_path / "a.saic"), env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  expected = file_codec.FileCodec(tdic_run).decompress((tmp_path / "a.saic").read_bytes())
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), expected)
  kept = (tmp_path / "a.saic").read_bytes()
  result = run_bin("compress", str(tmp_path / "a.jpg"), f"--model={NAME}", env=env)
  assert result.returncode == 1 and "a.saic exists: not overwritten without -o" in result.stderr
  assert (tmp_path / "a.saic").read_bytes() == kept
  # A file of a model that is not shipped needs --model: one line says so.
  other = bytearray((tmp_path / "a.saic").read_bytes())
  other[5:9] = b"\xff\xff\xff\xff"
  (tmp_path / "other.saic").write_bytes(bytes(other))
  result = run_bin("decompress", str(tmp_path / "other.saic"), "-o", str(tmp_path / "o.png"),
                   env=env)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "not shipped (fingerprint ffffffff): pass --model" in result.stderr


@pytest.mark.slow
def test_measure_writes_the_figures_and_bin_models_lists_them(in_zoo, tmp_path):
  # Two smooth "photos" stand in for Kodak.
  os.makedirs(tmp_path / "kodak")
  ramp = np.linspace(0, 255, 160, dtype=np.float32)
  for index in range(2):
    photo = np.stack([np.add.outer(ramp[:128], ramp) / 2, np.tile(ramp, (128, 1)),
                      np.full((128, 160), 60.0 + 100 * index)], -1)
    Image.fromarray(photo.astype(np.uint8)).save(tmp_path / "kodak" / f"kodim{index:02d}.png")
  settings = model_zoo.MeasureSettings(kodak_dir=str(tmp_path / "kodak"),
                                       imagenette_dir=str(tmp_path / "none"))
  figures = model_zoo.measure(NAME, settings, log=lambda line: None)
  assert figures["sample96"]["images"] == 100 and 0 < figures["sample96"]["bpp"] <= 0.25
  assert zoo.record(NAME)["figures"]["sample96"] == figures["sample96"]
  kodak = figures["kodak"]
  assert kodak["images"] == 2 and "psnr_per_image" not in kodak
  assert kodak["webp_psnr_at_bpp"] > 20 and "webp_over_budget" in kodak
  assert "WebP at those bits" in model_zoo.markdown([NAME])
  # WebP at a budget it fits: each file within its own image's bits, the largest such.
  photos = [np.asarray(Image.open(tmp_path / "kodak" / f"kodim{i:02d}.png")) for i in range(2)]
  webp = model_zoo.webp_at_bpp(photos, [0.5, 1.0])
  assert webp["over_budget"] == 0 and webp["bpp"] <= 0.75
  assert webp["psnr"] > model_zoo.webp_at_bpp(photos, [0.3, 0.3])["psnr"]
  # A budget below WebP's smallest file: its lowest quality, counted as over.
  assert model_zoo.webp_at_bpp(photos, [0.001, 0.001])["over_budget"] == 2
  result = run_bin("models", env=dict(SAIC_ZOO_ROOT=in_zoo))
  assert result.returncode == 0 and NAME in result.stdout, result.stderr[-2000:]
  assert model_zoo.toderici_psnr(0.25) == pytest.approx(25.7)
  assert model_zoo.toderici_psnr(0.375) == pytest.approx(27.0)
  assert model_zoo.toderici_psnr(0.0625) == pytest.approx(21.65)  # the nearest segment, extended
  # Measured again where Kodak is not: its recorded figures stay, and the log says so.
  lines = []
  model_zoo.measure(NAME, dataclasses.replace(settings, kodak_dir=str(tmp_path / "absent")),
                    log=lines.append)
  assert zoo.record(NAME)["figures"]["kodak"] == kodak
  assert zoo.record(NAME)["figures"]["kept_from_an_earlier_measure"] == ["kodak"]
  assert any("--kodak_dir" in line and "kept as recorded" in line for line in lines), lines


@pytest.mark.slow
def test_curve_scores_each_snapshot_against_the_cpu_time_spent(in_zoo, tmp_path):
  """bin/models --curve: a snapshot copied under another step (the same weights) scores as the
  shipped weights do, and the final point is the PSNR of real .saic files."""
  shipped = os.path.join(in_zoo, NAME, "tdic")
  for step in (10, 20):
    (tmp_path / "snapshots" / f"ckpt-{step}").mkdir(parents=True)
    for suffix in (".index", ".data-00000-of-00001"):
      shutil.copyfile(os.path.join(shipped, "ckpt-30" + suffix),
                      tmp_path / "snapshots" / f"ckpt-{step}" / f"ckpt-{step}{suffix}")
  snapshot = tmp_path / "snapshots" / "ckpt-10"
  # Written before training kept a history: its totals are those of its step.
  (tmp_path / "snapshots" / "ckpt-20" / "training_time.json").write_text(json.dumps(
      dict(cpu_seconds=72.0, wall_seconds=72.0, step=20)))
  imagenette = os.path.join(ROOT, "saic_tf", "sample_data", "imagenette")
  settings = model_zoo.MeasureSettings(imagenette_dir=imagenette)
  with pytest.raises(UserError, match="training_time.json"):  # copied without its time
    model_zoo.curve(NAME, str(tmp_path / "snapshots"), settings, log=lambda line: None)
  (snapshot / "training_time.json").write_text(json.dumps(
      dict(cpu_seconds=36.0, wall_seconds=36.0, step=10, history=[[10, 36.0, 36.0]])))
  points = model_zoo.curve(NAME, str(tmp_path / "snapshots"), settings, log=lambda line: None)
  assert [p["step"] for p in points] == [10, 20, 30]
  assert points[0]["cpu_hours"] == 0.01 and points[1]["cpu_hours"] == 0.02
  assert points[0]["psnr"] == points[1]["psnr"] == points[2]["psnr"]
  images = model_zoo.resized_split("imagefolder", "test", imagenette, 96)
  by_files = model_zoo.measure_images(file_codec.FileCodec(NAME), images)
  assert points[2]["psnr"] == pytest.approx(by_files["psnr"], abs=1e-3)
  assert zoo.record(NAME)["curve"] == dict(images=len(images), size=96, points=points)
  assert "| 10 | 0.01 | 0.01 |" in model_zoo.markdown()
  result = run_bin("models", f"--curve={NAME}", env=dict(SAIC_ZOO_ROOT=in_zoo))
  assert result.returncode == 2 and "--curve=NAME and --snapshots=DIR go together" in result.stderr


@pytest.mark.slow
def test_fine_tune_from_a_shipped_codec(in_zoo, tmp_path):
  """--init_from=NAME: the base's codec settings are taken, the run trains its own downstream
  network and fine-tunes the shipped TDIC; nothing is written into the zoo."""
  before = zoo_files(in_zoo)
  config = TrainConfig(model_dir=str(tmp_path / "run"), dataset="sample", image_size=32,
                       loss="apic", init_from=NAME, downstream_epochs=1, finetune_steps=2,
                       batch_size=8, learning_rate=1e-3, checkpoint_every=2, log_every=2,
                       image_every=2, seed=1)
  summary = trainer.train(config)
  assert summary["stage"] == "apic" and summary["step"] == 2
  saved = TrainConfig.read(str(tmp_path / "run"))
  assert (saved.bpp, saved.filters, saved.steps, saved.init_from) == (0.25, 8, 30, NAME)
  assert os.path.exists(tmp_path / "run" / "downstream" / "downstream.json")
  assert dict(layout.codec_stages(saved, str(tmp_path / "run")))["tdic"].startswith(in_zoo)
  file_codec.FileCodec(str(tmp_path / "run"))  # the fine-tuned stage decodes files
  # Another fine-tune of the shipped codec judged by that run's classifier: one classifier for
  # several rates (a run as --init_from brings its own, so both flags are refused then).
  shared = dataclasses.replace(config, model_dir=str(tmp_path / "run2"), loss="kd",
                               downstream_from=str(tmp_path / "run"))
  assert trainer.train(shared)["stage"] == "kd"
  assert not os.path.exists(tmp_path / "run2" / "downstream")
  with pytest.raises(UserError, match="already brings its downstream network"):
    trainer.train(dataclasses.replace(shared, model_dir=str(tmp_path / "run3"),
                                      init_from=str(tmp_path / "run")))
  # bin/evaluate of the shipped codec itself, with that run's classifier: out of the package.
  settings = evaluate.EvalSettings(baselines=(), max_images=8, club_train_images=16,
                                   club=club.ClubSettings(steps=5), batch_size=8,
                                   downstream_dir=str(tmp_path / "run"))
  with pytest.raises(UserError, match="is a shipped codec: pass --out_dir"):
    evaluate.evaluate(NAME, settings)
  record = evaluate.evaluate(NAME, dataclasses.replace(settings, out_dir=str(tmp_path / "ev")))
  assert set(record["rows"]) == {"original", "tdic"} and record["image_size"] == 32
  assert os.path.exists(tmp_path / "ev" / layout.EVAL_FILE)
  assert zoo_files(in_zoo) == before


@pytest.mark.slow
def test_export_a_shipped_codec_by_name(in_zoo, tmp_path):
  result = run_bin("export", f"--model={NAME}", f"--export_dir={tmp_path / 'out'}",
                   "--parity_images=1", env=dict(SAIC_ZOO_ROOT=in_zoo), timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert os.path.exists(tmp_path / "out" / NAME / "1" / "saved_model.pb")
  result = run_bin("export", f"--export_dir={tmp_path / 'out'}")
  assert result.returncode == 2 and "needs one of --model_dir" in result.stderr


def test_a_run_directory_of_the_same_name_wins_and_other_directories_do_not(in_zoo, tmp_path,
                                                                          monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.makedirs(NAME)  # an empty folder of that name (e.g. an output directory) is no run
  assert layout.run_dir(NAME) == layout.zoo_dir(NAME)
  with open(layout.config_path(NAME), "w") as f:
    f.write("{}")
  assert layout.run_dir(NAME) == NAME


def test_bad_names_and_conflicting_codec_flags_are_one_line(in_zoo, tdic_run, tmp_path):
  for bad in ("all", "../x", "Tdic", "x.tmp", ""):
    with pytest.raises(UserError, match="--name="):
      model_zoo.package(tdic_run, bad, "")
  config = TrainConfig(model_dir=str(tmp_path / "run"), dataset="sample", image_size=32,
                       loss="apic", init_from=NAME, bpp=0.5)
  with pytest.raises(UserError, match=r"--bpp=0.5 given, 0.25 there"):
    trainer.train(config)
  assert not os.path.exists(tmp_path / "run")


def test_selection_says_how_sure_it_is_and_how_spread_each_w_prime_is():
  from saic_tf.experiments import gsw_study  # pylint: disable=g-import-not-at-top
  record = dict(rate=0.125, seed=0, holdout_every=10,
                validation_accuracy={"label": {"1": 0.65, "4": 0.6},
                                     "magnitude": {"1": 0.68, "4": 0.7}},
                chosen_tau={"label": 1.0, "magnitude": 4.0})
  # Equal weights: W' is uniform whatever τ and scale; one large weight: τ = 400 on W / mean |W|
  # gives it everything.
  weights = {"label": [0.3] * 4, "magnitude": [1e-4, 1e-4, 1e-4, 5e-4]}
  markdown = gsw_study.selection_markdown(record, images=500, weights=weights)
  assert "`magnitude` at τ = 4" in markdown
  assert "At an end of the grid (`label`, `magnitude`)" in markdown
  # √(0.7 · 0.3 / 500) = 2.05 %; label is 5 points below.
  assert "standard error is √(p(1−p)/n) = 2.0 points at p = 70.0 %" in markdown
  assert "5.0 to 5.0 points below" in markdown
  assert "| label | 4 | 0.3 | 4.0 | 4.0 | 4.0 | 4.0 |" in markdown
  assert "| magnitude | 4 | 0.0002 |" in markdown and "| 1.0 | 4.0 |" in markdown
  assert "it leaves 1.0 to 4.0 effective channels" in markdown
  assert "standard error" not in gsw_study.selection_markdown(record)
  assert "KD's feature weight" not in markdown  # a selection made before KD's weight was chosen
  record.update(kd_validation_accuracy={"0": 0.6, "0.01": 0.65, "0.1": 0.65},
                chosen_kd_feature_weight=0.01)
  assert ("| w | 0 | 0.01 | 0.1 |\n|---|---|---|---|\n"
          "| validation accuracy (%) | 60.00 | **65.00** | 65.00 |") in (
              gsw_study.selection_markdown(record))


def test_the_trend_of_a_curve_extrapolates_to_its_bar():
  """PSNR = 20 + 0.5 log2(CPU h) from 1 CPU h on: +0.5 dB per doubling, 21.5 dB at 8 CPU h."""
  points = [dict(cpu_hours=h, psnr=(19.0 if h < 1 else 20 + 0.5 * np.log2(h)))
            for h in (0.25, 1.0, 2.0, 4.0)]
  slope, used, reach = model_zoo.trend(points, bar=21.5)
  assert slope == pytest.approx(0.5) and used == 3 and reach == pytest.approx(8.0)
  assert "21.5 dB bar at about 8 CPU h (2.0× this run)" in model_zoo.trend_line(points, 21.5)
  assert model_zoo.trend(points, bar=20.5)[2] is None  # already above it
  flat = [dict(p, psnr=20.0) for p in points]
  assert "does not rise" in model_zoo.trend_line(flat, 21.5)
  assert model_zoo.trend(points[::-1], bar=21.5)[0] == pytest.approx(0.5)  # order does not matter
  # A line already above the bar where the run's last point is below it: no extrapolation.
  dip = [dict(cpu_hours=h, psnr=y) for h, y in ((1, 21.0), (2, 22.0), (4, 23.0), (8, 21.4))]
  slope, _, reach = model_zoo.trend(dip, bar=21.5)
  assert slope > 0.01 and reach is None
  assert "is above it already" in model_zoo.trend_line(dip, 21.5)
  assert "Too few points" in model_zoo.trend_line(points[:2], 21.5)


def test_selecting_one_variant_again_keeps_the_order_ties_are_broken_by(tmp_path, monkeypatch):
  """bin/reproduce re-scores its one variant in a root bin/gsw_study selected several in: the
  variants keep their places in selection.json, so a tie still goes to the one selected first."""
  from saic_tf.experiments import executor, gsw_study  # pylint: disable=g-import-not-at-top
  config = TrainConfig(model_dir=str(tmp_path), holdout_every=10)
  rates = [(0.25, NAME)]
  write_json(str(tmp_path / gsw_study.SELECTION_FILE), dict(
      rate=0.25, seed=0, split="validation", holdout_every=10,
      validation_accuracy={"label": {"1": 0.6}, "magnitude": {"1": 0.6}},
      chosen_tau={"label": 1.0, "magnitude": 1.0}, kd_validation_accuracy={"0": 0.5},
      chosen_kd_feature_weight=0.0))
  monkeypatch.setattr(trainer, "train", lambda *_, **__: dict(  # not the chief: no timings
      chief=False, test_metrics=None))
  monkeypatch.setattr(executor, "evaluate_run", lambda spec, chief: None)
  monkeypatch.setattr(gsw_study, "_validation_accuracy", lambda run: 0.6)
  settings = gsw_study.StudySettings(bases=(NAME,), variants=("label",), select_taus=(1.0,),
                                     select_kd_weights=(0.1, 0.01))
  record = gsw_study.select(config, settings, rates, 0.25, evaluate.EvalSettings())
  assert list(record["validation_accuracy"]) == ["label", "magnitude"]
  assert gsw_study.best_variant(record) == ("label", 1.0)
  # KD's weights: this command's beside another's (0, lower), a tie going to the smaller weight.
  assert record["kd_validation_accuracy"] == {"0": 0.5, "0.1": 0.6, "0.01": 0.6}
  assert gsw_study.chosen_of(record) == ({"label": 1.0, "magnitude": 1.0}, 0.01)
  # A selection.json without KD's weight (formats.py): KL alone.
  old = str(tmp_path / "old" / gsw_study.SELECTION_FILE)
  write_json(old, dict(chosen_tau={"label": 1.0}))
  assert gsw_study.chosen_of(gsw_study.read_selection(old)) == ({"label": 1.0}, 0.0)
