"""bin/reproduce: the plan of runs, a tiny reproduction end to end, and results/README.md."""
import csv
import glob
import json
import os
import re
import shlex

from absl import flags
import pytest

from saic_tf import cli
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.evaluation import club, evaluate
from saic_tf.experiments import reproduce
from conftest import ROOT
from test_cli import error_lines, run_bin

TINY_FLAGS = """--dataset=sample_cifar10
--image_size=32
--gsw_output=logits
--filters=8
--batch_size=8
--learning_rate=1e-3
--finetune_learning_rate=1e-4
--downstream_epochs=1
--steps=3
--finetune_steps=2
--gsw_batches=1
--checkpoint_every=2
--log_every=2
--image_every=2
--seed=3
"""
SETTINGS = evaluate.EvalSettings(max_images=8, club_train_images=16,
                                 club=club.ClubSettings(steps=20), baselines=("jpeg",))


def train_flags(*args):
  flag_values = flags.FlagValues()
  cli.define_train_flags(flag_values)
  cli.define_export_flags(flag_values, after_training=True)
  flag_values(["train", *args])
  return flag_values


def test_plan_trains_one_classifier_and_shares_each_rates_tdic(tmp_path):
  config = TrainConfig(model_dir=str(tmp_path), gsw_output="logits")
  runs = reproduce.plan(config, ((0.125, 400.0), (0.25, 3100.0)), 0.125, [40.0, 400.0],
                        SETTINGS)
  names = [os.path.relpath(c.model_dir, tmp_path) for c, _ in runs]
  assert names == ["bpp_0.125/apic", "bpp_0.125/saic_tau_400", "bpp_0.25/apic",
                   "bpp_0.25/saic_tau_3100", "bpp_0.125/saic_tau_40"]  # the sweep comes last
  first = runs[0][0]
  assert (first.loss, first.bpp, first.downstream_from, first.init_from) == ("apic", 0.125, "", "")
  assert runs[2][0].downstream_from == first.model_dir  # one classifier for every rate
  for (run_config, settings), base in zip(runs[1:], [0, None, 2, 0]):
    if base is None:
      continue
    assert run_config.loss == "saic" and run_config.init_from == runs[base][0].model_dir
    assert run_config.downstream_from == "" and settings.baselines == ()
    run_config.validate()
  assert runs[2][1].baselines == ("jpeg",)
  assert [c.tau for c, _ in runs] == [None, 400.0, None, 3100.0, 40.0]


@pytest.mark.parametrize("rates,sweep_rate,needle", [
    (("0.125:400", "0.25"), 0.125, "not BPP:TAU"), (("0.125:400", "0.125:3"), 0.125, "once"),
    (("0.125:-4",), 0.125, "> 0"), (("0.25:400",), 0.125, "--sweep_rate")])
def test_bad_rates_are_refused(tmp_path, rates, sweep_rate, needle):
  with pytest.raises(UserError, match=needle):
    reproduce.plan(TrainConfig(model_dir=str(tmp_path)), reproduce.parse_rates(rates),
                   sweep_rate, [40.0], SETTINGS)


def test_bad_rates_flag_is_one_line(tmp_path):
  result = run_bin("reproduce", "--rates=0.125", f"--model_dir={tmp_path}", timeout=120)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "--rates" in lines[0], result.stderr


