"""bin/ablate: the codec recipe's ablation, PSNR on held-out images per CPU-hour.

Every variant trains a TDIC codec at --bpp for the same CPU budget (this process's CPU time,
all cores: --cpu_minutes) on Imagenette's training split less its validation split (every
--holdout_every-th image, never trained on), and is scored on that validation split through
real .saic files (headers included) at 96×96 (the reproduction's STL-10 setting) and at
224×224. How many steps fit the budget is measured first on a short calibration run of the
variant (not counted), so that a decaying schedule ends where the budget does; the CPU time
reported is the one the scored run measured (layout.TRAINING_TIME_FILE).

Each variant's gain over the first is the mean of the per-image PSNR differences on the same
held-out images, with a 95 % interval (normal approximation of the paired mean). One seed: the
interval covers the images, not a second training run, whose noise it does not include.
"""
import dataclasses
import os

import numpy as np

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_bytes, write_json
from saic_tf.deploy.file_codec import FileCodec
from saic_tf.experiments import model_zoo
from saic_tf.training import trainer

# Each variant changes the one before it (the first is the reproduction's recipe).
VARIANTS = {
    "reproduction": dict(image_size=96, filters=32),
    "crops48": dict(image_size=96, filters=32, crop_size=48),
    "crops48_bf16": dict(image_size=96, filters=32, crop_size=48,
                         mixed_precision="mixed_bfloat16"),
    "filters64": dict(image_size=96, filters=64, crop_size=48,
                      mixed_precision="mixed_bfloat16"),
    "cosine": dict(image_size=96, filters=64, crop_size=48, mixed_precision="mixed_bfloat16",
                   lr_schedule="cosine"),
    "multiscale224": dict(image_size=224, filters=64, crop_size=48, crop_scale_min=0.43,
                          mixed_precision="mixed_bfloat16", lr_schedule="cosine"),
}
CALIBRATION_STEPS = 300


@dataclasses.dataclass
class AblationSettings:
  dataset: str = "imagefolder"
  data_dir: str = os.path.join("..", "shared", "data", "imagenette2-224")
  bpp: float = 0.5
  cpu_minutes: float = 14.0
  holdout_every: int = 17
  batch_size: int = 32
  learning_rate: float = 1e-3
  score_sizes: tuple = (96, 224)
  root: str = os.path.join("runs", "ablation")


