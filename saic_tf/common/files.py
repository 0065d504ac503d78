"""Artifacts on disk (config.json, gsw.json, .saic files, ...): atomic writes, one-line errors."""
import json
import os

from saic_tf.common.errors import UserError


def write_bytes(path, content, overwrite=True):
  """Writes to a temporary file, then renames: a kill mid-write never leaves a half file.
  With `overwrite` False, an existing `path` raises FileExistsError and is left as it is (the
  temporary file is linked to `path`, which fails if it exists, even if another process made
  it a moment ago)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"  # two processes writing the same file do not share it
  with open(tmp, "wb") as f:
    f.write(content)
  if overwrite:
    os.replace(tmp, path)
    return path
  try:
    os.link(tmp, path)
  finally:
    os.remove(tmp)
  return path


def copy_file(source, target):
  """Copies `source` to `target` atomically (write_bytes)."""
  with open(source, "rb") as f:
    return write_bytes(target, f.read())


def write_json(path, record):
  """A JSON record, written atomically (write_bytes)."""
  return write_bytes(path, json.dumps(record, indent=1).encode())


def read_json(path, remedy):
  """The record in `path`; a UserError naming the file (and `remedy`) if it is unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(f"{path}: missing; {remedy}") from None
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: unreadable ({e}); {remedy}") from None
