"""bin/reproduce: the plan of runs, a tiny reproduction end to end, and results/README.md."""
import dataclasses
import glob
import json
import os
import re
import shlex

from absl import flags
import pytest

from saic_tf import cli
from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_json
from saic_tf.evaluation import club, evaluate, tables
from saic_tf.experiments import executor, gsw_study, kodak, reproduce
from saic_tf.training import trainer
from conftest import ROOT, ZOO_NAME, small_photos
from test_cli import error_lines, run_bin

TINY = dict(dataset="sample", image_size=32, holdout_every=5, downstream_epochs=1,
            finetune_steps=2, batch_size=8, learning_rate=1e-3, gsw_batches=1,
            gsw_scale="mean_abs", checkpoint_every=2, log_every=2, image_every=2)
SETTINGS = evaluate.EvalSettings(max_images=8, club_train_images=16,
                                 club=club.ClubSettings(steps=5), baselines=("webp",))


def train_flags(*args):
  flag_values = flags.FlagValues()
  cli.define_train_flags(flag_values)
  cli.define_export_flags(flag_values, after_training=True)
  flag_values(["train", *args])
  return flag_values


@pytest.fixture(scope="module")
def bases(tdic_run, tmp_path_factory):
  """Two tiny TDIC codecs, at 0.25 and 0.5 bpp, standing in for the shipped ones."""
  second = str(tmp_path_factory.mktemp("tdic05"))
  trainer.train(TrainConfig(model_dir=second, dataset="sample", image_size=32, bpp=0.5,
                            filters=8, batch_size=8, learning_rate=1e-3, steps=10,
                            checkpoint_every=10, log_every=10, image_every=10, seed=5))
  return (tdic_run, second)


@pytest.mark.slow
def test_plan_runs_the_first_seeds_rows_then_the_other_seeds_then_the_sweep(bases, tmp_path):
  config = TrainConfig(model_dir=str(tmp_path), **TINY)
  settings = reproduce.ReproduceSettings(bases=bases, select_taus=(1.0, 4.0, 16.0),
                                         seeds=(0, 1), variant="paper")
  specs = reproduce.plan(config, settings, SETTINGS, {"paper": 4.0})
  names = [os.path.relpath(spec.run_dir, tmp_path) for spec in specs]
  main = ["apic", "kd", "saic_paper_tau_4"]
  assert names == ([f"bpp_0.25/{n}" for n in main] + [f"bpp_0.5/{n}" for n in main] +
                   [f"bpp_0.25/{n}_seed1" for n in main] + [f"bpp_0.5/{n}_seed1" for n in main] +
                   ["bpp_0.25/saic_paper_tau_1", "bpp_0.25/saic_paper_tau_16",
                    "bpp_0.25/saic_paper_tau_1_seed1", "bpp_0.25/saic_paper_tau_16_seed1",
                    "baselines_1", "baselines_2"])
  # The baselines alone: nothing trained, the classifier's run evaluated at each extra rate.
  assert [(s.config, s.evaluated, s.evaluation.baselines_at) for s in specs[-2:]] == [
      (None, specs[0].run_dir, 1.0), (None, specs[0].run_dir, 2.0)]
  runs = [spec.config for spec in specs[:-2]]
  classifier = runs[0]
  assert (classifier.loss, classifier.downstream_from, classifier.init_from) == (
      "apic", "", bases[0])
  assert all(run.downstream_from == classifier.model_dir for run in runs[1:])
  assert [run.init_from for run in runs[3:6]] == [bases[1]] * 3
  assert [run.seed for run in runs[6:9]] == [1, 1, 1]
  for run in runs:
    run.validate()
  # KD at the weight chosen on the validation split, named by it; no other run has one.
  runs = [s.config for s in reproduce.plan(config, settings, SETTINGS, {"paper": 4.0}, 0.01)][:-2]
  kd = [run for run in runs if run.loss == "kd"]
  assert [os.path.relpath(run.model_dir, tmp_path) for run in kd[:2]] == [
      "bpp_0.25/kd_feature_weight_0.01", "bpp_0.5/kd_feature_weight_0.01"]
  assert {run.kd_feature_weight for run in kd} == {0.01}
  assert {run.kd_feature_weight for run in runs if run.loss != "kd"} == {0.0}


