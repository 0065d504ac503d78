"""bin/bench keeps working: a tiny setting writes every section (figures are not asserted)."""
import json

from test_cli import run_bin


def test_bench_writes_every_section_with_a_tiny_setting(tmp_path):
  out = tmp_path / "BENCH.md"
  result = run_bin("bench", "--image_size=32", "--batch_size=4", "--backbones=resnet18",
                   "--steps=1", "--large_size=40,48", "--images=2", "--input_batches=2",
                   f"--out={out}", timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  text = out.read_text()
  for section in ("## Training throughput", "## Speed features", "## Input pipeline",
                  "## Codec latency per image", "## Peak memory", "| SAIC | resnet18 |",
                  "| AVIF decode |", "| TFLite decode (float32) |", ".saic entropy decode"):
    assert section in text, section
  record = json.loads((tmp_path / "BENCH.json").read_text())
  assert record["matmul_gflops"] > 0 and record["training"][0]["objective"] == "TDIC"
  assert set(record["latency"]) == {"32x32", "40x48"}
  assert 0 < record["peak_memory_mib"]["decode"] and 0 < record["peak_memory_mib"]["train"]


def test_bench_refuses_an_unknown_backbone():
  result = run_bin("bench", "--backbones=resnet19")
  assert result.returncode == 2 and "resnet19" in result.stderr
  assert "Traceback" not in result.stderr
