"""Every setting of a training run, saved as MODEL_DIR/config.json and checked on resume."""
import dataclasses
import os
from typing import Optional

from saic_tf.common import formats
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
ON_NONFINITE = ("stop", "skip")
LOSSES = ("tdic", "apic", "saic", "kd")
LR_SCHEDULES = ("constant", "cosine", "step")
GSW_VARIANTS = ("paper", "magnitude", "label", "fisher")  # semantic/gsw.py
GSW_SETTINGS = ("gsw", "gsw_scale", "gsw_batches", "gsw_output")
GSW_SCALES = ("mean_abs", "raw")


def setting(default, help, *, choices=None, lower_bound=None, flag=True):  # pylint: disable=redefined-builtin
  """A TrainConfig field with what bin/train's flag says of it: its help text, its choices
  (an enum flag; cli.py adds those that live in later packages: datasets, backbones,
  strategies), its lower bound; `flag=False`: recorded by bin/train, never a flag. cli.py
  makes the absl flags from these, so each setting is described here once."""
  return dataclasses.field(default=default, metadata=dict(
      help=help, choices=choices, lower_bound=lower_bound, flag=flag))


@dataclasses.dataclass
class TrainConfig:
  """Defaults are the paper's (batch 32, lr 1e-5, 0.125 bpp at stride 8, fixed seed), but for
  GSW's variant and scale, chosen on a validation split (docs/training.md, GSW). Each field is
  a flag of bin/train (`bin/train --help`)."""
  model_dir: str = setting("", "Directory of the run: config.json, checkpoints of each stage, "
                           "TensorBoard logs.")
  dataset: str = setting(
      "sample", "sample / sample_cifar10: the real images shipped in the package; "
      "imagefolder: --data_dir=ROOT with ROOT/{train,val|test}/CLASS/*.jpg|png; stl10, "
      "cifar10, imagenette, imagenet2012: tensorflow-datasets (stl10 also reads the original "
      "stl10_binary/ files in --data_dir).")
  data_dir: str = setting("", "Root of an image folder, or tfds' data directory, or a folder "
                          "holding stl10_binary/.")
  image_size: int = setting(96, "Images are resized to this square size (96: STL-10's size).",
                            lower_bound=1)
  holdout_every: int = setting(
      0, "Every N-th image of the training split (by class, then file name) is held out of "
      "training as the validation split (bin/evaluate --split=validation), to choose settings on "
      "(0: none; not for streamed tfds datasets).", lower_bound=0)
  crop_size: int = setting(
      0, "TDIC trains on random crops of this side, a multiple of --stride (0: whole images); "
      "the APIC/SAIC fine-tune and evaluation see whole images.", lower_bound=0)
  crop_scale_min: float = setting(
      1.0, "With --crop_size: before the crop, each training image (at --image_size) is "
      "scaled by a random factor in [this, 1], so one codec sees several scales.")
  loss: Optional[str] = setting(
      None, "Objective of the last stage: tdic = pixel MSE only (Eq. 5); apic = TDIC then "
      "feature MSE with uniform channel weights; saic = TDIC then feature MSE weighted by GSW "
      "(Eq. 10); kd = TDIC then KL(p(x) ‖ p(x')) of the downstream network's outputs, the "
      "output-level reference. Default: saic when --tau is given, else tdic.", choices=LOSSES)
  tau: Optional[float] = setting(
      None, "GSW temperature τ in W' = r·softmax(τŴ) (Eq. 4; Ŵ: W scaled by --gsw_scale); "
      "giving it selects --loss=saic.")
  r: Optional[float] = setting(
      None, "GSW scale r in W' = r·softmax(τŴ) (Eq. 4). Default: K, the number of feature "
      "channels, so uniform weights are all 1 (APIC).")
  backbone: str = setting("resnet18", "Downstream network (resnet18 is built here; the others "
                          "are keras.applications).")
  backbone_weights: str = setting(
      "none", "none: train the downstream classifier from scratch on the dataset; imagenet: "
      "Keras' pre-trained weights (needs the network); PATH: a local weights file.")
  feature_layer: str = setting(
      "", "Layer that splits the downstream network into F (features f_1..f_K) and the head. "
      "Default: the backbone's last block (see saic_tf/semantic/backbones.py); with "
      "--downstream_model, the input of its last global pooling layer.")
  # The user's own frozen classifier instead of backbone + a trained head (semantic/own_model.py).
  downstream_model: str = setting(
      "", "Your own classifier as the frozen downstream network, instead of --backbone and a "
      "trained head: a Keras model file (.keras or .h5), never retrained, split at "
      "--feature_layer (default: the input of its last global pooling layer); or a shipped "
      "classifier's name (bin/models); or, for --loss=kd only, a TF SavedModel directory whose "
      "serving signature returns class scores.")
  downstream_input: str = setting(
      "unit", "What --downstream_model expects: unit [0, 1], byte [0, 255], symmetric "
      "[-1, 1], or Keras Applications' caffe or torch preprocessing. Its input size is taken "
      "from the model when the model fixes it.", choices=DOWNSTREAM_INPUTS)
  downstream_sha256: str = setting("", "The SHA-256 of --downstream_model's file.", flag=False)
  # The defaults of --gsw and --gsw_scale are the ones chosen on the validation split
  # (results/gsw/selection.md), not the paper's.
  gsw: str = setting(
      "magnitude", "GSW variant, what W measures (saic_tf/semantic/gsw.py, docs/training.md): "
      "paper (Eq. 2-3 on logits), magnitude, label or fisher. The default is the one chosen "
      "on the validation split (results/gsw/selection.md).", choices=GSW_VARIANTS)
  gsw_scale: str = setting(
      "mean_abs", "W before Eq. 4: raw (the paper's scale) or mean_abs (W / mean |W|, so that "
      "one --tau means the same for every backbone, layer and variant; the paper's tau=400 is "
      "on the raw scale).", choices=GSW_SCALES)
  gsw_batches: int = setting(10, "Training batches GSW's W is averaged over.", lower_bound=1)
  # A string, not an enum, so that probs gets validate()'s reason rather than absl's list.
  gsw_output: str = setting("logits", "Outputs of --gsw=paper: logits (probs is refused: its "
                            "class mean is 0, docs/training.md).")
  kd_feature_weight: float = setting(
      0.0, "--loss=kd: adds this times APIC's feature loss to the KL (rows KD+w·APIC; "
      "bin/gsw_study and bin/reproduce choose it on the validation split).")
  downstream_epochs: int = setting(15, "Epochs of training the downstream classifier (AdamW, "
                                   "cosine decay, random crop and flip).", lower_bound=1)
  downstream_learning_rate: float = setting(2e-3, "Peak learning rate of the downstream "
                                            "classifier.")
  downstream_weight_decay: float = setting(0.05, "AdamW weight decay of the downstream "
                                           "classifier.")
  bpp: float = setting(0.125, "Nominal rate: C = bpp·stride² binary latent channels; must give "
                       "a whole C (0.125, 0.25, 0.5 at stride 8).")
  stride: int = setting(8, "Total stride s of the codec, a power of 2.")
  filters: int = setting(96, "Width of the codec's convolutions.", lower_bound=1)
  steps: int = setting(300_000, "Total TDIC steps (stage 1; a resumed run stops here too).",
                       lower_bound=1)
  finetune_steps: int = setting(20_000, "Total APIC/SAIC fine-tune steps (stage 2).",
                                lower_bound=1)
  batch_size: int = setting(32, "Global batch size.", lower_bound=1)
  learning_rate: float = setting(1e-5, "Adam learning rate (TDIC, and the fine-tune unless "
                                 "--finetune_learning_rate is given).")
  finetune_learning_rate: Optional[float] = setting(
      None, "Adam learning rate of the APIC/SAIC fine-tune. Default: --learning_rate (the "
      "paper uses 1e-5 for both; the demo fine-tunes at 1e-4: at 1e-3 the feature loss wrecks "
      "the reconstruction).")
  lr_schedule: str = setting(
      "constant", "Learning rate of each codec stage after the warm-up: constant; cosine (down "
      "to 1 % of the peak at the last step); step (x0.1 for the last quarter of the steps). "
      "A function of the step, so a resumed stage follows the same curve.",
      choices=LR_SCHEDULES)
  warmup_steps: int = setting(0, "Linear learning-rate warm-up of each codec stage, in steps.",
                              lower_bound=0)
  init_from: str = setting(
      "", "MODEL_DIR of another run whose TDIC stage (and downstream network, if it has one) "
      "this apic/saic run reuses, so that TDIC, APIC and SAIC compare on the same base; or a "
      "shipped codec's name (bin/models), whose codec settings it takes.")
  downstream_from: str = setting(
      "", "MODEL_DIR of another run (same dataset, image size, backbone, feature layer) whose "
      "trained downstream network this apic/saic run uses instead of training its own, e.g. "
      "to compare several rates on one classifier. With --init_from only when that base is a "
      "codec alone (a shipped codec, a --loss=tdic run).")
  seed: int = setting(0, "Seed of weights, data order and augmentation.")
  deterministic: bool = setting(True, "Enable TensorFlow op determinism (same seed, same "
                                "weights).")
  checkpoint_every: int = setting(1000, "Save a checkpoint every this many steps.",
                                  lower_bound=1)
  log_every: int = setting(100, "Print progress and write TensorBoard scalars every this many "
                           "steps.", lower_bound=1)
  image_every: int = setting(1000, "Write original|reconstruction images to TensorBoard every "
                             "this many steps.", lower_bound=1)
  strategy: str = setting(
      "mirrored", "mirrored: all local GPUs (or the CPU); multi_worker: "
      "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG; one_device: one GPU or the "
      "CPU.")
  mixed_precision: str = setting(
      "none", "Keras mixed-precision policy of the codec and downstream network "
      "(mixed_float16 uses dynamic loss scaling; for GPUs; mixed_bfloat16 for CPUs/TPUs with "
      "bfloat16 units). Outputs, latents and losses stay float32.", choices=MIXED_PRECISION)
  jit: bool = setting(False, "Compile the train steps with XLA (jit_compile).")
  steps_per_execution: int = setting(1, "Train steps run per tf.function call (fewer Python "
                                     "round trips).", lower_bound=1)
  on_nonfinite: str = setting(
      "stop", "At a NaN or infinite loss: stop without saving (the last good checkpoint "
      "stays), or skip the checkpoint interval (back to the last checkpoint, go on).",
      choices=ON_NONFINITE)
  cache: bool = setting(False, "Decode and resize the training images once and keep them in "
                        "memory (float32: N·size²·12 bytes).")

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
    if self.on_nonfinite not in ON_NONFINITE:
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

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    """The settings of a config.json record in today's format (formats.upgrade); its other
    keys (format_version) are no setting."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})

  @classmethod
  def read(cls, model_dir):
    path = layout.config_path(model_dir)
    return cls.from_dict(formats.read("config", path, f"is {model_dir} a saic-tf run "
                                      "directory?"))

  def write(self, model_dir=None):
    """Writes config.json, in today's format (formats.py), into `model_dir` (default the
    run's own)."""
    return write_json(layout.config_path(model_dir or self.model_dir),
                      formats.stamped(self.to_dict()))

  def write_or_check(self, write=True):
    """Writes MODEL_DIR/config.json, or checks this run against the one already there (only
    checks when `write` is False: a worker other than the chief)."""
    path = layout.config_path(self.model_dir)
    if os.path.exists(path):
      record = read_json(path, "move it away to start a new run")
      saved = formats.upgrade("config", record, path)
      now = self.to_dict()  # format_version is no setting: never compared
      # GSW settings mean nothing to a run that is not SAIC (a version-1 config.json of one may
      # say --gsw_output=probs, since refused: formats.py).
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
        # A version-1 run of the earlier defaults (formats.py): its own settings, which resume
        # it, are every changed one (a paper flagfile's τ changed with the defaults too).
        earlier = any(k in changed and saved[k] == v and now[k] == getattr(TrainConfig, k)
                      for k, v in formats.earlier_defaults(record, path).items())
        own = " ".join(f"--{k}={saved[k]}" for k in changed)
        hint = f" (a run made with the earlier defaults: add {own})" if earlier else ""
        raise UserError(f"{path} was written by a different run "
                        f"({differences(saved, now, changed)}): use the same flags to "
                        f"resume{hint}, or another --model_dir")
    if write:
      self.write()


def differences(there, now, keys):
  """The settings among `keys` whose values differ between two records (dicts of flag values),
  as one "--k=<there> there, <now> now; ..." string, empty when they agree: the one wording of
  every "made with other settings" error (config.json, gsw.json, --init_from runs)."""
  return "; ".join(f"--{k}={there.get(k)!r} there, {now.get(k)!r} now"
                   for k in keys if there.get(k) != now.get(k))