def test_results_are_written_after_each_run_that_did_something_and_at_the_end(tmp_path,
                                                                             monkeypatch):
  """executor.execute collects after a run it trained or evaluated; a run passed over (finished
  and evaluated) adds its seconds to timings.json, and the results are written once at the end."""
  done = {"trained": False, "passed": True}
  monkeypatch.setattr(trainer, "train", lambda config, skip_complete: dict(
      chief=True, test_metrics=None if done[os.path.basename(config.model_dir)] else {}))
  monkeypatch.setattr(executor, "is_current", lambda spec: True)
  run = lambda name: executor.RunSpec(TrainConfig(model_dir=str(tmp_path / name)), SETTINGS)
  for names, expected in ((("trained", "passed", "passed"), [["trained"], ["passed", "trained"]]),
                          (("passed", "trained"), [["passed", "trained"]]),
                          (("passed",), [["passed"]])):
    timings = tmp_path / layout.TIMINGS_FILE
    if timings.exists():  # each plan in a root of its own
      timings.unlink()
    calls = []
    collect = lambda: calls.append(json.load(open(timings))) or [names]
    assert executor.execute([run(n) for n in names], str(tmp_path), collect) == ([names], True)
    # Each collect saw the timings of every run before it.
    assert [sorted(set(c) - {"total"}) for c in calls] == expected, names
  assert executor.execute([], str(tmp_path), lambda: pytest.fail("nothing ran")) == ([], True)


def test_bad_baseline_rates_are_refused(bases, tmp_path):
  config = TrainConfig(model_dir=str(tmp_path), **TINY)
  for rates in ((0.0,), (1.0, 1.0), (0.5,)):  # 0.5: a codec's rate
    settings = reproduce.ReproduceSettings(bases=bases, baseline_rates=rates, variant="paper")
    with pytest.raises(UserError, match="--baseline_rates="):
      reproduce.run(config, settings, SETTINGS, "", "", TrainConfig())
  with pytest.raises(UserError, match="--baselines_at=1: give a rate > 0, --out_dir"):
    evaluate.evaluate(str(tmp_path), dataclasses.replace(SETTINGS, baselines_at=1.0))


def test_the_default_variant_is_the_validation_choice(bases, tmp_path):
  config = TrainConfig(model_dir=str(tmp_path), **TINY)
  settings = reproduce.ReproduceSettings(bases=bases)
  with pytest.raises(UserError, match="--variant: none chosen on the validation split yet.*"
                                      "bin/gsw_study"):
    reproduce.with_variant(config, settings)
  write_json(str(tmp_path / gsw_study.SELECTION_FILE), dict(
      validation_accuracy={"paper": {"1": 0.5, "4": 0.6}, "fisher": {"1": 0.7, "4": 0.2},
                           "label": {"1": 0.7}},
      chosen_tau={"paper": 4.0, "fisher": 1.0, "label": 1.0}))
  assert reproduce.with_variant(config, settings).variant == "fisher"  # tie: selected first
  named = dataclasses.replace(settings, variant="paper@stage3")
  assert reproduce.with_variant(config, named) is named
  # COMMANDS.md names the bin/gsw_study run that chose it, before bin/reproduce.
  commands = reproduce.commands_markdown(
      [executor.RunSpec(config, SETTINGS)], "results", "bin/reproduce", "flags/reproduce.cfg",
      TrainConfig(), study_first=f"bin/gsw_study --model_dir={tmp_path}").splitlines()
  assert commands[commands.index("bin/reproduce") - 1].startswith(
      f"bin/gsw_study --model_dir={tmp_path}   # first")
  # The README's KD bullet, before and since KD's weight is chosen on the validation split.
  old = formats.upgrade("selection", dict(chosen_tau={"paper": 1.0}), "selection.json")
  assert reproduce._kd_choice(old) == "KL alone"
  assert reproduce._kd_choice(dict(kd_validation_accuracy={"0.01": 0.7, "0": 0.6},
                                   chosen_kd_feature_weight=0.01)) == (
      "plus 0.01 × APIC's feature loss: the weight chosen on the validation split among 0, 0.01 "
      "(0: KL alone)")


def test_bad_bases_are_one_line(tmp_path):
  result = run_bin("reproduce", "--bases=no-such-codec", f"--model_dir={tmp_path}", timeout=120)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "--bases" in lines[0], result.stderr


