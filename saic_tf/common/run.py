"""A run as the commands take it: resolved once where a --model, --model_dir or --init_from
comes in, then passed down, so that no later step looks the name up or reads config.json again.

    run = Run.resolve("tdic-0.25")   # a run directory, or a shipped codec's name
    run.directory, run.config        # where it is, its config.json (TrainConfig)
    run.shipped                      # a shipped codec named by its name: nothing is written there
    run.stages, run.last_stage       # its trained codec stages [(stage, checkpoint)]
    run.base, run.downstream         # its --init_from run, the run whose classifier it uses

A run's base and downstream run are read when first asked for, not before: a codec whose base
is gone still codes files with its own last stage, as it did.
"""
import dataclasses
import functools
import os
from typing import Optional

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError


@dataclasses.dataclass(frozen=True)
class Run:
  """One run: the name it was given, its directory and its config.json."""
  name: str  # as given: a directory, or the name of a shipped codec (e.g. tdic-0.25)
  directory: str  # its run directory: `name`, or the zoo's directory of that name
  config: TrainConfig

  @classmethod
  def resolve(cls, name):
    """The run a --model, --model_dir or --init_from names: a directory, or the name of a
    shipped codec (layout.run_dir: a run directory of that name wins). A one-line UserError when
    it has no readable config.json. A Run passes through."""
    if isinstance(name, Run):
      return name
    directory = layout.run_dir(name)
    return cls(name, directory, TrainConfig.read(directory))

  @classmethod
  def find(cls, name):
    """Run.resolve(name), or None when `name` holds no config.json (e.g. a bin/export
    directory, which bin/compress and saic_tf.load also take)."""
    if isinstance(name, Run):
      return name
    directory = layout.run_dir(name)
    if not os.path.exists(layout.config_path(directory)):
      return None
    return cls(name, directory, TrainConfig.read(directory))

  @classmethod
  def at(cls, directory, config=None, base=None):
    """The run in `directory`, taken as a path (no shipped codec's name is looked up), its
    config.json read unless `config` is given (training holds it before writing it); `base`,
    its --init_from Run when the caller has resolved it already. A Run passes through."""
    if isinstance(directory, Run):
      return directory
    run = cls(directory, directory, config if config is not None else TrainConfig.read(directory))
    if base is not None:
      run.__dict__["base"] = base  # what the cached property would resolve again
    return run

  @property
  def shipped(self):
    """A shipped codec named by its name: nothing is written into the package."""
    return self.directory != self.name

  @property
  def stages(self):
    """[(stage, checkpoint)] of its trained codec stages, in training order
    (layout.codec_stages). Listed again on each call: a run being trained gains checkpoints."""
    return layout.codec_stages(self.config, self.directory)

  def stage(self, name=None):
    """(stage, checkpoint) of its codec stage `name` (a --stage flag), default its last."""
    stages = dict(self.stages)
    name = name or list(stages)[-1]
    if name not in stages:
      raise UserError(f"--stage={name}: {self.directory} has only {', '.join(stages)}")
    return name, stages[name]

  @property
  def last_stage(self):
    """(stage, checkpoint) of the last stage it trained (the codec it ships)."""
    return self.stage()

  @functools.cached_property
  def base(self) -> Optional["Run"]:
    """The run its --init_from names (whose TDIC stage it fine-tunes), or None."""
    return Run.resolve(self.config.init_from) if self.config.init_from else None

  @property
  def downstream_dir(self):
    """The directory of the run whose downstream network it uses: --downstream_from, else
    (following --init_from) its base's if that has one (a TDIC run or a shipped codec has
    none), else its own. That run is not read: training names it before the network exists."""
    config = self.config
    if config.downstream_from:
      return config.downstream_from
    if not config.downstream_model and self.base is not None and self.base.config.semantic:
      return self.base.downstream_dir
    return self.directory

  @functools.cached_property
  def downstream(self):
    """The run of downstream_dir, its config.json read once: this run, its base's (already
    read), or --downstream_from's."""
    directory = self.downstream_dir
    if directory == self.directory:
      return self
    if self.config.downstream_from:
      return Run.at(directory)
    return self.base.downstream
