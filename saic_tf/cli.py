"""Every absl flag of every bin/ command, and the wrapper that turns a UserError into one
`error:` line. bin/ scripts only choose their flags here, parse, and call the library; the
library never imports this module."""
import dataclasses
import os
import sys

from absl import app
from absl import flags
from absl import logging

from saic_tf.common import distribute
from saic_tf.common import layout
from saic_tf.common.config import (DOWNSTREAM_INPUTS, GSW_SCALES, GSW_VARIANTS, LOSSES,
                                     LR_SCHEDULES, MIXED_PRECISION, TrainConfig)
from saic_tf.common.errors import user_error_inside, UserError
from saic_tf.data import datasets
from saic_tf.data.images import DEFAULT_MAX_PIXELS
from saic_tf.evaluation import baselines
from saic_tf.evaluation import tables
from saic_tf.semantic import backbones

FLAGS = flags.FLAGS
_DEFAULT = TrainConfig()
MEASURE_FILE = "measure.json"  # bin/measure's default --out, in the current directory


def define_train_flags(flag_values=FLAGS):
  """Flags of bin/train; defaults come from TrainConfig (the paper's settings, but for GSW's
  variant and scale, chosen on a validation split)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("model_dir", None, "Directory of the run: config.json, checkpoints of "
                      "each stage, TensorBoard logs.", required=True, **fv)
  flags.DEFINE_enum("dataset", _DEFAULT.dataset, datasets.DATASETS,
                    "sample / sample_cifar10: the real images shipped in the package; "
                    "imagefolder: --data_dir=ROOT with ROOT/{train,val|test}/CLASS/*.jpg|png; "
                    "stl10, cifar10, imagenette, imagenet2012: tensorflow-datasets (stl10 also "
                    "reads the original stl10_binary/ files in --data_dir).", **fv)
  flags.DEFINE_string("data_dir", _DEFAULT.data_dir, "Root of an image folder, or tfds' data "
                      "directory, or a folder holding stl10_binary/.", **fv)
  flags.DEFINE_integer("image_size", _DEFAULT.image_size, "Images are resized to this square "
                       "size (96: STL-10's size).", lower_bound=1, **fv)
  flags.DEFINE_integer("holdout_every", _DEFAULT.holdout_every, "Every N-th image of the "
                       "training split (by class, then file name) is held out of training as "
                       "the validation split, to choose settings on (0: none).", lower_bound=0,
                       **fv)
  flags.DEFINE_integer("crop_size", _DEFAULT.crop_size, "TDIC trains on random crops of "
                       "this side, a multiple of --stride (0: whole images); the APIC/SAIC "
                       "fine-tune and evaluation see whole images.", lower_bound=0, **fv)
  flags.DEFINE_float("crop_scale_min", _DEFAULT.crop_scale_min, "With --crop_size: before "
                     "the crop, each training image (at --image_size) is scaled by a random "
                     "factor in [this, 1], so one codec sees several scales.", **fv)
  flags.DEFINE_enum("loss", _DEFAULT.loss, LOSSES, "Objective of the last stage: tdic = pixel "
                    "MSE only (Eq. 5); apic = TDIC then feature MSE with uniform channel "
                    "weights; saic = TDIC then feature MSE weighted by GSW (Eq. 10); kd = TDIC then "
                    "KL(p(x) ‖ p(x')) of the downstream network's outputs, the output-level "
                    "reference. Default: saic when --tau is given, else tdic.", **fv)
  flags.DEFINE_float("kd_feature_weight", _DEFAULT.kd_feature_weight, "--loss=kd: adds this "
                     "times APIC's feature loss to the KL.", **fv)
  flags.DEFINE_float("tau", _DEFAULT.tau, "GSW temperature τ in W' = r·softmax(τŴ) (Eq. 4; Ŵ: "
                     "W scaled by --gsw_scale); "
                     "giving it selects --loss=saic.", **fv)
  flags.DEFINE_float("r", _DEFAULT.r, "GSW scale r in W' = r·softmax(τŴ) (Eq. 4). Default: "
                     "K, the number of feature channels, so uniform weights are all 1 (APIC).",
                     **fv)
  flags.DEFINE_enum("backbone", _DEFAULT.backbone, backbones.BACKBONES, "Downstream network "
                    "(resnet18 is built here; the others are keras.applications).", **fv)
  flags.DEFINE_string("backbone_weights", _DEFAULT.backbone_weights, "none: train the "
                      "downstream classifier from scratch on the dataset; imagenet: Keras' "
                      "pre-trained weights (needs the network); PATH: a local weights file.",
                      **fv)
  flags.DEFINE_string("feature_layer", _DEFAULT.feature_layer, "Layer that splits the "
                      "downstream network into F (features f_1..f_K) and the head. Default: "
                      "the backbone's last block (see saic_tf/semantic/backbones.py).", **fv)
  flags.DEFINE_string("downstream_model", _DEFAULT.downstream_model, "Your own classifier "
                      "as the frozen downstream network, instead of --backbone and a trained "
                      "head: a Keras model file (.keras or .h5), never retrained, split at "
                      "--feature_layer (default: the input of its last global pooling layer); "
                      "or a shipped classifier's name (bin/models); or, for --loss=kd only, a "
                      "TF SavedModel directory whose serving signature returns class scores.",
                      **fv)
  flags.DEFINE_enum("downstream_input", _DEFAULT.downstream_input, DOWNSTREAM_INPUTS, "What "
                    "--downstream_model expects: unit [0, 1], byte [0, 255], symmetric "
                    "[-1, 1], or Keras Applications' caffe or torch preprocessing. Its input "
                    "size is taken from the model when the model fixes it.", **fv)
  flags.DEFINE_integer("gsw_batches", _DEFAULT.gsw_batches, "Training batches GSW's W is "
                       "averaged over.", lower_bound=1, **fv)
  flags.DEFINE_enum("gsw", _DEFAULT.gsw, GSW_VARIANTS, "GSW variant, what W "
                    "measures (saic_tf/semantic/gsw.py, docs/training.md): paper (Eq. 2-3 on "
                    "logits), magnitude, label or fisher. The default is the one chosen on the "
                    "validation split (results/gsw/selection.md).", **fv)
  flags.DEFINE_enum("gsw_scale", _DEFAULT.gsw_scale, GSW_SCALES, "W before Eq. 4: "
                    "raw (the paper's scale) or mean_abs (W / mean |W|, so that one --tau means "
                    "the same for every backbone, layer and variant; the paper's tau=400 is on the "
                    "raw scale).", **fv)
  flags.DEFINE_string("gsw_output", _DEFAULT.gsw_output, "Outputs of --gsw=paper: logits "
                      "(probs is refused: its class mean is 0, docs/training.md).", **fv)
  flags.DEFINE_integer("downstream_epochs", _DEFAULT.downstream_epochs, "Epochs of training "
                       "the downstream classifier (AdamW, cosine decay).", lower_bound=1, **fv)
  flags.DEFINE_float("downstream_learning_rate", _DEFAULT.downstream_learning_rate, "Peak "
                     "learning rate of the downstream classifier.", **fv)
  flags.DEFINE_float("downstream_weight_decay", _DEFAULT.downstream_weight_decay, "AdamW "
                     "weight decay of the downstream classifier.", **fv)
  flags.DEFINE_float("bpp", _DEFAULT.bpp, "Nominal rate: C = bpp·stride² binary latent "
                     "channels; must give a whole C (0.125, 0.25, 0.5 at stride 8).", **fv)
  flags.DEFINE_integer("stride", _DEFAULT.stride, "Total stride s of the codec, a power of 2.",
                       **fv)
  flags.DEFINE_integer("filters", _DEFAULT.filters, "Width of the codec's convolutions.",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("steps", _DEFAULT.steps, "Total TDIC steps (stage 1; a resumed run "
                       "stops here too).", lower_bound=1, **fv)
  flags.DEFINE_integer("finetune_steps", _DEFAULT.finetune_steps, "Total APIC/SAIC fine-tune "
                       "steps (stage 2).", lower_bound=1, **fv)
  flags.DEFINE_integer("batch_size", _DEFAULT.batch_size, "Global batch size.", lower_bound=1, **fv)
  flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate, "Adam learning rate (TDIC, and "
                     "the fine-tune unless --finetune_learning_rate is given).", **fv)
  flags.DEFINE_float("finetune_learning_rate", _DEFAULT.finetune_learning_rate, "Adam "
                     "learning rate of the APIC/SAIC fine-tune. Default: --learning_rate "
                     "(the paper uses 1e-5 for both).", **fv)
  flags.DEFINE_enum("lr_schedule", _DEFAULT.lr_schedule, LR_SCHEDULES, "Learning rate of "
                    "each codec stage after the warm-up: constant; cosine (down to 1 % of the "
                    "peak at the last step); step (x0.1 for the last quarter of the steps).",
                    **fv)
  flags.DEFINE_integer("warmup_steps", _DEFAULT.warmup_steps, "Linear learning-rate warm-up "
                       "of each codec stage, in steps.", lower_bound=0, **fv)
  flags.DEFINE_string("init_from", _DEFAULT.init_from, "MODEL_DIR of another run whose "
                      "TDIC stage (and downstream network, if it has one) this apic/saic run "
                      "reuses, so that TDIC, APIC and SAIC compare on the same base; or a "
                      "shipped codec's name (bin/models), whose codec settings it takes.", **fv)
  flags.DEFINE_string("downstream_from", _DEFAULT.downstream_from, "MODEL_DIR of another run "
                      "(same dataset, image size, backbone, feature layer) whose trained "
                      "downstream network this apic/saic run uses instead of training its own, "
                      "e.g. to compare several rates on one classifier.", **fv)
  flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed of weights, data order and augmentation.", **fv)
  flags.DEFINE_bool("deterministic", _DEFAULT.deterministic, "Enable TensorFlow op determinism "
                    "(same seed, same weights).", **fv)
  flags.DEFINE_integer("checkpoint_every", _DEFAULT.checkpoint_every, "Save a checkpoint every "
                       "this many steps.", lower_bound=1, **fv)
  flags.DEFINE_integer("log_every", _DEFAULT.log_every, "Print progress and write TensorBoard "
                       "scalars every this many steps.", lower_bound=1, **fv)
  flags.DEFINE_integer("image_every", _DEFAULT.image_every, "Write original|reconstruction "
                       "images to TensorBoard every this many steps.", lower_bound=1, **fv)
  flags.DEFINE_enum("strategy", _DEFAULT.strategy, distribute.STRATEGIES, "mirrored: all local "
                    "GPUs (or the CPU); multi_worker: MultiWorkerMirroredStrategy over the "
                    "cluster in TF_CONFIG; one_device: one GPU or the CPU.", **fv)
  flags.DEFINE_enum("mixed_precision", _DEFAULT.mixed_precision, MIXED_PRECISION, "Keras "
                    "mixed-precision policy of the codec and downstream network (mixed_float16 "
                    "uses dynamic loss scaling; for GPUs; mixed_bfloat16 for CPUs/TPUs with "
                    "bfloat16 units). Outputs, latents and losses stay float32.", **fv)
  flags.DEFINE_bool("jit", _DEFAULT.jit, "Compile the train steps with XLA (jit_compile).",
                    **fv)
  flags.DEFINE_integer("steps_per_execution", _DEFAULT.steps_per_execution, "Train steps run "
                       "per tf.function call (fewer Python round trips).", lower_bound=1, **fv)
  flags.DEFINE_bool("cache", _DEFAULT.cache, "Decode and resize the training images once and "
                    "keep them in memory (float32: N·size²·12 bytes).", **fv)
  flags.DEFINE_enum("on_nonfinite", _DEFAULT.on_nonfinite, ("stop", "skip"), "At a NaN or "
                    "infinite loss: stop without saving (the last good checkpoint stays), or "
                    "skip the checkpoint interval (back to the last checkpoint, go on).", **fv)
  for name in ("learning_rate", "downstream_learning_rate"):
    flags.register_validator(name, lambda v: v > 0, f"--{name} must be > 0", **fv)


def train_config_from_flags(flag_values=FLAGS):
  # Fields that are no flag (downstream_sha256: bin/train records it) keep their defaults.
  names = {f.name for f in dataclasses.fields(TrainConfig)} & set(flag_values)
  return TrainConfig(**{name: flag_values[name].value for name in names})


def train_config_from_flagfile(path):
  """The TrainConfig a flagfile gives (bin/train's defaults for whatever it does not set)."""
  flag_values = flags.FlagValues()
  define_train_flags(flag_values)
  flag_values(["train", f"--flagfile={path}", "--model_dir=unused"])
  return train_config_from_flags(flag_values)


def define_eval_flags(flag_values=FLAGS):
  """Flags of bin/evaluate."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("model_dir", None, "The trained run to evaluate, or a shipped codec's "
                      "name (with --downstream_dir and --out_dir).", required=True, **fv)
  flags.DEFINE_string("out_dir", None, "Where eval.json, eval.md and eval_gallery.npz go. "
                      "Default: MODEL_DIR.", **fv)
  flags.DEFINE_string("dataset", None, "Dataset (default: the run's).", **fv)
  flags.DEFINE_string("data_dir", None, "Its data directory (default: the run's).", **fv)
  flags.DEFINE_enum("split", "test", datasets.SPLITS, "Split to evaluate: test (never tune on "
                    "it), or validation (the run's --holdout_every images).", **fv)
  flags.DEFINE_list("baselines", list(baselines.CODECS), "Pillow codecs evaluated at the "
                    "run's nominal bpp (empty for none).", **fv)
  flags.DEFINE_float("baselines_at", None, "Evaluate Original and --baselines alone at this "
                     "nominal bpp (no learned codec), with MODEL_DIR's classifier, into "
                     "--out_dir: the baselines at other rates than the codec's.", **fv)
  flags.DEFINE_integer("batch_size", 32, "Evaluation batch size.", lower_bound=1, **fv)
  flags.DEFINE_integer("max_images", 0, "Evaluate a fixed random subset of N images "
                       "(0: all).",
                       lower_bound=0, **fv)
  flags.DEFINE_integer("club_train_images", 1000, "Training images whose (y, y') pairs fit "
                       "CLUB's q(y'|y).", lower_bound=1, **fv)
  flags.DEFINE_integer("club_steps", 2000, "Adam steps fitting q(y'|y).", lower_bound=1, **fv)
  flags.DEFINE_string("downstream_dir", None, "Run whose downstream network to use (default: "
                      "this run's, or its --init_from's).", **fv)


def define_quick_eval_flags(flag_values=FLAGS):
  """The evaluation flags of commands that train first (bin/demo, bin/sweep_tau, bin/gsw_study,
  bin/reproduce)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_integer("eval_max_images", 0, "Evaluate on a fixed random subset of N images "
                       "of each split evaluated (0: all).", lower_bound=0, **fv)
  flags.DEFINE_integer("club_steps", 2000, "Adam steps fitting CLUB's q(y'|y).", lower_bound=1,
                       **fv)


def quick_eval_settings_from_flags(flag_values=FLAGS, **overrides):
  from saic_tf.evaluation import club, evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.EvalSettings(max_images=flag_values.eval_max_images,
                               club=club.ClubSettings(steps=flag_values.club_steps),
                               **overrides)


def eval_settings_from_flags(flag_values=FLAGS):
  from saic_tf.evaluation import club, evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.EvalSettings(
      split=flag_values.split, dataset=flag_values.dataset, data_dir=flag_values.data_dir,
      baselines=tuple(b for b in flag_values.baselines if b),
      batch_size=flag_values.batch_size, max_images=flag_values.max_images,
      club_train_images=flag_values.club_train_images,
      club=club.ClubSettings(steps=flag_values.club_steps),
      downstream_dir=flag_values.downstream_dir, out_dir=flag_values.out_dir,
      baselines_at=flag_values.baselines_at)


def define_export_flags(flag_values=FLAGS, after_training=False):
  """Flags of bin/export; with `after_training`, the export flags of bin/train and bin/demo."""
  fv = dict(flag_values=flag_values)
  if after_training:
    flags.DEFINE_bool("export", True, "At the end, export the last stage as bin/export does "
                      "(SavedModel for TF Serving, TFLite decoders and encoders).", **fv)
  else:
    flags.DEFINE_string("model_dir", None, "The trained run to export (or give --model).",
                        **fv)
    flags.DEFINE_string("model", None, "The trained run to export, or a shipped codec's name "
                        "(bin/models lists them, e.g. tdic-0.25).", **fv)
    flags.DEFINE_string("stage", None, "Codec stage to export (tdic, apic, saic); default: "
                        "the run's last.", **fv)
  flags.DEFINE_string("export_dir", None, "Writes EXPORT_DIR/<model_name>/<version>/ (TF "
                      "Serving's layout). Default: MODEL_DIR/export; ./export for a shipped "
                      "codec.", **fv)
  flags.DEFINE_string("model_name", None, "TF Serving model name. Default: MODEL_DIR's "
                      "base name.", **fv)
  flags.DEFINE_integer("version", None, "Version number. Default: the existing version "
                       "if this stage is already exported, else the highest + 1.",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("parity_images", 8, "Real test images for the TFLite parity check.",
                       lower_bound=1, **fv)


def export_model_from_flags(flag_values=FLAGS):
  """bin/export's run: --model_dir or --model (a directory or a shipped codec's name)."""
  if bool(flag_values.model_dir) == bool(flag_values.model):
    raise UserError("bin/export needs one of --model_dir=DIR or --model=DIR|NAME (a shipped "
                    "codec, e.g. tdic-0.25)")
  return flag_values.model_dir or flag_values.model


def export_from_flags(model_dir, flag_values=FLAGS, stage=None):
  """Runs export.export with the export flags and prints where everything went."""
  # pylint: disable=g-import-not-at-top
  from saic_tf.deploy import export, serving, tflite
  shipped = layout.run_dir(model_dir) != model_dir  # a name: nothing is written in the package
  export_dir = flag_values.export_dir or (layout.EXPORT_DIR if shipped else
                                          layout.export_dir(model_dir))
  model_dir = layout.run_dir(model_dir)
  version_dir, parity = export.export(model_dir, export_dir, flag_values.model_name,
                                      flag_values.version, stage, flag_values.parity_images)
  print(f"\nexported to {version_dir}: SavedModel (signatures "
        f"{', '.join(serving.SIGNATURES)}), {', '.join(tflite.FILES)}")
  print("TFLite decoders against the Keras decoder, encoders against the SavedModel's, on real "
        "test images:")
  print("\n".join("  " + line for line in tflite.parity_table(parity)))
  return version_dir


def define_demo_flags(flag_values=FLAGS):
  """Flags of bin/demo (beside bin/train's)."""
  flags.DEFINE_string("demo_codec", "saic-0.125", "The shipped task-aware codec whose gain the "
                      "demo measures first (bin/models lists them).", flag_values=flag_values)


def demo_summary(config, summary, record, report_files):
  """bin/demo's closing lines: the fine-tune's accuracies, then where every output is."""
  model_dir = config.model_dir
  lines = [f"\n2. The path: {summary['stage']} fine-tuned to step {summary['step']} for "
           f"{config.downstream_model or config.backbone}. On {record['num_images']} test "
           f"images at {record['nominal_bpp']:g} bpp (nominal): accuracy " +
           ", ".join(f"{tables.METHOD_NAMES[m]} {100 * r['accuracy']:.1f} %"
                     for m, r in record["rows"].items()) +
           f" ({summary['step']} steps on the sample's 200 images: a path, not a result)"]
  if config.init_from:
    lines.append(f"  {'TDIC base:':20s} {config.init_from} ({layout.run_dir(config.init_from)})")
  lines += [f"  {what + ':':20s} {path}" for what, path in layout.outputs(model_dir)]
  lines += [f"  {'evaluation:':20s} {layout.eval_path(model_dir, layout.EVAL_MARKDOWN)}",
            f"  {'report:':20s} {os.path.dirname(report_files[0])} ({len(report_files)} files)",
            "  view the logs with:  tensorboard --logdir "
            f"{os.path.join(model_dir, layout.LOGS_DIR)}"]
  return lines


def define_bench_flags(default_out, flag_values=FLAGS):
  """Flags of bin/bench; defaults come from bench.BenchSettings."""
  from saic_tf.experiments import bench  # pylint: disable=g-import-not-at-top
  default = bench.BenchSettings()
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("out", default_out, "Markdown report (the JSON record goes beside it).",
                      **fv)
  flags.DEFINE_enum("dataset", default.dataset, datasets.DATASETS, "Real images to measure on.",
                    **fv)
  flags.DEFINE_string("data_dir", default.data_dir, "Their --data_dir.", **fv)
  flags.DEFINE_integer("image_size", default.image_size, "Training image size.", lower_bound=8,
                       **fv)
  flags.DEFINE_integer("batch_size", default.batch_size, "Training batch.", lower_bound=1, **fv)
  flags.DEFINE_float("bpp", default.bpp, "Codec rate.", **fv)
  flags.DEFINE_integer("filters", default.filters, "Codec width.", lower_bound=1, **fv)
  flags.DEFINE_list("backbones", list(default.backbones), "Downstream networks to time "
                    f"({', '.join(backbones.BACKBONES)}).", **fv)
  flags.DEFINE_integer("steps", default.steps, "Timed train steps per row.", lower_bound=1,
                       **fv)
  flags.DEFINE_list("large_size", [str(v) for v in default.large_size], "HEIGHT,WIDTH of the "
                    "large latency image.", **fv)
  flags.DEFINE_integer("images", default.images, "Real images per latency row.",
                       lower_bound=1, **fv)
  flags.DEFINE_integer("input_batches", default.input_batches, "Batches timed for tf.data "
                       "alone.", lower_bound=1, **fv)


def bench_settings_from_flags(flag_values=FLAGS):
  """bench.BenchSettings from the bin/bench flags, with one-line errors for bad values."""
  from saic_tf.experiments import bench  # pylint: disable=g-import-not-at-top
  f = flag_values
  unknown = sorted(set(f.backbones) - set(backbones.BACKBONES))
  if unknown:
    raise UserError(f"--backbones: unknown {', '.join(unknown)} (choose from "
                    f"{', '.join(backbones.BACKBONES)})")
  try:
    large = tuple(int(v) for v in f.large_size)
    assert len(large) == 2 and min(large) >= 8
  except (ValueError, AssertionError):
    raise UserError(f"--large_size={','.join(f.large_size)}: expected HEIGHT,WIDTH "
                    "(each >= 8)") from None
  return bench.BenchSettings(
      dataset=f.dataset, data_dir=f.data_dir, image_size=f.image_size,
      batch_size=f.batch_size, bpp=f.bpp, filters=f.filters, backbones=tuple(f.backbones),
      steps=f.steps, large_size=large, images=f.images, input_batches=f.input_batches)


def define_file_codec_flags(decompress=False, flag_values=FLAGS, measure=False):
  """Flags of bin/compress, or with `decompress` of bin/decompress, or with `measure` of
  bin/measure."""
  fv = dict(flag_values=flag_values)
  model_help = ("MODEL_DIR of the run the files were made with, its bin/export directory, or "
                "a shipped codec's name. Default: the shipped codec whose fingerprint each "
                "file carries." if decompress else "MODEL_DIR of a trained run, a shipped "
                "codec's name (bin/models lists them, e.g. tdic-0.25), or a bin/export "
                "directory (EXPORT_DIR, EXPORT_DIR/<name> or a version directory).")
  flags.DEFINE_string("model", None, model_help, required=not decompress, **fv)
  flags.DEFINE_string("stage", None, "Codec stage (tdic, apic, saic); default: the run's last.",
                      **fv)
  flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Refuse images above this many "
                       "pixels (memory is bounded by it).", lower_bound=1, **fv)
  if measure:
    flags.DEFINE_string("out", MEASURE_FILE, "JSON file of the figures, per image and mean "
                        "(replaced if it exists). Default: measure.json in the current "
                        "directory.", **fv)
    return
  suffix = ".png" if decompress else ".saic"
  flags.DEFINE_string("o", None, f"Output {suffix} file (one input) or directory (the "
                      "sub-folders of an input directory are mirrored under it). Default: "
                      f"beside each input, its name with {suffix} for its extension (an "
                      "existing file is not overwritten).", **fv)


def define_report_flags(flag_values=FLAGS):
  """Flags of bin/report."""
  flags.DEFINE_string("out", None, "Output directory of the report.", required=True,
                      flag_values=flag_values)


def define_sweep_flags(flag_values=FLAGS):
  """The flags bin/sweep_tau adds to bin/train's."""
  flags.DEFINE_list("taus", ["0.5", "1", "2", "4", "8", "16", "32"],
                    "GSW temperatures τ to fine-tune SAIC with (the default: powers of 2 around "
                    "the validation-chosen τ=8 on W / mean |W|, the default --gsw_scale; the "
                    "paper's Fig. 4, 1 to 10000, was on raw W).",
                    flag_values=flag_values)
  define_seeds_flag(flag_values)


def define_seeds_flag(flag_values=FLAGS):
  flags.DEFINE_list("seeds", [], "Repeat every fine-tune (APIC, SAIC) with each of these "
                    "seeds, from the same base (bin/report: mean ± std). Default: --seed "
                    "alone.", flag_values=flag_values)


def define_fine_tune_study_flags(defaults, flag_values=FLAGS):
  """The flags bin/gsw_study and bin/reproduce share: shipped bases, τ chosen on validation,
  seeds, where the results go."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_list("bases", list(defaults.bases), "Shipped codecs (or --loss=tdic runs) to "
                    "fine-tune, one per rate (bin/models lists them). The first base's first "
                    "APIC run trains the classifier every run shares.", **fv)
  flags.DEFINE_list("select_taus", [f"{t:g}" for t in defaults.select_taus], "τ each GSW "
                    "variant is tried with on the validation split (with --gsw_scale=mean_abs, "
                    "W has mean |W| = 1).", **fv)
  flags.DEFINE_list("select_kd_weights", [f"{w:g}" for w in defaults.select_kd_weights],
                    "--kd_feature_weight each KD run is tried with on the validation split, "
                    "where τ is chosen (0: KL alone).", **fv)
  flags.DEFINE_float("select_rate", defaults.select_rate, "Rate at which τ and KD's weight are "
                     "chosen (0: the first base's).", **fv)
  flags.DEFINE_list("seeds", [str(s) for s in defaults.seeds], "Seeds of every fine-tune (the "
                    "first also for the selection); rows over seeds are mean ± std.", **fv)
  flags.DEFINE_string("results_dir", defaults.results_dir, "Where the tables, figures and "
                      "JSON files go.", **fv)
  flags.DEFINE_bool("collect_only", False, "Train and evaluate nothing: only rewrite "
                    "--results_dir from the runs evaluated so far (bin/reproduce still "
                    "measures Kodak for a run without its kodak.json).", **fv)


def define_reproduce_flags(flag_values=FLAGS):
  """The flags bin/reproduce adds to bin/train's."""
  from saic_tf.experiments import reproduce  # pylint: disable=g-import-not-at-top
  defaults = reproduce.ReproduceSettings()
  define_fine_tune_study_flags(defaults, flag_values)
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("variant", defaults.variant, "GSW variant of the SAIC rows: one of "
                      f"{', '.join(GSW_VARIANTS)}, or one of them @ a --feature_layer (e.g. "
                      "paper@stage3); empty: the one of highest validation accuracy in "
                      "MODEL_DIR/selection.json (run bin/gsw_study first).", **fv)
  flags.DEFINE_list("baseline_rates", [f"{r:g}" for r in defaults.baseline_rates], "Nominal "
                    "rates at which JPEG/WebP/AVIF are also evaluated, without a learned codec "
                    "(for accuracy per bit); empty for none.", **fv)
  flags.DEFINE_string("kodak_dir", defaults.kodak_dir, "The Kodak PNGs, for the rate-distortion "
                      "figure at full size (skipped if absent).", **fv)


def _fine_tune_study_settings(f):
  """The settings of define_fine_tune_study_flags' flags."""
  return dict(bases=tuple(f.bases), select_taus=tuple(numbers_from_flag("select_taus", f)),
              select_kd_weights=tuple(numbers_from_flag("select_kd_weights", f)),
              select_rate=f.select_rate, seeds=tuple(numbers_from_flag("seeds", f, int)),
              results_dir=f.results_dir)


def reproduce_settings_from_flags(flag_values=FLAGS):
  from saic_tf.experiments import reproduce  # pylint: disable=g-import-not-at-top
  f = flag_values
  return reproduce.ReproduceSettings(
      variant=f.variant, baseline_rates=tuple(numbers_from_flag("baseline_rates", f)),
      kodak_dir=f.kodak_dir, **_fine_tune_study_settings(f))


def define_models_flags(flag_values=FLAGS):
  """Flags of bin/models."""
  from saic_tf.experiments import model_zoo  # pylint: disable=g-import-not-at-top
  default = model_zoo.MeasureSettings()
  fv = dict(flag_values=flag_values)
  flags.DEFINE_list("measure", [], "Shipped codecs to measure (Kodak, Imagenette-96 val, the "
                    "shipped sample; real .saic files) into their record.json; 'all' for "
                    "every one.", **fv)
  flags.DEFINE_string("package", None, "A trained run to ship as --name (maintainers: copies "
                      "its codec weights, entropy model and record): a --loss=tdic run, or with "
                      "--classifier a fine-tune of a shipped tdic-* codec.", **fv)
  flags.DEFINE_string("name", None, "The shipped name of --package or --package_classifier, "
                      "e.g. tdic-0.25, saic-0.125 or imagenette96-resnet18.", **fv)
  flags.DEFINE_string("classifier", None, "With --package of a fine-tune run (apic/saic/kd from "
                      "a shipped tdic-* base): the shipped classifier it was fine-tuned for "
                      "(made by --package_classifier from its downstream network).", **fv)
  flags.DEFINE_string("package_classifier", None, "A fine-tune run whose trained downstream "
                      "classifier to ship as --name (a Keras file, float16 weights).", **fv)
  flags.DEFINE_string("command", "", "With --package: the command that trained the run, for "
                      "its record.", **fv)
  flags.DEFINE_string("kodak_dir", default.kodak_dir, "The 24 Kodak PNGs (if absent, the "
                      "recorded Kodak figures are kept).", **fv)
  flags.DEFINE_string("imagenette_dir", default.imagenette_dir, "Imagenette image folder "
                      "(its val split; if absent, the recorded figures are kept).", **fv)
  flags.DEFINE_integer("imagenette_images", default.imagenette_images, "Val images to measure "
                       "(0: all).", lower_bound=0, **fv)
  flags.DEFINE_string("curve", None, "A shipped codec whose PSNR-against-training-time curve "
                      "to measure from --snapshots (Imagenette-96 val) into its record.json.",
                      **fv)
  flags.DEFINE_string("snapshots", None, "With --curve: a directory of checkpoints the run "
                      "passed through (ckpt-<step> files, each with its training_time.json).",
                      **fv)
  flags.DEFINE_string("out", None, "Also write the table and every recorded curve as Markdown "
                      "(e.g. docs/models.md).", **fv)


def models_from_flags(flag_values=FLAGS, log=print):
  """bin/models: package, measure, then the table of the shipped codecs."""
  # pylint: disable=g-import-not-at-top
  from saic_tf.codec import zoo
  from saic_tf.experiments import model_zoo
  from saic_tf.experiments import task_codecs
  f = flag_values
  if bool(f.package or f.package_classifier) != bool(f.name) or (
      f.package and f.package_classifier):
    raise UserError("--name=NAME goes with one of --package=RUN or --package_classifier=RUN")
  if bool(f.curve) != bool(f.snapshots):
    raise UserError("--curve=NAME and --snapshots=DIR go together")
  settings = model_zoo.MeasureSettings(f.kodak_dir, f.imagenette_dir, f.imagenette_images)
  if f.package_classifier:
    log(f"packaged {task_codecs.package_classifier(f.package_classifier, f.name, f.command, settings, log)}")
  elif f.package and f.classifier:
    log(f"packaged {task_codecs.package_codec(f.package, f.name, f.classifier, f.command, settings, log)}")
  elif f.package:
    log(f"packaged {model_zoo.package(f.package, f.name, f.command)}")
  names = zoo.names() if f.measure == ["all"] else f.measure
  for name in names:
    zoo.check_name(name)
    if zoo.record(name).get("kind") == "task-aware codec":
      task_codecs.measure(name, settings, log=log)
    else:
      model_zoo.measure(name, settings, log=log)
  if f.curve:
    model_zoo.curve(f.curve, f.snapshots, settings, log=log)
  if f.out:
    log(f"wrote {model_zoo.write_markdown(f.out)}")
  return model_zoo.table() + task_codecs.table()


def define_gsw_study_flags(flag_values=FLAGS):
  """The flags bin/gsw_study adds to bin/train's."""
  from saic_tf.experiments import gsw_study  # pylint: disable=g-import-not-at-top
  defaults = gsw_study.StudySettings()
  define_fine_tune_study_flags(defaults, flag_values)
  flags.DEFINE_list("variants", list(defaults.variants), "GSW variants to compare "
                    f"({', '.join(GSW_VARIANTS)}, or one of them @ a --feature_layer).",
                    flag_values=flag_values)


def gsw_study_settings_from_flags(flag_values=FLAGS):
  from saic_tf.experiments import gsw_study  # pylint: disable=g-import-not-at-top
  return gsw_study.StudySettings(variants=tuple(flag_values.variants),
                                 **_fine_tune_study_settings(flag_values))


def define_ablate_flags(default_out, flag_values=FLAGS):
  """Flags of bin/ablate."""
  from saic_tf.experiments import recipe  # pylint: disable=g-import-not-at-top
  default = recipe.AblationSettings()
  fv = dict(flag_values=flag_values)
  flags.DEFINE_list("variants", list(recipe.VARIANTS), "Recipe variants to train and score "
                    f"({', '.join(recipe.VARIANTS)}).", **fv)
  flags.DEFINE_string("out", default_out, "Markdown table (the JSON record goes beside it).",
                      **fv)
  flags.DEFINE_string("dataset", default.dataset, "Training data (its validation split is "
                      "scored).", **fv)
  flags.DEFINE_string("data_dir", default.data_dir, "Its --data_dir.", **fv)
  flags.DEFINE_float("bpp", default.bpp, "Codec rate.", **fv)
  flags.DEFINE_float("cpu_minutes", default.cpu_minutes, "CPU budget of each variant (CPU "
                     "time of the process, all cores).", **fv)
  flags.DEFINE_integer("holdout_every", default.holdout_every, "Every N-th training image is "
                       "held out and scored.", lower_bound=2, **fv)
  flags.DEFINE_string("root", default.root, "Where the variants' runs go (resumable).", **fv)


def ablation_from_flags(flag_values=FLAGS, log=print):
  """bin/ablate: trains and scores the variants; returns the files written."""
  from saic_tf.experiments import recipe  # pylint: disable=g-import-not-at-top
  f = flag_values
  if not f.variants or f.cpu_minutes <= 0:
    raise UserError("bin/ablate needs one or more --variants and --cpu_minutes > 0")
  unknown = sorted(set(f.variants) - set(recipe.VARIANTS))
  if unknown:
    raise UserError(f"--variants: unknown {', '.join(unknown)} (choose from "
                    f"{', '.join(recipe.VARIANTS)})")
  settings = recipe.AblationSettings(dataset=f.dataset, data_dir=f.data_dir, bpp=f.bpp,
                                     cpu_minutes=f.cpu_minutes, holdout_every=f.holdout_every,
                                     root=f.root)
  return recipe.write(recipe.run(settings, f.variants, log=log), f.out)


def numbers_from_flag(name, flag_values=FLAGS, kind=float):
  """The values of a list flag as `kind` (float or int), or a UserError naming the flag."""
  values = flag_values[name].value
  try:
    return [kind(v) for v in values]
  except ValueError:
    raise UserError(f"--{name}={','.join(values)}: not a list of "
                    f"{'integers' if kind is int else 'numbers'}") from None


def exit_on_failures(failures):
  """After a command that went on past bad inputs: one `error:` line naming each, exit 1."""
  if failures:
    print(f"error: {len(failures)} of the inputs failed: " +
          "; ".join(f"{path}: {error}" for path, error in failures), file=sys.stderr)
    sys.exit(1)


def run(main, positional=False):
  """absl's app.run, with UserError printed as one line (exit 2) instead of a traceback."""
  def guarded(argv):
    if len(argv) > 1 and not positional:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    try:
      return main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except Exception as e:  # pylint: disable=broad-except
      inside = user_error_inside(e)  # e.g. a damaged image met inside a tf.data pipeline
      if inside is None:
        raise
      print(f"error: {inside}", file=sys.stderr)
      sys.exit(2)
  show_own_flags_in_help()
  app.run(guarded, argv=with_short_help(sys.argv))


def show_own_flags_in_help(flag_values=FLAGS):
  """absl's --help lists only the key flags of the script run (sys.argv[0]), and every flag is
  defined here, not in the bin/ script: so a command's own flags, the ones this module defined
  for it, are made the script's key flags. --help then lists them, without absl's own, and ends
  with absl's line naming --helpfull, which still lists every flag."""
  for flag in flag_values.get_flags_for_module(__name__):
    flag_values.register_key_flag_for_module(sys.argv[0], flag)


def with_short_help(argv):
  """argv with -h (absl knows only --help and -?) as --help, up to a `--`."""
  end = argv.index("--") if "--" in argv else len(argv)
  return [argv[0]] + ["--help" if a == "-h" else a for a in argv[1:end]] + argv[end:]