@pytest.mark.slow
def test_gsw_study_then_reproduce_in_one_root(in_zoo, bases, tmp_path):
  """bin/gsw_study then bin/reproduce, tiny, in one root as docs/reproduction.md runs them.
  The study: one classifier, τ and KD's weight chosen on the validation split, the test phase
  over two seeds, the results with paired comparisons against APIC. Then bin/reproduce at its
  bases' two rates: it finds the study's selection and first-seed runs done and passes over
  them (one executor), trains the rest, writes RESULTS/ and resumes."""
  config = TrainConfig(model_dir=str(tmp_path / "runs"), **TINY)
  study = gsw_study.StudySettings(bases=(ZOO_NAME,), variants=("paper",), select_taus=(1.0, 4.0),
                                  select_kd_weights=(0.0, 0.5), seeds=(0, 1),
                                  results_dir=str(tmp_path / "study"))
  _check_gsw_study(config, study, gsw_study.run(config, study, SETTINGS))
  results = tmp_path / "results"
  settings = reproduce.ReproduceSettings(bases=(ZOO_NAME, bases[1]), select_taus=(1.0, 4.0),
                                         seeds=(0,), select_kd_weights=(0.0, 0.5),
                                         baseline_rates=(2.0,), variant="paper",
                                         kodak_dir=small_photos(tmp_path / "kodak"),
                                         results_dir=str(results))
  flagfile = tmp_path / "tiny.cfg"
  flagfile.write_text("".join(f"--{k}={v}\n" for k, v in TINY.items()))
  in_flagfile = cli.train_config_from_flagfile(str(flagfile))
  args = (config, settings, SETTINGS, "bin/reproduce --tiny", str(flagfile), in_flagfile)
  runs = tmp_path / "runs"
  done = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(runs / "bpp_0.25" / "*" / "*.json"))}
  files = reproduce.run(*args)
  assert all(os.path.exists(f) for f in files)
  # The study's runs at 0.25 bpp were neither trained nor evaluated again (the sweep's τ alone
  # is evaluated on the test split, in its own eval.json).
  assert {p: os.stat(p).st_mtime_ns for p in done} == done
  assert os.path.exists(runs / "bpp_0.25" / "apic" / "downstream" / "downstream.json")
  assert not os.path.exists(runs / "bpp_0.5" / "apic" / "downstream")  # trained once
  selection = json.load(open(results / "selection.json"))
  tau = f"{selection['chosen_tau']['paper']:g}"
  other = "4" if tau == "1" else "1"
  kd_scores = selection["kd_validation_accuracy"]
  assert set(kd_scores) == {"0", "0.5"}
  kd_weight = selection["chosen_kd_feature_weight"]
  assert kd_scores[f"{kd_weight:g}"] == max(kd_scores.values())
  kd = "KD+0.5·APIC" if kd_weight else "KD"
  record = json.load(open(results / "results.json"))
  labels = {b["nominal_bpp"]: [r["label"] for r in b["rows"]] for b in record["blocks"]}
  assert labels[0.25] == ["Original", "TDIC", "APIC", "SAIC-paper (τ=1)", "SAIC-paper (τ=4)", kd,
                          "WebP"]
  assert labels[0.5] == ["Original", "TDIC", "APIC", f"SAIC-paper (τ={tau})", kd, "WebP"]
  assert labels[2.0] == ["Original", "WebP"]  # the baselines alone at an extra rate
  assert [p["method"] for p in record["accuracy_per_bit"]][-1] == "WebP"
  kodak_record = json.load(open(results / "kodak.json"))
  assert set(kodak_record["learned"]) == {"TDIC", "APIC", "SAIC", "KD"}
  assert [len(points) for points in kodak_record["learned"].values()] == [2, 2, 2, 2]
  tables_md = (results / "tables.md").read_text()
  assert "## Table 1" in tables_md and "| ACC (%) 0.25 | SI 0.25 |" in tables_md
  # The baselines alone at 2 bpp count for accuracy per bit, not in the per-rate tables.
  assert "2 bpp" not in tables_md and "| 2 |" not in (results / "comparison.md").read_text()
  readme = (results / "README.md").read_text()
  # --variant named the variant: the README says so, and that its choice is not in the time.
  assert (f"τ = {tau}: the variant named by `--variant`, τ chosen on the validation split "
          "among 1, 4") in readme
  assert "(those that chose the variant `--variant` names are not)" in readme
  assert "- **0.25 bpp:**" in readme and "SAIC − APIC =" in readme and "**The goal:**" in readme
  assert "APIC − TDIC =" in readme and "those whose 95 % CI excludes 0:**" in readme
  assert "**Not run:** the paper's Table 4" in readme
  assert "the weight chosen on the validation split among 0, 0.5 (0: KL alone)" in readme
  assert "## KD's feature weight" in (results / "selection.md").read_text()
  assert "{" not in readme and "**2 bpp:**" not in readme  # every field filled
  assert f"]({reproduce.KODAK_FIGURE})" in readme  # drawn: Kodak was measured
  template = open(reproduce.README_TEMPLATE).read()
  assert f"SAIC ≥ APIC + {gsw_study.GOAL_POINTS:g} point" in template
  template += " ".join(curve["short"] for curve in kodak.PUBLISHED)  # Kodak's columns, by name
  # The results' own JSON files and the runs' settings, not every evaluation's many numbers.
  assert _check_numbers_trace_to_json(str(results), readme, template, sources=(
      "*.json", os.path.join("runs", "*", "*", layout.CONFIG_FILE))) > 40
  # APIC against TDIC, and SAIC and KD against APIC, at each rate.
  assert _check_paired_rows(readme, str(results)) >= 4
  kept = sorted(os.path.relpath(p, results / "runs")
                for p in glob.glob(str(results / "runs" / "**" / "eval.json"), recursive=True))
  assert f"bpp_0.25/saic_paper_tau_{other}/eval.json" in kept  # the sweep, on the test split
  timings = json.load(open(results / layout.TIMINGS_FILE))
  # Every run's time, the KD weight not chosen (validation only) too.
  assert timings["total"]["cpu_hours"] > 0 and len(timings) == len(kept) + 2
  assert timings["total"]["runs"] == len(kept) + 1  # what the README counts

  # COMMANDS.md's bin/train lines rebuild each run's exact configuration.
  commands = open(results / "COMMANDS.md").read()
  train_lines = [line for line in commands.splitlines() if line.startswith("bin/train ")]
  assert len(train_lines) == len(kept) - 1  # all but the baselines alone
  assert "--baselines_at=2 " in commands and "bin/gsw_study" not in commands  # --variant named
  for line in train_lines:
    parsed = cli.train_config_from_flags(train_flags(*shlex.split(line)[1:]))
    # bin/train takes the base's codec settings, as it did for the run.
    assert (trainer.with_base_codec(parsed).to_dict() ==
            TrainConfig.read(parsed.model_dir).to_dict()), line

  # --collect_only trains and evaluates nothing, and rewrites RESULTS/ byte for byte. (The same
  # command resuming runs that are done: test_evaluate.py's sweep test.)
  evals = glob.glob(str(runs / "**" / "eval.json"), recursive=True)
  assert str(runs / "baselines_2" / "eval.json") in evals
  before = {p: os.stat(p).st_mtime_ns for p in evals}
  # The baselines alone are evaluated again only for another classifier or other images.
  alone = [s for s in reproduce.plan(config, settings, SETTINGS, selection["chosen_tau"],
                                     kd_weight) if not s.config]
  assert [s.run_dir for s in alone] == [str(runs / "baselines_2")]
  assert executor.execute(alone, str(runs), lambda: pytest.fail("evaluated again")) == ([], True)
  contents = {f: open(f, "rb").read() for f in files}
  os.remove(results / "README.md")
  assert reproduce.run(*args, collect_only=True) == files
  assert {f: open(f, "rb").read() for f in files} == contents
  assert {p: os.stat(p).st_mtime_ns for p in evals} == before

  # A kodak.json from before the codecs' PSNR beside each learned point: those columns alone go.
  kodak_path = results / reproduce.KODAK_RESULTS
  old = {k: v for k, v in json.load(open(kodak_path)).items() if k != "beside"}
  write_json(str(kodak_path), old)
  text, _ = reproduce.readme(str(results), "paper", 0.25)
  assert "| method | real bpp | PSNR (dB) |\n|---|---|---|\n| TDIC |" in text
  # Without Kodak (no --kodak_dir folder): an earlier collect's Kodak files go, one line says
  # so, and no figure is linked.
  no_kodak = dataclasses.replace(settings, kodak_dir="")
  reproduce.run(config, no_kodak, *args[2:], collect_only=True)
  assert not os.path.exists(kodak_path) and not os.path.exists(results / reproduce.KODAK_FIGURE)
  text = (results / "README.md").read_text()
  assert "Not measured (no Kodak folder given)." in text
  assert reproduce.KODAK_FIGURE not in text and "{" not in text