def test_tiny_reproduction_writes_results_and_resumes(tmp_path):
  flagfile = tmp_path / "tiny.cfg"
  flagfile.write_text(TINY_FLAGS)
  config = cli.train_config_from_flags(train_flags(
      f"--flagfile={flagfile}", "--steps=4", "--nodeterministic",
      f"--model_dir={tmp_path / 'runs'}"))  # flags given beside the flagfile count too
  results = tmp_path / "results"
  rates, sweep_taus = ((0.25, 400.0), (0.5, 100.0)), [10.0]
  args = (config, rates, 0.25, sweep_taus, SETTINGS, str(results), "bin/reproduce --tiny",
          str(flagfile), cli.train_config_from_flagfile(str(flagfile)))
  files = reproduce.run(*args)
  assert all(os.path.exists(f) for f in files)
  runs = tmp_path / "runs"
  assert os.path.exists(runs / "bpp_0.25" / "apic" / "downstream" / "downstream.json")
  assert not os.path.exists(runs / "bpp_0.5" / "apic" / "downstream")  # trained once
  rows = [(r["nominal_bpp"], r["method"], r["tau"])
          for r in csv.DictReader(open(results / "results.csv"))]
  assert rows == [("0.25", "original", ""), ("0.25", "tdic", ""), ("0.25", "apic", ""),
                  ("0.25", "saic", "10.0"), ("0.25", "saic", "400.0"), ("0.25", "jpeg", ""),
                  ("0.5", "original", ""), ("0.5", "tdic", ""), ("0.5", "apic", ""),
                  ("0.5", "saic", "100.0"), ("0.5", "jpeg", "")]
  kept = sorted(os.path.relpath(p, results / "runs")
                for p in glob.glob(str(results / "runs" / "**" / "eval.json"), recursive=True))
  assert kept == ["bpp_0.25/apic/eval.json", "bpp_0.25/saic_tau_10/eval.json",
                  "bpp_0.25/saic_tau_400/eval.json", "bpp_0.5/apic/eval.json",
                  "bpp_0.5/saic_tau_100/eval.json"]
  comparison = open(results / "comparison.md").read().splitlines()[2:]
  assert [line.split(" | ")[:3] for line in comparison] == [
      ["| 0.25", "Original", "85.45"], ["| 0.25", "TDIC", "76.19"], ["| 0.25", "APIC", "77.66"],
      ["| 0.25", "SAIC (τ=400)", "78.43"], ["| 0.5", "Original", "85.45"],
      ["| 0.5", "TDIC", "77.75"], ["| 0.5", "APIC", "79.04"], ["| 0.5", "SAIC (τ=100)", "79.29"]]
  assert json.load(open(results / "paper.json")) == reproduce.PAPER_ACCURACY
  timings = json.load(open(results / layout.TIMINGS_FILE))
  assert set(timings) == {os.path.dirname(k) for k in kept} | {"total"}
  assert all(t["train_seconds"] > 0 and t["evaluate_seconds"] > 0 and t["train_cpu_seconds"] > 0
             for t in timings.values())
  assert timings["total"]["evaluate_cpu_seconds"] == pytest.approx(
      sum(t["evaluate_cpu_seconds"] for k, t in timings.items() if k != "total"), abs=0.3)

  # COMMANDS.md's bin/train lines rebuild each run's exact configuration.
  commands = open(results / "COMMANDS.md").read()
  assert "bin/reproduce --tiny" in commands
  train_lines = [line for line in commands.splitlines() if line.startswith("bin/train ")]
  assert len(train_lines) == 5
  assert all("--steps=4 " in line and "--nodeterministic " in line for line in train_lines)
  for line in train_lines:
    parsed = cli.train_config_from_flags(train_flags(*shlex.split(line)[1:]))
    saved = TrainConfig.read(parsed.model_dir)
    assert parsed.to_dict() == dict(saved.to_dict(), loss=parsed.loss), line

  # The same command again trains and evaluates nothing: every eval.json stays as it was.
  evals = glob.glob(str(runs / "*" / "*" / "eval.json"))
  before = {p: os.stat(p).st_mtime_ns for p in evals}
  reproduce.run(*args)
  assert {p: os.stat(p).st_mtime_ns for p in evals} == before
  os.remove(results / "results.md")  # --collect_only rewrites results/ alone
  assert reproduce.run(*args, collect_only=True) == files
  assert os.path.exists(results / "results.md")
  assert {p: os.stat(p).st_mtime_ns for p in evals} == before


def _numbers(text):
  return re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", text)


def _json_values(value):
  if isinstance(value, bool):
    return
  if isinstance(value, (int, float)):
    yield float(value)
  elif isinstance(value, dict):
    for item in value.values():
      yield from _json_values(item)
  elif isinstance(value, list):
    for item in value:
      yield from _json_values(item)


def test_every_number_in_the_results_readme_tables_comes_from_its_json_files():
  """results/README.md's tables hold only numbers that results/**/*.json hold (in the table's
  rounding, or as a percentage of a fraction): no number there was typed in by hand."""
  results = os.path.join(ROOT, "results")
  values = set()
  for path in glob.glob(os.path.join(results, "**", "*.json"), recursive=True):
    values.update(_json_values(json.load(open(path))))
  table_lines = [line for line in open(os.path.join(results, "README.md")).read().splitlines()
                 if line.startswith("|") and not set(line) <= set("|-: ")]
  assert len(table_lines) > 10
  checked = 0
  for line in table_lines:
    for number in _numbers(line):
      decimals = len(number.partition(".")[2])
      target = float(number)
      found = any(round(v, decimals) == target or round(100 * v, decimals) == target
                  for v in values)
      assert found, f"results/README.md: {number} in {line!r} is in no results/ JSON file"
      checked += 1
  assert checked > 50