def _config(settings: AblationSettings, name, overrides, steps, calibration=False):
  part = "calibration" if calibration else "runs"
  config = TrainConfig(
      model_dir=os.path.join(settings.root, part, name), dataset=settings.dataset,
      data_dir=settings.data_dir, loss="tdic", bpp=settings.bpp, batch_size=settings.batch_size,
      learning_rate=settings.learning_rate, holdout_every=settings.holdout_every, steps=steps,
      checkpoint_every=max(1, steps // (3 if calibration else 10)),
      log_every=max(1, steps // 10), image_every=steps, cache=True, seed=0)
  config = dataclasses.replace(config, **overrides)
  if config.lr_schedule != "constant":
    config = dataclasses.replace(config, warmup_steps=min(1000, steps // 20))
  return config


def _training_time(model_dir):
  return read_json(os.path.join(layout.stage_dir(model_dir, "tdic"), layout.TRAINING_TIME_FILE),
                   "train the variant again")


def cpu_seconds_per_step(model_dir):
  """CPU seconds per step of a run, between its first and last checkpoints (past the tracing
  and warm-up of the first interval)."""
  history = _training_time(model_dir)["history"]
  (first_step, first_cpu, _), (last_step, last_cpu, _) = history[0], history[-1]
  if last_step == first_step:
    return last_cpu / last_step
  return (last_cpu - first_cpu) / (last_step - first_step)


def run_variant(settings: AblationSettings, name, overrides, log=print):
  """Calibrates, trains (or resumes) and scores one variant; returns its row."""
  calibration = _config(settings, name, overrides, CALIBRATION_STEPS, calibration=True)
  trainer.train(calibration)
  per_step = cpu_seconds_per_step(calibration.model_dir)
  steps = int(60 * settings.cpu_minutes / per_step)
  if steps < CALIBRATION_STEPS:
    raise UserError(f"--cpu_minutes={settings.cpu_minutes:g}: {name} takes {per_step:.3f} CPU "
                    f"s a step, so the budget gives {steps} steps, fewer than the "
                    f"{CALIBRATION_STEPS} of its calibration")
  log(f"{name}: {per_step:.3f} CPU s/step -> {steps} steps in {settings.cpu_minutes:g} CPU min")
  config = _config(settings, name, overrides, steps)
  trainer.train(config)
  codec = FileCodec(config.model_dir)
  row = dict(variant=name, settings=overrides, steps=steps, cpu_seconds_per_step=per_step,
             cpu_hours=_training_time(config.model_dir)["cpu_seconds"] / 3600)
  for size in settings.score_sizes:
    images = model_zoo.resized_split(settings.dataset, "validation", settings.data_dir, size,
                                     holdout_every=settings.holdout_every)
    row[f"validation{size}"] = model_zoo.measure_images(codec, images, per_image=True)
  log(f"{name}: {row}")
  return row


def run(settings: AblationSettings, names=None, variants=None, log=print):
  """Every variant (or those named) in turn; returns the record `markdown` renders."""
  variants = variants or VARIANTS
  rows = [run_variant(settings, name, variants[name], log)
          for name in (names or list(variants))]
  return dict(settings=dataclasses.asdict(settings), rows=rows)


def paired_gain(row, first, key):
  """(mean, half-width of the 95 % interval) of row's per-image PSNR minus first's on `key`."""
  difference = (np.array(row[key]["psnr_per_image"]) -
                np.array(first[key]["psnr_per_image"]))
  if len(difference) < 2:
    return float(difference.mean()), float("nan")
  return (float(difference.mean()),
          float(1.96 * difference.std(ddof=1) / np.sqrt(len(difference))))


def markdown(record):
  """The ablation's table (docs/recipe.md)."""
  s = record["settings"]
  sizes = s["score_sizes"]
  lines = ["# The codec recipe: an ablation", "",
           "Written by `bin/ablate` (`saic_tf/experiments/recipe.py`, whose module doc says how "
           "it measures). Every variant trained TDIC at "
           f"{s['bpp']:g} bpp for {s['cpu_minutes']:g} CPU minutes on {s['dataset']} "
           f"`{s['data_dir']}` (training split less every {s['holdout_every']}-th image) and was "
           "scored on those held-out images through real `.saic` files. One seed each: at the "
           "same CPU budget, a higher PSNR is more quality per CPU-hour.", "",
           "| variant | settings | steps | CPU h | " + " | ".join(
               f"PSNR {n}×{n} (dB) | bpp {n}×{n}" for n in sizes) +
           " | " + " | ".join(f"PSNR {n}×{n} vs the first (dB, 95 % CI)" for n in sizes) + " |",
           "|---" * (4 + 3 * len(sizes)) + "|"]
  first = record["rows"][0]
  for row in record["rows"]:
    cells = [row["variant"], ", ".join(f"{k}={v}" for k, v in row["settings"].items()),
             str(row["steps"]), f"{row['cpu_hours']:.3f}"]
    for n in sizes:
      cells += [f"{row[f'validation{n}']['psnr']:.2f}", f"{row[f'validation{n}']['bpp']:.3f}"]
    for n in sizes:
      gain, half = paired_gain(row, first, f"validation{n}")
      cells.append(f"{gain:+.2f} ± {half:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines + [""])


def write(record, out):
  """`out` (Markdown) and the JSON record beside it; returns both paths."""
  return [write_bytes(out, markdown(record).encode()),
          write_json(os.path.splitext(out)[0] + ".json", record)]