def _check_gsw_study(config, settings, files):
  """What bin/gsw_study wrote for `settings` under config.model_dir (the test above)."""
  root, results = config.model_dir, settings.results_dir
  selection = json.load(open(os.path.join(root, gsw_study.SELECTION_FILE)))
  assert set(selection["validation_accuracy"]) == {"paper"}
  assert set(selection["validation_accuracy"]["paper"]) == {"1", "4"}
  tau = f"{selection['chosen_tau']['paper']:g}"
  assert tau in ("1", "4")
  at = lambda *path: os.path.join(root, "bpp_0.25", *path)
  validation = json.load(open(at("saic_paper_tau_1", "validation", layout.EVAL_FILE)))
  assert validation["split"] == "validation" and validation["num_images"] == 8
  # KD's feature weight, chosen there too: the test runs are at the chosen one.
  kd_scores = selection["kd_validation_accuracy"]
  assert set(kd_scores) == {"0", "0.5"}
  chosen_kd = selection["chosen_kd_feature_weight"]
  assert kd_scores[f"{chosen_kd:g}"] == max(kd_scores.values())
  kd = "kd_feature_weight_0.5" if chosen_kd else "kd"
  runs = sorted(os.listdir(at()))
  assert {"apic", "kd", "kd_feature_weight_0.5", "apic_seed1", f"{kd}_seed1",
          f"saic_paper_tau_{tau}_seed1"} <= set(runs)
  assert json.load(open(at("kd_feature_weight_0.5", layout.CONFIG_FILE)))["kd_feature_weight"] == 0.5
  assert all(not os.path.exists(at(r, "downstream")) for r in runs if r != "apic")  # one classifier
  summary = open(os.path.join(results, "summary.md")).read()
  assert "## 0.25 bpp" in summary and "| goal |" in summary
  kd_label = "KD+0.5·APIC" if chosen_kd else "KD"
  assert f"| {kd_label} (2 seeds) − APIC (2 seeds) |" in summary
  assert f"| SAIC-paper (τ={tau}) (2 seeds) − APIC (2 seeds) |" in summary
  assert ("No SAIC variant meets the goal" in summary) != ("Met at every rate measured by" in
                                                           summary)
  assert "Not measured yet" not in summary
  assert "Not measured yet: 0.5 bpp" in gsw_study.summary_markdown({}, rates=[0.5])
  # Every run's time, the total in the summary; the study's own runs evaluate TDIC's row and
  # the baselines once.
  timings = json.load(open(os.path.join(results, layout.TIMINGS_FILE)))
  assert len(timings) == len(runs) + 1 and timings["total"]["train_cpu_seconds"] > 0
  assert "The study took" in summary
  rows = lambda run: set(json.load(open(at(run, layout.EVAL_FILE)))["rows"])
  assert rows("apic") == {"original", "tdic", "apic", "webp"}
  assert rows(f"{kd}_seed1") == {"original", "kd"} and rows("apic_seed1") == {"original", "apic"}
  gsw_record = json.load(open(at(f"saic_paper_tau_{tau}", layout.GSW_FILE)))
  assert gsw_record["feature_layer"] == "stage4" and gsw_record["gsw"] == "paper"
  assert os.path.join(results, "selection.md") in files
  assert os.path.join(results, gsw_study.SELECTION_FILE) in files
  selection_md = open(os.path.join(results, "selection.md")).read()
  assert "| paper | 512 |" in selection_md  # ResNet18's stage4 has 512 channels
  with pytest.raises(UserError, match="give --holdout_every"):
    gsw_study.run(dataclasses.replace(config, holdout_every=0), settings, SETTINGS)
  with pytest.raises(UserError, match="--kd_feature_weight=0.1: KD's weight is chosen on the "
                                      "validation"):
    gsw_study.run(dataclasses.replace(config, kd_feature_weight=0.1), settings, SETTINGS)
  for weights in ((), (0.0, 0.0), (-1.0,), (0.0012345678,)):
    with pytest.raises(UserError, match="--select_kd_weights="):
      gsw_study.run(config, dataclasses.replace(settings, select_kd_weights=weights), SETTINGS)


