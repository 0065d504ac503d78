"""bin/evaluate, bin/report and bin/sweep_tau on a tiny trained model: complete outputs."""
import csv
import dataclasses
import json
import logging
import math
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.evaluation import club, evaluate, report, statistics, tables
from saic_tf.experiments import executor, sweep
from saic_tf.training import loop
from test_cli import run_bin

COLUMNS = ("accuracy", "f1", "psnr", "ssim", "mse", "feature_mse", "bpp", "si")


def tiny(model_dir, **overrides):
  settings = dict(model_dir=str(model_dir), dataset="sample_cifar10", image_size=32, bpp=0.5,
                  filters=8, batch_size=8, learning_rate=1e-3, steps=4, finetune_steps=2,
                  downstream_epochs=1, gsw_batches=1, gsw="paper", gsw_scale="raw", tau=400.0,
                  checkpoint_every=2, log_every=2, image_every=2, seed=3)
  settings.update(overrides)
  return TrainConfig(**settings)


SWEEP_SETTINGS = evaluate.EvalSettings(max_images=8, club_train_images=16,
                                      club=club.ClubSettings(steps=20), baselines=("webp",))


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory):
  """A τ sweep at τ = 400 (bin/sweep_tau): its base ROOT/apic (classifier, TDIC, APIC) and
  ROOT/saic_tau_400; (ROOT, the report's files)."""
  root = tmp_path_factory.mktemp("sweep")
  return root, sweep.run(tiny(root, tau=None), [400.0], SWEEP_SETTINGS)


@pytest.fixture(scope="module")
def saic_run(sweep_root):
  """The sweep's SAIC run (τ = 400 from its shared base): the tests after the sweep's own
  evaluate it again with other settings."""
  return sweep_root[0] / "saic_tau_400"


@pytest.mark.slow
def test_sweep_trains_one_base_and_a_run_per_tau(sweep_root):
  root, files = sweep_root
  assert sorted(os.listdir(root)) == ["apic", "report", "saic_tau_400"]
  assert not os.path.exists(root / "saic_tau_400" / "tdic")  # shared from apic/
  assert all(os.path.exists(f) for f in files)
  rows = [r["method"] for r in csv.DictReader(open(root / "report" / "results.csv"))]
  assert rows == ["original", "tdic", "apic", "saic", "webp"]
  # The same command again trains and evaluates nothing (bin/reproduce and bin/gsw_study resume
  # through the same executor.execute).
  evals = [root / run / layout.EVAL_FILE for run in ("apic", "saic_tau_400")]
  before = [os.stat(p).st_mtime_ns for p in evals]
  sweep.run(tiny(root, tau=None), [400.0], SWEEP_SETTINGS)
  assert [os.stat(p).st_mtime_ns for p in evals] == before
  with pytest.raises(UserError, match="--taus"):
    sweep.run(tiny(root, tau=None), [0.0], SWEEP_SETTINGS)


