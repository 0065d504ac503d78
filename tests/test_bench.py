"""bin/bench keeps working: a tiny setting writes every section (figures are not asserted)."""
import json

import pytest

from test_cli import run_bin


@pytest.mark.slow
def test_bench_writes_every_section_with_a_tiny_setting(tmp_path):
  out = tmp_path / "BENCH.md"
  result = run_bin("bench", "--image_size=32", "--batch_size=4", "--backbones=resnet18",
                   "--steps=1", "--large_size=40,48", "--images=2", "--input_batches=2",
                   f"--out={out}", timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  text = out.read_text()
  for section in ("## Training throughput", "## Speed features", "## Input pipeline",
                  "## Codec latency per image", "## Peak memory", "| SAIC | resnet18 |",
                  "| AVIF decode |", "| TFLite decode (float32, ", "| TFLite decode (int8, ",
                  ".saic entropy decode"):
    assert section in text, section
  record = json.loads((tmp_path / "BENCH.json").read_text())
  assert record["matmul_gflops"] > 0 and record["training"][0]["objective"] == "TDIC"
  assert set(record["latency"]) == {"32x32", "40x48"}
  assert 0 < record["peak_memory_mib"]["decode"] and 0 < record["peak_memory_mib"]["train"]


def test_float16_is_timed_only_where_the_cpu_has_its_arithmetic(tmp_path, monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from saic_tf.experiments import bench  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # no GPU
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_bf16\n")
  assert not bench.has_float16_arithmetic(str(cpuinfo))
  cpuinfo.write_text("flags\t\t: fpu avx512f avx512_fp16\n")
  assert bench.has_float16_arithmetic(str(cpuinfo))
  assert not bench.has_float16_arithmetic(str(tmp_path / "absent"))


def test_bench_refuses_an_unknown_backbone():
  result = run_bin("bench", "--backbones=resnet19")
  assert result.returncode == 2 and "resnet19" in result.stderr
  assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_recipe_ablation_trains_each_variant_and_scores_held_out_images(tmp_path, monkeypatch):
  """bin/ablate's machinery, tiny: calibrate, train to the budget, score the validation split
  through real .saic files, write the table."""
  from saic_tf.experiments import recipe  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(recipe, "CALIBRATION_STEPS", 4)
  settings = recipe.AblationSettings(dataset="sample", data_dir="", bpp=0.25, cpu_minutes=0.05,
                                     holdout_every=5, batch_size=8, score_sizes=(32,),
                                     root=str(tmp_path))
  variants = {"plain": dict(image_size=32, filters=8),
              "crops": dict(image_size=32, filters=8, crop_size=16, lr_schedule="cosine")}
  record = recipe.run(settings, variants=variants, log=lambda line: None)
  assert [row["variant"] for row in record["rows"]] == ["plain", "crops"]
  for row in record["rows"]:  # the budget's steps at the calibrated CPU cost of a step
    assert row["steps"] == int(60 * settings.cpu_minutes / row["cpu_seconds_per_step"]) >= 4
    spent = json.load(open(tmp_path / "runs" / row["variant"] / "tdic" / "training_time.json"))
    assert spent["step"] == row["steps"] and row["cpu_hours"] == spent["cpu_seconds"] / 3600
    assert [h[0] for h in spent["history"]][-1] == row["steps"] and len(spent["history"]) >= 2
    assert row["validation32"]["images"] == 40 and row["validation32"]["bpp"] > 0  # headers too
    assert len(row["validation32"]["psnr_per_image"]) == 40
  gain, half = recipe.paired_gain(record["rows"][1], record["rows"][0], "validation32")
  assert gain == pytest.approx(record["rows"][1]["validation32"]["psnr"] -
                               record["rows"][0]["validation32"]["psnr"], abs=1e-3)
  assert half > 0
  paths = recipe.write(record, str(tmp_path / "recipe.md"))
  table = open(paths[0]).read()
  assert "| plain | image_size=32, filters=8 |" in table and "| crops |" in table
  assert "+0.00 ± 0.00 |" in table and f"{gain:+.2f} ± {half:.2f} |" in table