def test_a_variant_at_another_layer_gets_an_apic_control_at_that_layer(tmp_path):
  """gsw_study's plan for a gsw@layer variant (what the tiny study above runs at the default
  layer): at each seed, APIC at that --feature_layer beside the SAIC run, which the summary
  pairs it with (test_evaluate's report test), and TDIC's row with the default layer's APIC."""
  config = TrainConfig(model_dir=str(tmp_path), **TINY)
  settings = gsw_study.StudySettings(bases=("base",), variants=("paper@stage3",),
                                     seeds=(0, 1))
  specs = gsw_study.plan(config, settings, [(0.25, "base")], 0.25, SETTINGS,
                         {"paper@stage3": 4.0}, 0.0)
  by_name = {os.path.relpath(s.config.model_dir, tmp_path): s for s in specs}
  assert list(by_name) == [f"bpp_0.25/{name}{seed}" for seed in ("", "_seed1") for name in
                           ("apic", "kd", "apic-stage3", "saic_paper-stage3_tau_4")]
  for name in ("apic-stage3", "saic_paper-stage3_tau_4", "apic-stage3_seed1"):
    assert by_name[f"bpp_0.25/{name}"].config.feature_layer == "stage3", name
  assert by_name["bpp_0.25/saic_paper-stage3_tau_4"].config.gsw == "paper"
  assert [s.evaluation.base_row for s in specs] == [True] + [False] * 7