@pytest.mark.slow
def test_bin_evaluate_then_bin_report_write_everything(saic_run, tmp_path, caplog):
  result = run_bin("evaluate", f"--model_dir={saic_run}", "--max_images=24",
                   "--club_train_images=40", "--club_steps=50")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "evaluate: test split: 24/24 images (100 %)" in result.stderr  # progress, on the log
  record = json.load(open(saic_run / "eval.json"))
  assert list(record["rows"]) == ["original", "tdic", "saic", "jpeg", "webp", "avif"]
  assert record["num_images"] == 24 and record["nominal_bpp"] == 0.5
  assert record["si"]["units"] == "nats" and record["si"]["steps"] == 50
  for method, row in record["rows"].items():
    for column in COLUMNS:
      if method == "original" and column not in ("accuracy", "f1", "si"):
        assert row[column] is None
      else:
        assert math.isfinite(row[column]), (method, column)
  assert record["rows"]["tdic"]["bpp"] == 0.5
  assert 0 < record["rows"]["saic"]["coded_bpp"] and record["rows"]["jpeg"]["coded_bpp"] is None
  jpeg = record["rows"]["jpeg"]
  assert jpeg["images_over_target"] == 24 and jpeg["bpp"] > 0.5  # 32x32 JPEG: header > 64 B
  # An experiment re-evaluates a run evaluated with other settings (here bin/evaluate's
  # defaults differ from these), and passes over one evaluated with the same.
  used = evaluate.EvalSettings(max_images=24, club_train_images=40,
                               club=club.ClubSettings(steps=50))
  assert record["evaluation"] == evaluate.settings_record(used)
  assert all(executor.is_evaluated(str(saic_run), settings=s) for s in (used, None))
  assert not executor.is_evaluated(str(saic_run), settings=evaluate.EvalSettings(max_images=24))
  markdown = (saic_run / "eval.md").read_text()
  for name in ("Original", "TDIC", "SAIC-paper (τ=400)", "JPEG", "WebP", "AVIF",
               "target not reached"):
    assert name in markdown
  correct = {m: statistics.decode(text) for m, text in record["correct"].items()}
  assert set(correct) == set(record["rows"]) and record["images_digest"].endswith("-24")
  for method, row in record["rows"].items():  # the per-image record is the accuracy's
    assert correct[method].mean() == pytest.approx(row["accuracy"])
  (paired,) = record["paired"]
  assert (paired["a"], paired["b"], paired["images"]) == ("saic", "tdic", 24)
  assert paired["difference"] == pytest.approx(record["rows"]["saic"]["accuracy"] -
                                               record["rows"]["tdic"]["accuracy"])
  assert "| SAIC-paper (τ=400) − TDIC |" in markdown
  gallery = np.load(saic_run / "eval_gallery.npz")
  assert gallery["images_saic"].shape == (8, 32, 32, 3) and len(gallery["labels"]) == 8

  out = tmp_path / "report"
  result = run_bin("report", str(saic_run), f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ("results.md", "results.csv", "results.json") + report.FIGURES:
    assert str(out / name) in result.stdout
  [block] = json.load(open(out / "results.json"))["blocks"]
  assert [r["label"] for r in block["rows"]][:3] == ["Original", "TDIC", "SAIC-paper (τ=400)"]
  assert block["rows"][2]["accuracy"] == record["rows"]["saic"]["accuracy"]
  assert "correct" not in block["rows"][2]
  for name in report.FIGURES:
    with Image.open(out / name) as image:
      assert image.size[0] > 200 and image.size[1] > 200
  rows = list(csv.DictReader(open(out / "results.csv")))
  assert [r["method"] for r in rows] == ["original", "tdic", "saic", "jpeg", "webp", "avif"]
  assert "## 0.5 bpp (nominal)" in (out / "results.md").read_text()

  # The same evaluation in this process, whatever TensorFlow's global seed was, gives the same
  # SI (the CLUB training subset and fit are seeded from the run's seed). Its passes log
  # progress lines with an ETA (with each method's seconds so far), and a last one.
  tf.random.set_seed(1234)
  caplog.set_level(logging.INFO, logger="absl")
  again = evaluate.evaluate(saic_run, evaluate.EvalSettings(
      max_images=24, club_train_images=40, club=club.ClubSettings(steps=50), baselines=()))
  for method in ("original", "tdic", "saic"):
    assert again["rows"][method]["si"] == pytest.approx(record["rows"][method]["si"], rel=1e-3)
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluate: ")]
  (test_pass,) = [line for line in lines if line.startswith("evaluate: test split: ")]
  assert test_pass.startswith("evaluate: test split: 24/24 images (100 %)")  # one batch
  assert "done in 0:" in test_pass and "tdic " in test_pass and "saic " in test_pass
  club_pass = [line for line in lines if line.startswith("evaluate: CLUB's training pairs: ")]
  assert club_pass[0].startswith("evaluate: CLUB's training pairs: 32/40 images (80 %)")
  assert "ETA 0:" in club_pass[0] and "40/40 images (100 %)" in club_pass[-1]
  fits = [line for line in lines if line.startswith("evaluate: SI (CLUB fits): ")]
  assert fits[0].startswith("evaluate: SI (CLUB fits): 1/3 methods (33 %)")
  assert "ETA 0:" in fits[0] and "3/3 methods (100 %)" in fits[-1]


def test_progress_lines_come_every_tenth_not_every_image():
  lines = []
  progress = loop.Progress("pass", 1000, log=lines.append)
  for _ in range(1000):
    progress.update()
  assert len(lines) == 10 and lines[0].startswith("pass: 100/1000 images (10 %)")
  assert all("ETA" in line for line in lines[:-1]) and "done in" in lines[-1]


def test_report_pairs_each_fine_tune_with_apic_on_the_same_images():
  def record(model_dir, method, tau, correct, labels=(0, 1, 2, 3, 4, 5)):
    rows = {m: dict(accuracy=0.5, f1=0.5, psnr=None, ssim=None, mse=None, bpp=0.25, si=1.0)
            for m in ("original", "tdic", method)}
    return dict(model_dir=model_dir, tau=tau, nominal_bpp=0.25, dataset="d", num_images=6,
                stages={"tdic": "base", method: model_dir}, rows=rows,
                images_digest=statistics.images_digest(labels),
                correct={"original": "111111", "tdic": "100000", method: correct})
  blocks = report.gather([record("apic", "apic", None, "110000"),
                          record("saic", "saic", 2.0, "111110"),
                          record("other", "saic", 3.0, "111111", labels=(5, 4, 3, 2, 1, 0))])
  ((name_a, name_b, comparison),) = report.paired_against_apic(blocks[0.25])
  assert (name_a, name_b) == ("SAIC (τ=2)", "APIC")  # the τ=3 run saw other images
  assert comparison["difference"] == pytest.approx(0.5)
  assert comparison["mcnemar_p"] == pytest.approx(0.25)  # 3 discordant, all for SAIC: 2·(½)³


def test_paired_statistics_have_their_closed_forms():
  a = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
  b = np.array([0, 0, 0, 0, 0, 0, 0, 0], bool)
  assert statistics.mcnemar_exact_p(a, b) == pytest.approx(2 / 2**5)
  assert statistics.mcnemar_exact_p(a, a) == 1.0
  assert statistics.mcnemar_exact_p([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]) == 1.0
  difference, low, high = statistics.bootstrap_difference(a, b)
  assert difference == pytest.approx(5 / 8) and low < difference < high <= 1.0
  assert statistics.bootstrap_difference(a, a) == (0.0, 0.0, 0.0)
  assert statistics.decode(statistics.encode(a)).tolist() == a.tolist()
  assert statistics.images_digest([0, 1]) != statistics.images_digest([1, 0])


def test_the_paired_interval_covers_the_seeds_not_only_the_images():
  # Seed 0: a beats b on every image; seed 1: b beats a on every image. Averaged per image the
  # difference is 0 everywhere, so an images-only bootstrap would give [0, 0]; the seeds disagree
  # completely, and resampling them gives the whole range.
  a = np.array([[1] * 20, [0] * 20], bool)
  b = ~a
  difference, low, high = statistics.bootstrap_difference(a, b)
  assert difference == 0.0 and low == pytest.approx(-1.0) and high == pytest.approx(1.0)
  # Agreeing seeds: the interval is the images' alone.
  same = np.array([[1] * 10 + [0] * 10] * 3, bool)
  assert statistics.bootstrap_difference(same, np.zeros_like(same))[1:] == pytest.approx(
      statistics.bootstrap_difference(same[0], np.zeros(20, bool))[1:], abs=0.06)


def test_report_of_an_unevaluated_run_is_one_line(tmp_path):
  with pytest.raises(UserError, match="run bin/evaluate"):
    report.build([str(tmp_path)], str(tmp_path / "out"))


def test_report_does_not_repeat_rows_that_runs_share():
  def record(model_dir, tau, stages):
    rows = {m: dict(accuracy=0.5, f1=0.5, psnr=None, ssim=None, mse=None, bpp=0.25, si=1.0)
            for m in ("original", "tdic", "saic", "jpeg")}
    return dict(model_dir=model_dir, tau=tau, nominal_bpp=0.25, dataset="d", num_images=5,
                stages=stages, rows=rows)
  blocks = report.gather([record("a", 10.0, {"tdic": "base/tdic/ckpt-4", "saic": "a/ckpt-2"}),
                          record("b", 400.0, {"tdic": "base/tdic/ckpt-4", "saic": "b/ckpt-2"})])
  methods = [(m, r["tau"]) for m, r in blocks[0.25]]
  assert methods == [("original", None), ("tdic", None), ("saic", 10.0), ("saic", 400.0),
                     ("jpeg", None)]


def test_the_gallery_is_one_rate_with_a_column_per_table_row(tmp_path):
  """Fig. 3: the lowest rate only; each SAIC variant and τ its own column, titled as in the
  tables; a row two runs share (the first seed's and another's) drawn once, from the first."""
  def run(name, bpp, methods, tau=None, gsw=None, seed=0):
    model_dir = tmp_path / name
    model_dir.mkdir()
    np.savez(layout.eval_path(str(model_dir), layout.GALLERY_FILE), labels=np.zeros(2, int),
             class_names=np.array(["a", "b"]), methods=np.array(methods),
             **{f"images_{m}": np.full((2, 4, 4, 3), seed, np.uint8) for m in methods},
             **{f"predictions_{m}": np.zeros(2, int) for m in methods})
    rows = {m: dict(bpp=bpp, coded_bpp=None if m in ("webp", "avif") else bpp / 2)
            for m in methods}
    return dict(model_dir=str(model_dir), nominal_bpp=bpp, tau=tau, gsw=gsw, seed=seed,
                rows=rows)
  records = [run("apic", 0.25, ["original", "tdic", "apic", "webp", "avif"], seed=5),
             dict(run("baselines_0.0625", 0.0625, ["original", "webp"]), baselines_at=0.0625),
             run("apic_low", 0.125, ["original", "tdic", "apic", "webp"]),
             run("saic_paper", 0.125, ["saic"], tau=0.5, gsw="paper"),
             run("saic_magnitude", 0.125, ["saic"], tau=8.0, gsw="magnitude"),
             run("apic_seed1", 0.125, ["apic"], seed=1),
             run("kd", 0.125, ["kd"])]
  rate, columns = report.gallery_columns(records)
  assert rate == 0.125
  assert [c[0] for c in columns] == ["Original", "TDIC", "APIC", "SAIC-paper (τ=0.5)",
                                     "SAIC-magnitude (τ=8)", "KD", "WebP"]
  assert columns[2][1].max() == 0  # APIC from the first seed's run at 0.125 bpp
  # Each column's real bpp (the .saic files' for a learned codec), none for the originals.
  assert [c[-1] for c in columns] == [None, 0.0625, 0.0625, 0.0625, 0.0625, 0.0625, 0.125]
  report._gallery(records, str(tmp_path / "gallery.png"))
  assert os.path.getsize(tmp_path / "gallery.png") > 0


def test_seeds_repeat_every_fine_tune_from_the_same_base(tmp_path):
  runs = sweep.plan(tiny(tmp_path, tau=None), [50.0, 400.0], evaluate.EvalSettings(),
                    seeds=[0, 1])
  names = [(os.path.basename(s.run_dir), s.config.loss, s.config.seed) for s in runs]
  assert names == [("apic", "apic", 0), ("saic_tau_50", "saic", 0), ("saic_tau_400", "saic", 0),
                   ("apic_seed1", "apic", 1), ("saic_tau_50_seed1", "saic", 1),
                   ("saic_tau_400_seed1", "saic", 1)]
  assert all(s.needs == {str(tmp_path / "apic")} for s in runs[1:])
  assert runs[3].config.tau is None and runs[4].config.tau == 50.0
  with pytest.raises(UserError, match="--seeds=1,1: give one or more distinct seeds"):
    sweep.plan(tiny(tmp_path, tau=None), [50.0], evaluate.EvalSettings(), seeds=[1, 1])


def test_the_setup_digest_separates_experiments_but_not_seeds(tmp_path):
  apic = tiny(tmp_path / "apic", tau=None, loss="apic")
  digest = lambda config: evaluate.setup_digest(config, "runs/classifier", "base/tdic/ckpt-4")
  same = [dataclasses.replace(apic, seed=7, model_dir="elsewhere", init_from="runs/apic",
                              downstream_from="runs/classifier", checkpoint_every=1),
          dataclasses.replace(apic, gsw="fisher", gsw_output="probs")]  # unused by APIC
  assert all(digest(config) == digest(apic) for config in same)
  other = [dataclasses.replace(apic, finetune_steps=3), dataclasses.replace(apic, loss="kd"),
           dataclasses.replace(apic, feature_layer="stage3")]
  assert all(digest(config) != digest(apic) for config in other)
  assert evaluate.setup_digest(apic, "runs/other", "base/tdic/ckpt-4") != digest(apic)
  assert evaluate.setup_digest(apic, "runs/classifier", "other/tdic/ckpt-4") != digest(apic)


def test_report_merges_seeds_into_mean_and_std_and_pairs_them_seed_by_seed():
  labels = (0, 1, 2, 3)
  def record(method, seed, accuracy, correct, tau=None, setup=None):
    rows = {m: dict(accuracy=accuracy, f1=accuracy, psnr=20.0 + seed, ssim=0.5, mse=0.01,
                    bpp=0.25, coded_bpp=0.2 + seed / 100, si=1.0)
            for m in ("original", "tdic", method)}
    return dict(model_dir=f"{method}{seed}", tau=tau, nominal_bpp=0.25, dataset="d",
                num_images=4, seed=seed, stages={"tdic": "base/ckpt", method: f"{method}{seed}"},
                rows=rows, images_digest=statistics.images_digest(labels),
                setup_digest=setup or f"{method}{tau}", downstream=dict(dir="classifier"),
                correct={"original": "1111", "tdic": "1000", method: correct})
  blocks = report.gather([record("apic", 0, 0.25, "1000"), record("apic", 1, 0.5, "1100"),
                          record("saic", 1, 0.75, "1101", 2.0),
                          record("saic", 0, 0.75, "1110", 2.0),
                          record("apic", 2, 0.5, "1100", setup="other settings")])
  assert [m for m, _ in blocks[0.25]].count("apic") == 2  # other settings: not merged
  entries = {m: r for m, r in blocks[0.25] if r.get("setup") != "other settings"}
  assert entries["apic"]["seeds"] == [0, 1] and entries["apic"]["accuracy"] == pytest.approx(0.375)
  assert entries["apic"]["std"]["accuracy"] == pytest.approx(np.std([0.25, 0.5], ddof=1))
  assert entries["saic"]["psnr"] == pytest.approx(20.5)
  lines = "\n".join(tables.markdown_rows(blocks[0.25]))
  assert "| APIC (2 seeds) | 1.00 ± 0.00 | 37.50 ± 17.68 |" in lines
  ((name, apic, comparison),) = report.paired_against_apic(blocks[0.25])
  assert (name, apic) == ("SAIC (τ=2) (2 seeds)", "APIC (2 seeds)") and comparison["seeds"] == 2
  assert comparison["difference"] == pytest.approx(0.375)  # seed 0 with seed 0, 1 with 1
  # Per seed: 2 discordant images, both for SAIC (p = 2·¼), then 1 (p = 1); the largest shown.
  assert comparison["mcnemar_p_per_seed"] == [0.5, 1.0] and comparison["mcnemar_p"] == 1.0
  # APIC against its TDIC base (one run, "1000"): each APIC seed pairs with it.
  against_base = {c["seeds"]: (a, b, c) for a, b, c in report.paired_against_base(blocks[0.25])}
  assert sorted(against_base) == [1, 2]  # the merged APIC, and the one of other settings
  name, base, merged = against_base[2]
  assert (name, base) == ("APIC (2 seeds)", "TDIC")
  assert merged["difference"] == pytest.approx(0.125)  # (0 + ¼) / 2
  assert merged["mcnemar_p_per_seed"] == [1.0, 1.0]
  assert against_base[1][2]["difference"] == pytest.approx(0.25)
  # The figures draw each method at the real bpp of its files (the mean over seeds), with the
  # std over seeds as its error bar.
  series, original = report.metric_series(
      {0.25: [(m, r) for m, r in blocks[0.25] if r.get("setup") != "other settings"]},
      "accuracy")
  assert original == [25.0]
  [(bpp, accuracy, error)] = series[report.SeriesKey("apic", None, "", "", 0.0)]
  assert bpp == pytest.approx(0.205) and accuracy == pytest.approx(37.5)
  assert error == pytest.approx(100 * np.std([0.25, 0.5], ddof=1))
  # A variant at another feature layer pairs with APIC at that layer, its control (bin/gsw_study
  # plans one), not with APIC at the default layer.
  def layered(method, *args, **kwargs):
    run = record(method, *args, **kwargs)
    return dict(run, feature_layer="stage3", model_dir=run["model_dir"] + "-stage3",
                stages=dict(run["stages"], **{method: run["model_dir"] + "-stage3"}))
  blocks = report.gather([record("apic", 0, 0.25, "1000"),
                          layered("apic", 0, 0.5, "1100", setup="apic@stage3"),
                          layered("saic", 0, 0.75, "1110", 2.0, setup="saic@stage3")])
  [(name, apic, comparison)] = report.paired_against_apic(blocks[0.25])
  assert (name, apic) == ("SAIC-paper@stage3 (τ=2)", "APIC@stage3")
  assert comparison["difference"] == pytest.approx(0.25)


def test_accuracy_per_bit_interpolates_the_real_bpp_at_90_percent_of_the_original():
  points = [(0.1, 50.0), (0.2, 70.0), (0.4, 80.0)]
  assert report.bpp_to_keep(points, 60.0) == (pytest.approx(0.15), None)
  assert report.bpp_to_keep(points, 75.0) == (pytest.approx(0.3), None)
  assert report.bpp_to_keep(points, 40.0) == (0.1, "below")
  assert report.bpp_to_keep(points, 90.0) == (0.4, "above")
  row = lambda accuracy, bpp, coded=None: dict(accuracy=accuracy, bpp=bpp, coded_bpp=coded,
                                               tau=None)
  blocks = {0.125: [("original", row(0.8, None)), ("tdic", row(0.6, 0.125, 0.1)),
                    ("webp", row(0.5, 0.12))],
            0.25: [("original", row(0.8, None)), ("tdic", row(0.76, 0.25, 0.2)),
                   ("webp", row(0.6, 0.24))]}
  # 90 % of 80 % = 72 %: TDIC reaches it between its files' 0.1 and 0.2 bpp; WebP never.
  assert report.accuracy_per_bit(blocks) == [("TDIC", pytest.approx(0.175), None),
                                             ("WebP", 0.24, "above")]
  assert "| TDIC | 0.175 |" in report.accuracy_per_bit_markdown(blocks)
