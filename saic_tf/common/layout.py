"""The run directory (MODEL_DIR): the one module that knows its names.

    config.json              every setting of the run, checked on resume (config.py)
    downstream/              the frozen classifier's checkpoints and downstream.json
    gsw.json                 W, W' and the settings they were computed with
    tdic/ apic/ saic/        checkpoints of each codec stage, and its entropy_model.json
    logs/<part>/             TensorBoard
    eval.json eval.md eval_gallery.npz
    report/                  bin/report of this run (bin/demo, bin/sweep_tau)
    export/<name>/<version>/ SavedModel and TFLite decoders (bin/export's default)

Checkpoints are named ckpt-<optimizer step> (tf.train.CheckpointManager, saved at the step
count), so a checkpoint's name says how far its stage got.
"""
import os

import tensorflow as tf

from saic_tf.common.errors import UserError

CONFIG_FILE = "config.json"
DOWNSTREAM_DIR = "downstream"
DOWNSTREAM_INFO = "downstream.json"
GSW_FILE = "gsw.json"
CODEC_STAGES = ("tdic", "apic", "saic", "kd")  # each stage's directory has the stage's name
ENTROPY_MODEL_FILE = "entropy_model.json"
ZOO_RECORD_FILE = "record.json"  # a shipped codec's record (codec/zoo.py)
TRAINING_TIME_FILE = "training_time.json"  # beside a part's checkpoints (training/loop.py)
LOGS_DIR = "logs"
EVAL_FILE, EVAL_MARKDOWN, GALLERY_FILE = "eval.json", "eval.md", "eval_gallery.npz"
REPORT_DIR = "report"
KODAK_FILE = "kodak.json"  # a run's Kodak figures (experiments/kodak.py)
TIMINGS_FILE = "timings.json"  # a study's root: seconds spent per run (experiments/executor.py)
EXPORT_DIR = "export"
# The shipped codecs (codec/zoo.py): each is a run directory of its own, named like tdic-0.25.
# SAIC_ZOO_ROOT points elsewhere (tests, or a zoo of one's own).
ZOO_ROOT = os.environ.get("SAIC_ZOO_ROOT") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "codec", "models")


CLASSIFIER_FILE = "classifier.keras"  # a shipped classifier: ZOO_ROOT/<name>/classifier.keras


def zoo_dir(name):
  """The run directory of the shipped codec `name`."""
  return os.path.join(ZOO_ROOT, name)


def zoo_classifier_path(name):
  """The Keras model file of the shipped classifier `name` (e.g. imagenette96-resnet18)."""
  return os.path.join(ZOO_ROOT, name, CLASSIFIER_FILE)


def downstream_model_path(name_or_path):
  """The file a --downstream_model names: a path, or a shipped classifier's name (a file or
  directory of that name wins)."""
  if (name_or_path and not os.path.exists(name_or_path) and os.sep not in name_or_path and
      os.path.exists(zoo_classifier_path(name_or_path))):
    return zoo_classifier_path(name_or_path)
  return name_or_path


def is_zoo_name(name):
  """True for the name of a shipped codec (not a path)."""
  return (isinstance(name, str) and bool(name) and os.sep not in name and
          not name.startswith(".") and os.path.exists(config_path(zoo_dir(name))))


def run_dir(name_or_dir):
  """The run directory a --model, --model_dir or --init_from names: a directory, or the name
  of a shipped codec (a run directory of that name, with its config.json, wins)."""
  if (name_or_dir and is_zoo_name(name_or_dir) and
      not os.path.exists(config_path(name_or_dir))):
    return zoo_dir(name_or_dir)
  return name_or_dir


def config_path(model_dir):
  return os.path.join(model_dir, CONFIG_FILE)


def gsw_path(model_dir):
  return os.path.join(model_dir, GSW_FILE)


def downstream_info_path(model_dir):
  return os.path.join(model_dir, DOWNSTREAM_DIR, DOWNSTREAM_INFO)


def part_dirs(model_dir, part):
  """(checkpoint dir, TensorBoard dir) of one part of the run (tdic, saic, downstream, ...)."""
  return os.path.join(model_dir, part), os.path.join(model_dir, LOGS_DIR, part)


def stage_dir(model_dir, stage):
  return os.path.join(model_dir, stage)


def entropy_model_path(stage_directory):
  """A codec stage's entropy model, beside its checkpoints."""
  return os.path.join(stage_directory, ENTROPY_MODEL_FILE)


def eval_path(model_dir, name=EVAL_FILE):
  """MODEL_DIR/eval.json, or another of the evaluation's files (EVAL_MARKDOWN, GALLERY_FILE)."""
  return os.path.join(model_dir, name)


def export_dir(model_dir):
  return os.path.join(model_dir, EXPORT_DIR)


def checkpoint_step(checkpoint):
  """The optimizer step of a checkpoint path ckpt-<step>; 0 for None."""
  return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def latest_complete_checkpoint(stage_directory, steps, what):
  """The newest checkpoint of a stage that must have reached `steps`, or a UserError."""
  latest = tf.train.latest_checkpoint(stage_directory)
  step = checkpoint_step(latest)
  if step < steps:
    raise UserError(f"{stage_directory}: {what} is not complete (step {step} of {steps})")
  return latest


def codec_stages(config, model_dir):
  """[(stage, checkpoint)] of the run's trained codec stages, in training order: TDIC (this
  run's, or its --init_from base's: a run or a shipped codec), then the fine-tune of an
  apic/saic/kd run."""
  candidates = [("tdic", stage_dir(run_dir(config.init_from) or model_dir, "tdic"))]
  if config.semantic:
    candidates.append((config.loss, stage_dir(model_dir, config.loss)))
  stages = [(name, tf.train.latest_checkpoint(d)) for name, d in candidates]
  stages = [(name, checkpoint) for name, checkpoint in stages if checkpoint]
  if not stages:
    raise UserError(f"{model_dir}: no trained codec checkpoint (tdic/ or {config.loss}/)")
  return stages


def outputs(model_dir):
  """(what, path) of every artifact a run has written so far, in pipeline order."""
  candidates = [("run configuration", CONFIG_FILE),
                ("downstream network", os.path.join(DOWNSTREAM_DIR, DOWNSTREAM_INFO)),
                ("GSW weights", GSW_FILE)]
  candidates += [(f"{stage.upper()} checkpoints", stage) for stage in CODEC_STAGES]
  candidates += [("TensorBoard logs", LOGS_DIR), ("SavedModel + TFLite", EXPORT_DIR)]
  return [(what, os.path.join(model_dir, path)) for what, path in candidates
          if os.path.exists(os.path.join(model_dir, path))]