def _check_paired_rows(text, results):
  """Each row of `text`'s tables of paired comparisons (statistics.markdown's, under a heading
  "## <rate> bpp" or "**<rate> bpp**") holds the difference, interval, p-value, images and seeds
  of its own record in `results`/results.json; returns the number of rows, which is every
  record's."""
  record = json.load(open(os.path.join(results, "results.json")))
  paired = {(b["nominal_bpp"], c["a"], c["b"]): c for b in record["blocks"]
            for c in b["paired"] + b.get("paired_base", [])}
  bpp, compared = None, 0
  for line in text.splitlines():
    heading = re.fullmatch(r"(?:## |\*\*)([\d.]+) bpp.*", line)
    if heading:
      bpp = float(heading.group(1))
    elif line.startswith("| ") and " − " in line:
      name, *cells = [cell.strip() for cell in line.strip("|").split("|")]
      c = paired[(bpp,) + tuple(name.split(" − "))]
      numbers = [float(n) for n in _numbers(" ".join(cells[:2]))]
      assert numbers == [round(100 * v, 2) for v in [c["difference"], *c["ci95"]]], line
      # p as statistics.markdown prints it (below 1e-4 in scientific notation).
      assert cells[2:5] == [f"{c['mcnemar_p']:.3g}", str(c["images"]), str(c["seeds"])], line
      compared += 1
  assert compared == len(paired)
  return compared


def _numbers(text):
  """The numbers of `text`, a p-value such as 2.03e-172 as one."""
  return re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w.])", text)


def _json_values(value):
  if isinstance(value, bool):
    return
  if isinstance(value, (int, float)):
    yield float(value)
  elif isinstance(value, dict):
    for key, item in value.items():
      if re.fullmatch(r"-?\d+(\.\d+)?", key):  # e.g. τ or a rate as a key
        yield float(key)
      yield from _json_values(item)
  elif isinstance(value, list):
    for item in value:
      yield from _json_values(item)


def _check_numbers_trace_to_json(results, text, template="",
                                 sources=(os.path.join("**", "*.json"),)):
  """Every number of `text` that `template` does not hold itself is a value (or a key) of a JSON
  file of `sources` (globs under `results`), in its rounding, or as a percentage of a
  fraction. Code spans (paths, names such as `tdic-0.25`) hold no figures."""
  values = set()
  for pattern in sources:
    for path in glob.glob(os.path.join(results, pattern), recursive=True):
      values.update(_json_values(json.load(open(path))))
  static = set(_numbers(template))
  checked = 0
  for line in text.splitlines():
    for number in _numbers(re.sub(r"`[^`]*`", "", line)):
      if number in static:
        continue
      if "e" in number:  # as statistics.markdown prints a p below 1e-4
        found = any(f"{v:.3g}" == number for v in values)
      else:
        decimals = len(number.partition(".")[2])
        target = float(number)
        found = any(round(v, decimals) == target or round(100 * v, decimals) == target
                    for v in values)
      assert found, f"{number} in {line!r} is in no JSON file of {results}"
      checked += 1
  return checked


