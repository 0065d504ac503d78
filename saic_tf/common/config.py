"""Every setting of a training run, saved as MODEL_DIR/config.json and checked on resume."""
import dataclasses
import os
from typing import Optional

from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_json

# Settings that may change between a run and its resumption; any other difference is refused,
# since it would silently mix two different experiments in one MODEL_DIR.
# --downstream_model's path may move: its SHA-256 (downstream_sha256) says whether it changed.
RESUMABLE_CHANGES = frozenset({"steps", "finetune_steps", "model_dir", "data_dir",
                               "downstream_model",
                               "checkpoint_every", "log_every", "image_every", "strategy",
                               "jit", "steps_per_execution", "on_nonfinite", "cache"})
DOWNSTREAM_INPUTS = ("unit", "byte", "symmetric", "caffe", "torch")  # semantic/own_model.py
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
LOSSES = ("tdic", "apic", "saic", "kd")
LR_SCHEDULES = ("constant", "cosine", "step")
GSW_VARIANTS = ("paper", "magnitude", "label", "fisher")  # semantic/gsw.py
GSW_SETTINGS = ("gsw", "gsw_scale", "gsw_batches", "gsw_output")
GSW_SCALES = ("mean_abs", "raw")
# What a config.json (or gsw.json) written before a setting existed meant by it: the settings
# had these values then.
OLD_MEANINGS = dict(gsw="paper", gsw_scale="raw", holdout_every=0)
# Defaults that changed, with their earlier values: a run made with those resumes only with
# them given as flags, which the refusal says.
EARLIER_DEFAULTS = dict(gsw="paper", gsw_scale="raw")  # until GSW was chosen on validation


