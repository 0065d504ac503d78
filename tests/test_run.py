"""common/run.py: a --model, --model_dir or --init_from resolved once into a Run."""
import os

import pytest

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.run import Run

SHIPPED = "tdic-0.25"


def written(directory, **settings):
  """A run directory holding config.json alone (what resolving reads)."""
  os.makedirs(directory, exist_ok=True)
  TrainConfig(model_dir=str(directory), **settings).write()
  return str(directory)


def test_a_run_directory_is_taken_as_it_is(tmp_path):
  run = Run.resolve(written(tmp_path / "run", bpp=0.5))
  assert (run.name, run.directory) == (str(tmp_path / "run"),) * 2
  assert run.config.bpp == 0.5 and not run.shipped
  assert run.base is None and run.downstream is run
  assert Run.resolve(run) is run and Run.find(run) is run and Run.at(run) is run


def test_a_shipped_name_is_the_zoo_run_of_that_name(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no directory of that name here
  run = Run.resolve(SHIPPED)
  assert run.name == SHIPPED and run.directory == layout.zoo_dir(SHIPPED) and run.shipped
  assert run.config.bpp == 0.25 and not run.config.semantic
  stage, checkpoint = run.last_stage
  assert [name for name, _ in run.stages] == ["tdic"] and stage == "tdic"
  assert checkpoint.startswith(layout.zoo_dir(SHIPPED))
  with pytest.raises(UserError, match=r"^--stage=saic: .* has only tdic$"):
    run.stage("saic")
  # Taken as a path, the name is a directory of this folder, which holds no run.
  with pytest.raises(UserError, match="is tdic-0.25 a saic-tf run directory"):
    Run.at(SHIPPED)


def test_a_missing_run_is_one_line_and_find_says_none(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(UserError) as error:
    Run.resolve(missing)
  assert str(error.value) == (f"{layout.config_path(missing)}: missing; is {missing} a saic-tf "
                              "run directory?")
  assert Run.find(missing) is None
  os.makedirs(tmp_path / "export")  # e.g. a bin/export directory: no config.json
  assert Run.find(str(tmp_path / "export")) is None


def test_the_downstream_run_of_an_init_from_run(tmp_path, monkeypatch):
  """A fine-tune of a run with a downstream network uses that run's; a fine-tune of a codec
  alone (a shipped codec) trains its own, or uses --downstream_from's."""
  monkeypatch.chdir(tmp_path)
  base = written(tmp_path / "apic", loss="apic")
  saic = Run.resolve(written(tmp_path / "saic", loss="saic", init_from=base))
  assert saic.base.directory == base and saic.base.config.loss == "apic"
  assert saic.downstream_dir == base and saic.downstream is saic.base
  again = Run.resolve(written(tmp_path / "kd", loss="kd", init_from=saic.directory))
  assert again.downstream_dir == base  # followed through both bases
  from_codec = Run.resolve(written(tmp_path / "own", loss="apic", init_from=SHIPPED))
  assert from_codec.base.shipped and from_codec.downstream is from_codec
  shared = Run.resolve(written(tmp_path / "shared", loss="kd", init_from=SHIPPED,
                               downstream_from=from_codec.directory))
  assert shared.downstream_dir == from_codec.directory
  assert shared.downstream.config.loss == "apic"
  # Training holds its config and its resolved base: neither is read again.
  config = TrainConfig(model_dir=str(tmp_path / "new"), loss="saic", init_from=base)
  fresh = Run.at(config.model_dir, config, saic.base)
  assert fresh.config is config and fresh.base is saic.base
  assert fresh.downstream_dir == base and not os.path.exists(tmp_path / "new")


def test_a_codec_reads_its_run_once(monkeypatch):
  from saic_tf.deploy import file_codec  # pylint: disable=g-import-not-at-top
  reads = []
  read = TrainConfig.read.__func__
  monkeypatch.setattr(TrainConfig, "read",
                      classmethod(lambda cls, d: reads.append(d) or read(cls, d)))
  codec = file_codec.FileCodec(SHIPPED)
  assert codec.run.shipped and reads == [layout.zoo_dir(SHIPPED)]
