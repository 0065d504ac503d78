"""The bin/ commands as a user runs them (subprocesses), and the flagfiles."""
import dataclasses
import glob
import json
import os
import subprocess

from absl import flags
import pytest

from saic_tf import cli
from saic_tf.codec import networks as codec
from saic_tf.common import config as config_module
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.data import datasets
from saic_tf.experiments import gsw_study
from conftest import ROOT


def run_bin(*args, env=None, timeout=300):
  environment = dict(os.environ, **(env or {}))
  return subprocess.run([os.path.join(ROOT, "bin", args[0]), *args[1:]], capture_output=True,
                        text=True, timeout=timeout, env=environment, cwd=ROOT, check=False)


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_helpfull_lists_every_flag():
  result = run_bin("train", "--helpfull")
  assert "Traceback" not in result.stderr  # absl exits with 1 after printing the help
  for field in dataclasses.fields(TrainConfig):
    if field.name == "downstream_sha256":  # recorded by bin/train, never given
      continue
    prefix = "--[no]" if field.type is bool else "--"
    assert f"{prefix}{field.name}" in result.stdout, field.name
  assert "--flagfile" in result.stdout


@pytest.mark.parametrize("command,define,ask", [
    ("compress", cli.define_file_codec_flags, "--help"),
    ("evaluate", cli.define_eval_flags, "-h")])
def test_help_lists_the_commands_own_flags_and_names_helpfull(command, define, ask):
  own = flags.FlagValues()
  define(flag_values=own)
  result = run_bin(command, ask)
  assert "Traceback" not in result.stderr and "FATAL" not in result.stderr
  for name in own:
    assert f"--{name}: " in result.stdout, name  # with its help text after the name
  assert own["model" if command == "compress" else "model_dir"].help in " ".join(
      result.stdout.split())
  for internal in ("--flagfile", "--verbosity", "--logtostderr", "--undefok", "--helpfull:"):
    assert internal not in result.stdout, internal
  assert "--helpfull" in result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_offline_tfds_download_is_one_line(tmp_path):
  result = run_bin("train", "--dataset=stl10", f"--data_dir={tmp_path / 'tfds'}",
                   f"--model_dir={tmp_path / 'run'}", "--steps=1",
                   env={"SAIC_NETWORK_PROBE": "127.0.0.1:9"}, timeout=120)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = error_lines(result.stderr)
  assert len(lines) == 1, result.stderr
  for hint in ("--data_dir", "--dataset=imagefolder", "--dataset=sample"):
    assert hint in lines[0]


@pytest.mark.parametrize("flag,needle", [("--bpp=0.3", "--bpp=0.3"),
                                         ("--loss=saic", "needs --tau")])
