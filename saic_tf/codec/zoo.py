"""Pretrained codecs shipped in the package, by name: tdic-0.125, tdic-0.25, tdic-0.5.

Each lives in saic_tf/codec/models/<name>/ as a run directory of its own (layout.zoo_dir):
config.json, tdic/ckpt-<steps> with the codec's weights alone, tdic/entropy_model.json, plus
record.json, which says how it was trained (command, steps, data, CPU time) and what it
measures (written by bin/models --measure). So a name works wherever a trained run does:
bin/compress --model, bin/export --model, bin/evaluate --model_dir, bin/train --init_from;
and a .saic file made with one decodes without naming it (its fingerprint is in record.json).
"""
import os
import re

from saic_tf.codec import stages
from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.run import Run

RECORD_FILE = layout.ZOO_RECORD_FILE
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_FINGERPRINTS = {}  # name -> fingerprint, computed once per process


def _rate(name):
  try:
    return float(name.rsplit("-", 1)[-1])
  except ValueError:
    return float("inf")


def names():
  """The shipped models' names, sorted by rate (tdic-0.125, tdic-0.25, tdic-0.5)."""
  root = layout.ZOO_ROOT
  found = [n for n in os.listdir(root) if NAME_PATTERN.match(n) and
           os.path.exists(layout.config_path(os.path.join(root, n)))] if (
               os.path.isdir(root)) else []
  return sorted(found, key=lambda n: (_rate(n), n))


def classifier_names():
  """The shipped classifiers' names (a folder with classifier.keras and record.json): the
  networks the task-aware codecs were fine-tuned for."""
  root = layout.ZOO_ROOT
  return sorted(n for n in (os.listdir(root) if os.path.isdir(root) else ())
                if NAME_PATTERN.match(n) and os.path.exists(layout.zoo_classifier_path(n)))


def all_names():
  """Every shipped model: the codecs by rate, then the classifiers."""
  return names() + classifier_names()


def check_new_name(name):
  """A name a run may be shipped under (--name of bin/models --package)."""
  if not NAME_PATTERN.match(name or "") or name == "all" or name.endswith(".tmp"):
    raise UserError(f"--name={name}: use lower-case letters, digits, '.', '_' and '-' "
                    "(e.g. tdic-0.25)")
  return name


def record(name):
  """record.json of a shipped model, in today's format (formats.py)."""
  return formats.read("record", os.path.join(layout.zoo_dir(name), RECORD_FILE),
                      "the package is damaged")


def fingerprint(name):
  """The .saic fingerprint of a shipped model (of its weights and entropy model)."""
  if name not in _FINGERPRINTS:
    directory = check_name(name)
    _FINGERPRINTS[name] = stages.load_stage(Run.at(directory)).fingerprint
  return _FINGERPRINTS[name]


def by_fingerprint(file_fingerprint):
  """The name of the shipped model whose .saic files carry this fingerprint (4 bytes), or
  None."""
  return next((n for n in names() if fingerprint(n) == file_fingerprint), None)


def check_name(name):
  """The directory of the shipped model `name`, or a UserError listing the names."""
  if name not in names():
    raise UserError(f"{name}: not a shipped model (bin/models lists them: "
                    f"{', '.join(names()) or 'none in this checkout'})")
  return layout.zoo_dir(name)
