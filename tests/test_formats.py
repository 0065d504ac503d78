"""The formats of the project's own files (saic_tf/common/formats.py): version-1 files read,
resume and load as they always did; a newer version is refused in one line naming the file;
what is written today says its version."""
import json
import os
import re

import pytest

from conftest import ROOT
from saic_tf.codec import zoo
from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_json
from saic_tf.experiments import gsw_study
from saic_tf.experiments import reproduce
from saic_tf.semantic import gsw


def _write(path, record):
  with open(path, "w") as f:
    json.dump(record, f)
  return str(path)


def _version_1_config(tmp_path, **settings):
  """A config.json as version 1 wrote it: no format_version, nor the settings it lacked."""
  record = TrainConfig(model_dir=str(tmp_path), **settings).to_dict()
  for key in ("gsw", "gsw_scale", "holdout_every"):
    record.pop(key)
  return _write(layout.config_path(str(tmp_path)), record)


def test_a_version_1_config_reads_and_resumes_as_the_run_it_was(tmp_path):
  _version_1_config(tmp_path, tau=400.0)
  config = TrainConfig.read(str(tmp_path))
  assert (config.gsw, config.gsw_scale, config.holdout_every) == ("paper", "raw", 0)
  with pytest.raises(UserError, match=r"add --gsw=paper --gsw_scale=raw\), or another"):
    TrainConfig(model_dir=str(tmp_path), tau=400.0).write_or_check()
  # Its own settings resume it; the file is then today's, format_version first, and the same.
  TrainConfig(model_dir=str(tmp_path), tau=400.0, gsw="paper", gsw_scale="raw").write_or_check()
  with open(layout.config_path(str(tmp_path))) as f:
    record = json.load(f)
  assert list(record)[0] == "format_version" and record["format_version"] == formats.VERSION
  assert TrainConfig.read(str(tmp_path)) == config
  assert TrainConfig.from_dict(record) == config  # format_version is no setting
  TrainConfig(model_dir=str(tmp_path), tau=400.0, gsw="paper", gsw_scale="raw",
              steps=5).write_or_check(write=False)  # nor is it compared on resume


def test_the_earlier_defaults_hint_is_for_version_1_runs_alone(tmp_path):
  """Version 2 was written under today's defaults: a --gsw=paper there was a flag, not the
  default, and the refusal does not say otherwise."""
  TrainConfig(model_dir=str(tmp_path), tau=400.0, gsw="paper", gsw_scale="raw").write_or_check()
  with pytest.raises(UserError, match="--gsw='paper' there, 'magnitude' now") as refusal:
    TrainConfig(model_dir=str(tmp_path), tau=400.0).write_or_check()
  assert "earlier defaults" not in str(refusal.value)


def test_a_version_1_gsw_json_loads_as_it_always_did(tmp_path):
  settings = dict(backbone="resnet18", tau=400.0, gsw="paper", gsw_scale="raw", holdout_every=0,
                  gsw_images="the first batches of the split")
  _write(layout.gsw_path(str(tmp_path)), dict(backbone="resnet18", tau=400.0, W=[1e-3],
                                              W_prime=[1.0]))
  record = gsw.load(str(tmp_path), settings)
  assert record["W_prime"] == [1.0] and record["format_version"] == formats.VERSION
  with pytest.raises(UserError, match="--gsw='paper' there, 'magnitude' now"):
    gsw.load(str(tmp_path), dict(settings, gsw="magnitude"))


