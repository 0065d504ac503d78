"""Every setting of a training run, saved as MODEL_DIR/config.json and checked on resume."""
import dataclasses
import json
import os
from typing import Optional

from saic_tf.errors import UserError

CONFIG_FILE = "config.json"
# Settings that may change between a run and its resumption; any other difference is refused,
# since it would silently mix two different experiments in one MODEL_DIR.
RESUMABLE_CHANGES = frozenset(
    {"steps", "model_dir", "data_dir", "checkpoint_every", "log_every", "image_every"})


@dataclasses.dataclass
class TrainConfig:
  """Defaults are the paper's (batch 32, lr 1e-5, 0.125 bpp at stride 8, fixed seed)."""
  model_dir: str = ""
  dataset: str = "sample"
  data_dir: str = ""
  image_size: int = 96
  loss: str = "tdic"
  tau: Optional[float] = None
  r: Optional[float] = None
  backbone: str = "resnet18"
  bpp: float = 0.125
  stride: int = 8
  filters: int = 96
  steps: int = 300_000
  batch_size: int = 32
  learning_rate: float = 1e-5
  init_from: str = ""
  seed: int = 0
  deterministic: bool = True
  checkpoint_every: int = 1000
  log_every: int = 100
  image_every: int = 1000

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})

  def write_or_check(self):
    """Writes MODEL_DIR/config.json, or checks this run against the one already there."""
    path = os.path.join(self.model_dir, CONFIG_FILE)
    if os.path.exists(path):
      try:
        with open(path) as f:
          saved = json.load(f)
      except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); move it away to start a new run") from None
      differences = [
          f"--{k}={saved.get(k)!r} there, {v!r} now" for k, v in self.to_dict().items()
          if k not in RESUMABLE_CHANGES and k in saved and saved[k] != v]
      if differences:
        raise UserError(f"{path} was written by a different run ({'; '.join(differences)}): "
                        "use the same flags to resume, or another --model_dir")
    os.makedirs(self.model_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.to_dict(), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