def test_every_number_in_the_results_readme_comes_from_its_json_files():
  """results/README.md, written by bin/reproduce from its template: every number that the
  template (or a published curve's name) does not hold itself is a value of results/'s JSON
  files or of a kept run's config.json, in its rounding or as a percentage of a fraction; and
  each paired comparison is its own record's."""
  results = os.path.join(ROOT, "results")
  readme = open(os.path.join(results, "README.md"), encoding="utf-8").read()
  template = open(reproduce.README_TEMPLATE, encoding="utf-8").read()
  template += " ".join(curve["short"] for curve in kodak.PUBLISHED)
  assert _check_numbers_trace_to_json(results, readme, template, sources=(
      "*.json", os.path.join("runs", "*", "*", layout.CONFIG_FILE))) > 100
  # APIC against TDIC, and SAIC and KD against APIC, at 3 rates.
  assert _check_paired_rows(readme, results) >= 9


def test_every_number_in_the_gsw_studys_summary_comes_from_its_json_files():
  """results/gsw/summary.md (bin/gsw_study's): each comparison's difference, interval, p-value,
  images and seeds are those of its own record in results.json, and so is the number of SAIC
  variants it counts; its times are timings.json's."""
  results = os.path.join(ROOT, "results", "gsw")
  text = open(os.path.join(results, "summary.md")).read()
  assert _check_paired_rows(text, results) > 5
  # The SAIC variants measured (the labels compared, less their τ and seeds) and the times.
  record = json.load(open(os.path.join(results, "results.json")))
  variants = {c["a"].split(" (")[0] for b in record["blocks"] for c in b["paired"]
              if c["a"].startswith("SAIC")}
  assert f"{len(variants)} variants were tested" in text
  timings = json.load(open(os.path.join(results, layout.TIMINGS_FILE)))
  total = timings["total"]
  assert total["runs"] == len(timings) - 1  # all but the total
  assert (f"The study took {total['cpu_hours']:.2f} CPU hours (training "
          f"{total['train_cpu_hours']:.2f}, evaluation {total['evaluate_cpu_hours']:.2f}) over "
          f"{total['runs']} runs, {total['wall_hours']:.2f} hours of wall time") in text


def test_the_summary_sets_the_image_codecs_bits_against_the_learned_ones():
  """Accuracy per bit in the README's summary: the main rows only, and each image codec's bpp
  at the kept accuracy over each fine-tuned codec's."""
  # Rows as results.json has them: merged over seeds, whose count their label carries.
  row = lambda label, accuracy, **more: dict(label=label, accuracy=accuracy, **more)
  saic = dict(gsw="magnitude", tau=8.0, seeds=[0, 1, 2])
  main = {0.125: {"original": row("Original", 0.8), "apic": row("APIC (3 seeds)", 0.7),
                  "saic": row("SAIC-magnitude (τ=8) (3 seeds)", 0.71, **saic),
                  "webp": row("WebP", 0.3)},
          0.25: {"original": row("Original", 0.8), "apic": row("APIC (3 seeds)", 0.75),
                 "saic": row("SAIC-magnitude (τ=8) (3 seeds)", 0.76, **saic),
                 "webp": row("WebP", 0.6)}}
  per_bit = [dict(method="APIC", bpp=0.2, bound=None),
             dict(method="SAIC-magnitude (τ=8)", bpp=0.1, bound=None),
             dict(method="SAIC-magnitude (τ=2)", bpp=0.1, bound="below"),  # the sweep
             dict(method="WebP", bpp=1.0, bound=None), dict(method="AVIF", bpp=2.0, bound="above")]
  main[0.25]["avif"] = row("AVIF", 0.5)
  # KD with a feature loss: its label names the weight.
  for bpp in main:
    main[bpp]["kd"] = row("KD+0.01·APIC (3 seeds)", 0.7, kd_feature_weight=0.01, seeds=[0, 1, 2])
  per_bit.append(dict(method="KD+0.01·APIC", bpp=0.25, bound=None))
  assert per_bit[-1]["method"] == tables.label("kd", dict(kd_feature_weight=0.01))
  # accuracy_per_bit names a series as tables.label does without seeds.
  assert per_bit[1]["method"] == tables.label("saic", dict(gsw="magnitude", tau=8.0))
  lines, ratios = reproduce.summary_lines(main, {0.125: [], 0.25: []}, per_bit, 0.9)
  [line] = [l for l in lines if "Accuracy per bit" in l]
  assert ratios[1] == dict(codec="AVIF", learned="APIC", times=10.0, more_than=True)
  assert "τ=2" not in line and "APIC 0.200, SAIC-magnitude (τ=8) 0.100, WebP 1.000" in line
  assert "AVIF > 2.000" in line
  assert ("At that accuracy, WebP needs 5.0× and AVIF more than 10.0× the bits of APIC; WebP "
          "needs 10.0× and AVIF more than 20.0× the bits of SAIC-magnitude (τ=8); WebP needs "
          "4.0× and AVIF more than 8.0× the bits of KD+0.01·APIC.") in line


