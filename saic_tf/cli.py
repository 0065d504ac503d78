"""Every absl flag of every bin/ command, and the wrapper that turns a UserError into one
`error:` line. bin/ scripts only choose their flags here, parse, and call the library; the
library never imports this module."""
import dataclasses
import sys
import typing

from absl import app
from absl import flags
from absl import logging

from saic_tf.common import distribute
from saic_tf.common import layout
from saic_tf.common.config import GSW_VARIANTS, TrainConfig
from saic_tf.common.errors import user_error_inside, UserError
from saic_tf.common.run import Run
from saic_tf.data import datasets
from saic_tf.data.images import DEFAULT_MAX_PIXELS
from saic_tf.evaluation import baselines
from saic_tf.semantic import backbones

FLAGS = flags.FLAGS
MEASURE_FILE = "measure.json"  # bin/measure's default --out, in the current directory


def define_train_flags(flag_values=FLAGS):
  """Flags of bin/train, one per TrainConfig field: its default, help text, choices and lower
  bound are the field's (common/config.py)."""
  # The choices that live with their packages, which common/config.py may not import.
  choices = dict(dataset=datasets.DATASETS, backbone=backbones.BACKBONES,
                 strategy=distribute.STRATEGIES)
  for field in dataclasses.fields(TrainConfig):
    meta = field.metadata
    if not meta["flag"]:
      continue
    name = field.name
    kind = (typing.get_args(field.type) or (field.type,))[0]  # Optional[float] -> float
    args = dict(name=name, default=field.default, help=meta["help"], flag_values=flag_values)
    if name == "model_dir":
      args.update(default=None, required=True)
    if meta["choices"] or name in choices:
      flags.DEFINE_enum(enum_values=meta["choices"] or choices[name], **args)
    elif kind is bool:
      flags.DEFINE_bool(**args)
    elif kind is str:
      flags.DEFINE_string(**args)
    else:
      define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
      define(lower_bound=meta["lower_bound"], **args)
  for name in ("learning_rate", "downstream_learning_rate"):
    flags.register_validator(name, lambda v: v > 0, f"--{name} must be > 0",
                             flag_values=flag_values)


def train_config_from_flags(flag_values=FLAGS):
  # Fields that are no flag (downstream_sha256: bin/train records it) keep their defaults.
  names = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["flag"]} & set(
      flag_values)
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
  flags.DEFINE_integer("club_train_images", 1000, "Training images whose (y, y') pairs fit "
                       "CLUB's q(y'|y).", lower_bound=1, **fv)


def quick_eval_settings_from_flags(flag_values=FLAGS, **overrides):
  from saic_tf.evaluation import club, evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.EvalSettings(max_images=flag_values.eval_max_images,
                               club_train_images=flag_values.club_train_images,
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
  run = Run.resolve(model_dir)
  # A shipped codec's name: nothing is written into the package.
  export_dir = flag_values.export_dir or (layout.EXPORT_DIR if run.shipped else
                                          layout.export_dir(run.directory))
  version_dir, parity = export.export(run, export_dir, flag_values.model_name,
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