def test_bad_flags_are_one_line(tmp_path, flag, needle):
  result = run_bin("train", flag, f"--model_dir={tmp_path}", "--steps=1")
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.slow
def test_demo_shows_the_gain_then_fine_tunes_for_the_shipped_classifier(tmp_path):
  """Step 1 says in one line that a codec that is not shipped is not measured (what it prints
  for a shipped one: test_shipped_models' test of its recorded accuracy); step 2 fine-tunes tdic-0.125
  for the shipped classifier (no TDIC stage, no classifier training of its own), evaluates,
  exports."""
  result = run_bin("demo", f"--model_dir={tmp_path}", "--demo_codec=saic-0.0625", "--log_every=1",
                   "--finetune_steps=2", "--gsw_batches=1", "--eval_max_images=8",
                   "--club_train_images=16", "--club_steps=20", "--parity_images=1", timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert "saic-0.0625 is not shipped in this checkout" in out
  assert "saic step 2/2" in result.stderr and "tdic: reusing" in result.stderr
  assert "frozen as it is, split at stage4" in result.stderr
  assert not os.path.exists(tmp_path / "tdic") and not os.path.exists(tmp_path / "downstream")
  assert "TDIC base:           tdic-0.125" in out
  for output in ("config.json", "gsw.json", "saic", "logs", "eval.md", "report", "export"):
    assert os.path.join(str(tmp_path), output) in out
  assert os.path.exists(tmp_path / "saic" / "ckpt-2.index")
  assert "accuracy Original" in out and "for imagenette96-resnet18" in out
  record = json.load(open(tmp_path / "eval.json"))  # the quick evaluation's own flags
  assert record["num_images"] == 8 and record["evaluation"]["club_train_images"] == 16


def test_train_flags_are_the_config_fields():
  # Each setting is described once, in TrainConfig: its flag has the field's default and help.
  flag_values = flags.FlagValues()
  cli.define_train_flags(flag_values)
  fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
  own = {name for name in flag_values if name in fields}
  assert own == {name for name, f in fields.items() if f.metadata["flag"]}
  assert "downstream_sha256" in fields and "downstream_sha256" not in flag_values
  for name in own:
    field, flag = fields[name], flag_values[name]
    assert flag.help.endswith(field.metadata["help"]) and len(flag.help) > 10, name
    assert flag.default == (None if name == "model_dir" else field.default), name
  assert list(flag_values["loss"].parser.enum_values) == list(config_module.LOSSES)
  assert list(flag_values["dataset"].parser.enum_values) == list(datasets.DATASETS)
  with pytest.raises(flags.IllegalFlagValueError):
    flag_values["image_size"].parse("0")
  flag_values(["train", "--model_dir=m", "--tau=2", "--nodeterministic", "--r=3"])
  config = cli.train_config_from_flags(flag_values)
  assert (config.tau, config.r, config.deterministic, config.model_dir) == (2.0, 3.0, False, "m")
  assert set(config.to_dict()) == set(fields)


@pytest.mark.parametrize("flagfile", sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg"))))
def test_every_flagfile_parses_to_a_valid_config(flagfile):
  flag_values = flags.FlagValues()
  cli.define_train_flags(flag_values)
  flag_values(["train", f"--flagfile={flagfile}", "--model_dir=unused"])
  config = cli.train_config_from_flags(flag_values).validate()
  assert codec.channels_for_bpp(config.bpp, config.stride) >= 1
  if os.path.basename(flagfile) in ("demo.cfg", "smoke.cfg"):
    assert config.resolved_loss == "saic"
  elif os.path.basename(flagfile) == "reproduce.cfg":  # bin/reproduce's and bin/gsw_study's
    # They set loss, gsw, τ and the base (thus bpp).
    assert config.holdout_every and config.gsw_scale == "mean_abs" and config.tau is None
  elif os.path.basename(flagfile) == "zoo.cfg":  # the shipped codecs: --bpp given per model
    assert config.resolved_loss == "tdic" and config.crop_size and config.dataset == "imagefolder"
  else:  # paper configurations: name_<loss>_<bpp>.cfg
    *_, loss, bpp = os.path.basename(flagfile)[:-4].split("_")
    assert (config.resolved_loss, config.bpp) == (loss, float(bpp))
    if loss == "saic":  # the GSW chosen on the validation split
      assert (config.gsw, config.gsw_scale, config.tau) == validation_choice()


def validation_choice():
  """(variant, scale, τ) of highest validation accuracy in the committed GSW study, which ran
  with flags/reproduce.cfg's scale."""
  record = json.loads(open(os.path.join(ROOT, "results", "gsw", "selection.json")).read())
  variant, tau = gsw_study.best_variant(record)
  flag_values = flags.FlagValues()
  cli.define_train_flags(flag_values)
  flag_values(["train", f"--flagfile={os.path.join(ROOT, 'flags', 'reproduce.cfg')}",
               "--model_dir=unused"])
  return variant, cli.train_config_from_flags(flag_values).gsw_scale, tau


def test_the_gsw_defaults_are_the_validation_choice():
  default = TrainConfig()
  assert (default.gsw, default.gsw_scale) == validation_choice()[:2]


def test_list_flags_of_numbers_are_one_line_naming_the_flag():
  flag_values = flags.FlagValues()
  cli.define_sweep_flags(flag_values)
  flag_values(["sweep", "--seeds=0,x", "--taus=1,2"])
  assert cli.numbers_from_flag("taus", flag_values) == [1.0, 2.0]
  with pytest.raises(UserError, match=r"--seeds=0,x: not a list of integers"):
    cli.numbers_from_flag("seeds", flag_values, int)
  flag_values["taus"].parse("1,a")
  with pytest.raises(UserError, match=r"--taus=1,a: not a list of numbers"):
    cli.numbers_from_flag("taus", flag_values)