@pytest.mark.parametrize("value, match", [
    (formats.VERSION + 1, f"format_version {formats.VERSION + 1} is newer than this saic-tf "
                          f"reads \\(up to {formats.VERSION}\\)"),
    ("2", "format_version '2' is not a version"),
    (0, "format_version 0 is not a version"),
])
def test_a_version_this_code_does_not_know_is_one_line_naming_the_file(tmp_path, value, match):
  config_path = _write(layout.config_path(str(tmp_path)),
                       dict(TrainConfig(model_dir=str(tmp_path)).to_dict(), format_version=value))
  gsw_path = _write(layout.gsw_path(str(tmp_path)), dict(tau=1.0, format_version=value))
  selection_path = _write(tmp_path / gsw_study.SELECTION_FILE, dict(chosen_tau={},
                                                                    format_version=value))
  for read, path in ((lambda: TrainConfig.read(str(tmp_path)), config_path),
                     (lambda: TrainConfig(model_dir=str(tmp_path)).write_or_check(), config_path),
                     (lambda: gsw.load(str(tmp_path), {}), gsw_path),
                     (lambda: gsw_study.read_selection(selection_path), selection_path)):
    with pytest.raises(UserError, match=match) as refusal:
      read()
    assert str(refusal.value).startswith(f"{path}: ") and "\n" not in str(refusal.value)
  with pytest.raises(UserError, match=re.escape(f"{tmp_path}: not a JSON object")):
    formats.upgrade("record", [], str(tmp_path))


def test_the_experiments_files_without_what_later_writers_add_read_as_before(tmp_path):
  """A selection.json without KD's weight (KL alone), a timings.json total without its number
  of runs, a kodak.json without the codecs beside the learned points, a results.json without
  APIC against its base; today's files come back as they are."""
  selection = gsw_study.read_selection(
      _write(tmp_path / "selection.json", dict(chosen_tau={"paper": 1.0})))
  assert gsw_study.chosen_of(selection) == ({"paper": 1.0}, 0.0)
  assert reproduce._kd_choice(selection) == "KL alone"  # pylint: disable=protected-access
  timings = dict(a=dict(train_seconds=1.0), b=dict(train_seconds=2.0),
                 total=dict(train_seconds=3.0))
  assert formats.upgrade("timings", timings, "timings.json")["total"]["runs"] == 2
  kodak = dict(images=2, learned={"TDIC": [dict(bpp=0.3, psnr=25.0, runs=1)]})
  assert formats.upgrade("kodak", kodak, "kodak.json")["beside"] == {"TDIC": [{}]}
  results = dict(blocks=[dict(nominal_bpp=0.25, rows=[], paired=[])], keep=[])
  assert formats.upgrade("results", results, "results.json")["blocks"][0]["paired_base"] == []
  for kind, name in (("selection", "selection.json"), ("timings", "timings.json"),
                     ("kodak", "kodak.json"), ("results", "results.json")):
    path = os.path.join(ROOT, "results", name)
    with open(path) as f:
      text = f.read()
    assert json.dumps(formats.upgrade(kind, json.loads(text), path), indent=1) == text


def test_what_is_written_today_says_its_version(tmp_path):
  gsw.save(str(tmp_path), [1e-3], [1.0], dict(tau=1.0))
  TrainConfig(model_dir=str(tmp_path)).write()
  for path in (layout.gsw_path(str(tmp_path)), layout.config_path(str(tmp_path))):
    with open(path) as f:
      assert list(json.load(f).items())[0] == ("format_version", formats.VERSION)


@pytest.mark.parametrize("name", zoo.all_names())
def test_the_shipped_files_are_todays_as_their_writers_write_them(name, tmp_path):
  """record.json and config.json of every shipped model: version 2, formatted by write_json."""
  directory = layout.zoo_dir(name)
  for file_name in (zoo.RECORD_FILE, layout.CONFIG_FILE):
    path = os.path.join(directory, file_name)
    if not os.path.exists(path):  # a classifier has no config.json
      continue
    with open(path) as f:
      text = f.read()
    record = json.loads(text)
    assert list(record)[0] == "format_version" and record["format_version"] == formats.VERSION
    with open(write_json(str(tmp_path / file_name), formats.stamped(record))) as f:
      assert f.read() == text
  assert zoo.record(name) == json.loads(open(os.path.join(directory, zoo.RECORD_FILE)).read())