def test_the_summary_names_the_differences_whose_interval_excludes_0():
  """What holds: APIC against its TDIC base and SAIC and KD against APIC at each rate, then
  which of those differences are clear, by sign, and the goal."""
  row = lambda label, accuracy: dict(label=label, accuracy=accuracy)
  main = {bpp: {"apic": row("APIC", 0.7), "saic": row("SAIC-paper (τ=8)", 0.71),
                "kd": row("KD", 0.69)} for bpp in (0.125, 0.25)}
  pair = lambda a, b, low, high: dict(a=a, b=b, difference=(low + high) / 2, ci95=[low, high],
                                      mcnemar_p=0.5, seeds=1)
  saic = "SAIC-paper (τ=8)"
  paired = {0.125: [pair(saic, "APIC", -0.01, 0.02), pair("KD", "APIC", -0.03, -0.01)],
            0.25: [pair(saic, "APIC", 0.011, 0.03), pair("KD", "APIC", -0.01, 0.01)]}
  base = {bpp: [pair("APIC", "TDIC", 0.2, 0.3)] for bpp in main}
  lines, _ = reproduce.summary_lines(main, paired, [], 0.9, base)
  assert lines[0].startswith("- **0.125 bpp:** accuracy APIC 70.00 %, SAIC 71.00 %, KD 69.00 %; "
                             "APIC − TDIC = +25.00 points (95 % CI [+20.00, +30.00]")
  assert ("- **Of these differences, those whose 95 % CI excludes 0:** APIC > TDIC at 0.125 and "
          "0.25 bpp; SAIC > APIC at 0.25 bpp; KD < APIC at 0.125 bpp; every other one's CI "
          "contains 0.") in lines
  assert "- **The goal:** met at 0.25 bpp only." in lines
  unclear = {bpp: [pair("SAIC-paper (τ=8)", "APIC", -0.01, 0.02)] for bpp in main}
  lines, _ = reproduce.summary_lines(main, unclear, [], 0.9)
  assert "- **Of these differences, those whose 95 % CI excludes 0:** none." in lines
  assert "- **The goal:** not met at any rate measured." in lines


def test_the_readme_says_how_the_variant_and_tau_were_chosen():
  scores = lambda *accuracies: dict(zip(("0.5", "2", "8"), accuracies))
  selection = dict(validation_accuracy=dict(magnitude=scores(0.68, 0.67, 0.68),
                                            paper=scores(0.6, 0.7, 0.65)),
                   chosen_tau=dict(magnitude=0.5, paper=2.0))
  assert reproduce._variant_choice(selection, "paper") == (
      "of highest validation accuracy among 2 variants, each at its τ of 0.5, 2, 8 chosen on the "
      "validation split")
  assert reproduce._variant_choice(selection, "magnitude") == (
      "τ chosen on the validation split among 0.5, 2, 8, where τ = 8 scored the same (ties go to "
      "the smaller τ) (the variant named by `--variant`; the validation's best is `paper`)")
  del selection["chosen_tau"]["paper"]
  assert reproduce._variant_choice(selection, "magnitude", named=True).startswith(
      "the variant named by `--variant`, τ chosen on the validation split among 0.5, 2, 8, where")
  assert reproduce._variant_choice(selection, "magnitude").startswith("τ chosen on the")
