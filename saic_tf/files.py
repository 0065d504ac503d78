"""Small JSON artifacts (config.json, gsw.json, downstream.json): atomic writes, one-line errors."""
import json
import os

from saic_tf.errors import UserError


def write_json(path, record):
  """Writes to a temporary file, then renames: a kill mid-write never leaves a half file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, path)
  return path


def read_json(path, remedy):
  """The record in `path`; a UserError naming the file (and `remedy`) if it is unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"{path}: missing; {remedy}") from None
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: unreadable ({e}); {remedy}") from None