@dataclasses.dataclass
class TrainConfig:
  """Defaults are the paper's (batch 32, lr 1e-5, 0.125 bpp at stride 8, fixed seed), but for
  GSW's variant and scale, chosen on a validation split (docs/training.md, GSW)."""
  model_dir: str = ""
  dataset: str = "sample"
  data_dir: str = ""
  image_size: int = 96
  holdout_every: int = 0  # every N-th training image is the validation split, not trained on
  crop_size: int = 0  # TDIC trains on random crops of this side (0: whole images)
  crop_scale_min: float = 1.0  # before the crop, images are scaled by a factor in [this, 1]
  loss: Optional[str] = None  # None: saic when tau is given, else tdic
  tau: Optional[float] = None
  r: Optional[float] = None  # None: K, the number of feature channels
  backbone: str = "resnet18"
  backbone_weights: str = "none"
  feature_layer: str = ""  # "": the backbone's default (saic_tf/semantic/backbones.py)
  # The user's own frozen classifier instead of backbone + a trained head: a Keras model file,
  # a shipped classifier's name, or (--loss=kd) a SavedModel; what input it expects; and its
  # SHA-256, set by bin/train, never a flag (semantic/own_model.py).
  downstream_model: str = ""
  downstream_input: str = "unit"
  downstream_sha256: str = ""
  # The GSW variant (semantic/gsw.py) and W's scale before Eq. 4 (raw, the paper's, or divided
  # by its mean |W|): the defaults are the ones chosen on the validation split
  # (results/gsw/selection.md), not the paper's.
  gsw: str = "magnitude"
  gsw_scale: str = "mean_abs"
  gsw_batches: int = 10
  gsw_output: str = "logits"  # of --gsw=paper; probs is refused (validate)
  kd_feature_weight: float = 0.0  # --loss=kd: KL plus this times APIC's feature loss
  downstream_epochs: int = 15
  downstream_learning_rate: float = 2e-3
  downstream_weight_decay: float = 0.05
  bpp: float = 0.125
  stride: int = 8
  filters: int = 96
  steps: int = 300_000
  finetune_steps: int = 20_000
  batch_size: int = 32
  learning_rate: float = 1e-5
  finetune_learning_rate: Optional[float] = None  # None: --learning_rate
  lr_schedule: str = "constant"  # of each codec stage (training/schedules.py)
  warmup_steps: int = 0
  init_from: str = ""
  downstream_from: str = ""
  seed: int = 0
  deterministic: bool = True
  checkpoint_every: int = 1000
  log_every: int = 100
  image_every: int = 1000
  strategy: str = "mirrored"
  mixed_precision: str = "none"
  jit: bool = False
  steps_per_execution: int = 1
  on_nonfinite: str = "stop"
  cache: bool = False

  @property
  def semantic(self):
    """True for apic/saic: the run needs the downstream network and a fine-tune stage."""
    return self.resolved_loss != "tdic"

  @property
  def resolved_loss(self):
    return self.loss or ("saic" if self.tau is not None else "tdic")

  def validate(self):
    """One-line errors for settings that contradict each other."""
    loss = self.resolved_loss
    if loss not in LOSSES:
      raise UserError(f"--loss={loss}: must be one of {', '.join(LOSSES)}")
    if loss == "saic" and self.tau is None:
      raise UserError("--loss=saic needs --tau (GSW temperature, e.g. --tau=8)")
    if loss != "saic" and (self.tau is not None or self.r is not None):
      raise UserError(f"--tau and --r are GSW settings, used by --loss=saic only, not "
                      f"--loss={loss}")
    if self.gsw not in GSW_VARIANTS:
      raise UserError(f"--gsw={self.gsw}: must be one of {', '.join(GSW_VARIANTS)}")
    if self.gsw_scale not in GSW_SCALES:
      raise UserError(f"--gsw_scale={self.gsw_scale}: must be one of {', '.join(GSW_SCALES)}")
    if self.gsw_output != "logits":
      raise UserError(f"--gsw_output={self.gsw_output}: refused, since on softmax "
                      "probabilities Eq. 2-3's class mean is 0 exactly (Σ_c p_c = 1), so W' "
                      "would be uniform and SAIC would train as APIC; drop the flag (logits), "
                      "or use --gsw=magnitude, label or fisher")
    if self.kd_feature_weight < 0 or (self.kd_feature_weight and loss != "kd"):
      raise UserError(f"--kd_feature_weight={self.kd_feature_weight:g}: a weight >= 0 of "
                      "--loss=kd only")
    if self.tau is not None and self.tau <= 0:
      raise UserError(f"--tau={self.tau:g}: must be > 0")
    if self.r is not None and self.r <= 0:
      raise UserError(f"--r={self.r:g}: must be > 0")
    if self.finetune_learning_rate is not None and self.finetune_learning_rate <= 0:
      raise UserError(f"--finetune_learning_rate={self.finetune_learning_rate:g}: must be > 0")
    if self.mixed_precision not in MIXED_PRECISION:
      raise UserError(f"--mixed_precision={self.mixed_precision}: must be one of "
                      f"{', '.join(MIXED_PRECISION)}")
    if self.on_nonfinite not in ("stop", "skip"):
      raise UserError(f"--on_nonfinite={self.on_nonfinite}: must be stop or skip")
    if self.holdout_every < 0 or self.holdout_every == 1:
      raise UserError(f"--holdout_every={self.holdout_every}: must be 0 (no validation split) "
                      "or >= 2")
    if self.crop_size < 0 or (self.crop_size and self.stride > 0 and
                              self.crop_size % self.stride):
      raise UserError(f"--crop_size={self.crop_size}: must be 0 (whole images) or a positive "
                      f"multiple of --stride={self.stride}")
    if self.crop_size > self.image_size:
      raise UserError(f"--crop_size={self.crop_size}: larger than --image_size="
                      f"{self.image_size}")
    if not 0 < self.crop_scale_min <= 1:
      raise UserError(f"--crop_scale_min={self.crop_scale_min:g}: must be in (0, 1]")
    if self.crop_scale_min < 1 and not self.crop_size:
      raise UserError("--crop_scale_min scales images before a random crop: it needs "
                      "--crop_size")
    if self.lr_schedule not in LR_SCHEDULES:
      raise UserError(f"--lr_schedule={self.lr_schedule}: must be one of "
                      f"{', '.join(LR_SCHEDULES)}")
    if self.warmup_steps < 0:
      raise UserError(f"--warmup_steps={self.warmup_steps}: must be >= 0")
    if self.steps_per_execution < 1:
      raise UserError(f"--steps_per_execution={self.steps_per_execution}: must be >= 1")
    if self.downstream_input not in DOWNSTREAM_INPUTS:
      raise UserError(f"--downstream_input={self.downstream_input}: must be one of "
                      f"{', '.join(DOWNSTREAM_INPUTS)}")
    if self.downstream_model and not self.semantic:
      raise UserError("--downstream_model is the frozen network of an apic/saic/kd run; with "
                      "--loss=tdic there is none")
    if self.downstream_model and self.downstream_from:
      raise UserError("--downstream_model and --downstream_from both name the downstream "
                      "network: give one of them")
    if self.downstream_from and not self.semantic:
      raise UserError("--downstream_from reuses another run's downstream network for an "
                      "apic/saic/kd run; not with --loss=tdic")
    if self.init_from and not self.semantic:
      raise UserError("--init_from reuses another run's TDIC stage (a run, or a shipped codec "
                      "such as tdic-0.25) for an apic/saic fine-tune; with --loss=tdic there "
                      "is nothing to reuse")
    return self

  def downstream_run(self):
    """MODEL_DIR of the run whose downstream network this run uses: --downstream_from, else
    (following --init_from) the base run's if it has one (a TDIC run or a shipped codec has
    none), else this run's own."""
    if self.downstream_from:
      return self.downstream_from
    if self.downstream_model:  # the user's own model: this run's, whatever its base
      return self.model_dir
    if self.init_from:
      base = TrainConfig.read(layout.run_dir(self.init_from))
      if base.semantic:
        return base.downstream_run()
    return self.model_dir

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    """A saved config.json's settings; one written before a setting existed meant OLD_MEANINGS'
    value by it, not today's default."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**dict(OLD_MEANINGS, **{k: v for k, v in values.items() if k in known}))

  @classmethod
  def read(cls, model_dir):
    path = layout.config_path(model_dir)
    return cls.from_dict(read_json(path, f"is {model_dir} a saic-tf run directory?"))

  def write_or_check(self, write=True):
    """Writes MODEL_DIR/config.json, or checks this run against the one already there (only
    checks when `write` is False: a worker other than the chief)."""
    path = layout.config_path(self.model_dir)
    if os.path.exists(path):
      saved = dict(OLD_MEANINGS, **read_json(path, "move it away to start a new run"))
      now = self.to_dict()
      # GSW settings mean nothing to a run that is not SAIC (runs of earlier versions saved
      # --gsw_output=probs, since refused, whatever their loss).
      unused = GSW_SETTINGS if self.resolved_loss != "saic" else ()
      keys = [k for k in now if k not in RESUMABLE_CHANGES and k not in unused and k in saved]
      changed = [k for k in keys if saved.get(k) != now.get(k)]
      if "downstream_sha256" in changed and saved.get("downstream_sha256"):
        raise UserError(f"--downstream_model={self.downstream_model}: the file changed since "
                        f"{self.model_dir} was started with it (SHA-256 "
                        f"{saved['downstream_sha256'][:12]}... there, "
                        f"{(self.downstream_sha256 or '')[:12]}... now): put the original "
                        "back, or use another --model_dir")
      if changed:
        # A run of the earlier defaults: its own settings, which resume it, are every changed
        # one (a paper flagfile's τ changed with the defaults too).
        earlier = any(k in changed and saved[k] == v and now[k] == getattr(TrainConfig, k)
                      for k, v in EARLIER_DEFAULTS.items())
        own = " ".join(f"--{k}={saved[k]}" for k in changed)
        hint = f" (a run made with the earlier defaults: add {own})" if earlier else ""
        raise UserError(f"{path} was written by a different run "
                        f"({differences(saved, now, changed)}): use the same flags to "
                        f"resume{hint}, or another --model_dir")
    if write:
      os.makedirs(self.model_dir, exist_ok=True)
      write_json(path, self.to_dict())


def differences(there, now, keys):
  """The settings among `keys` whose values differ between two records (dicts of flag values),
  as one "--k=<there> there, <now> now; ..." string, empty when they agree: the one wording of
  every "made with other settings" error (config.json, gsw.json, --init_from runs)."""
  return "; ".join(f"--{k}={there.get(k)!r} there, {now.get(k)!r} now"
                   for k in keys if there.get(k) != now.get(k))
