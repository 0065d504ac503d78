"""Evaluation of a run: the downstream network on original and compressed images.

For every method — the original images, each trained codec stage of the run (TDIC, and APIC or
SAIC), and JPEG / WebP / AVIF at the codec's nominal rate — the split goes through the frozen
downstream network, and the row reports ACC, macro F1, PSNR, SSIM, MSE (per pixel, [0, 1]),
feature-map MSE (paper Table 1), bpp (nominal, and for the learned codec also the size of the
real .saic file) and SI (CLUB, nats, paper Eq. 11; fitted on pairs from the
training split, estimated on the evaluated split). PSNR/SSIM/MSE are against the original
images, so the original row has none. Output: MODEL_DIR/eval.json, eval.md and
eval_gallery.npz (a few images per method with the predicted labels, for bin/report).
"""
import dataclasses
import hashlib
import io
import json
import os
import time
from typing import Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from saic_tf.codec import bitstream
from saic_tf.codec import networks
from saic_tf.codec import stages as stages_lib
from saic_tf.common import layout
from saic_tf.common.config import GSW_SETTINGS, RESUMABLE_CHANGES
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_bytes, write_json
from saic_tf.common.run import Run
from saic_tf.data import datasets
from saic_tf.data.images import to_uint8
from saic_tf.evaluation import baselines as baselines_lib
from saic_tf.evaluation import club as club_lib
from saic_tf.evaluation import metrics
from saic_tf.evaluation import statistics
from saic_tf.evaluation import tables
from saic_tf.semantic import downstream
from saic_tf.training import loop

GALLERY_SIZE = 8
SUBSET_SEED = 0  # of the --eval_max_images subset, shared by every run


@dataclasses.dataclass
class EvalSettings:
  split: str = "test"
  dataset: Optional[str] = None  # None: the run's
  data_dir: Optional[str] = None  # None: the run's
  baselines: Tuple[str, ...] = tuple(baselines_lib.CODECS)
  batch_size: int = 32
  max_images: int = 0  # 0: the whole split; else a fixed random subset of this size
  club_train_images: int = 1000
  club: club_lib.ClubSettings = dataclasses.field(default_factory=club_lib.ClubSettings)
  downstream_dir: Optional[str] = None  # None: the run's (its --downstream_from's/--init_from's)
  out_dir: Optional[str] = None  # None: the run's directory (required for a shipped codec)
  # False: a fine-tune's own row (and Original's: SI needs its outputs) without its TDIC base's,
  # for a run beside others on the same base that one of them evaluates (bin/gsw_study).
  base_row: bool = True
  # A rate: Original and the baselines alone, at this nominal bpp, with the run's classifier (no
  # learned codec; into out_dir): the baselines at more rates than the codecs' (bin/reproduce).
  baselines_at: Optional[float] = None


def settings_record(settings: EvalSettings):
  """The evaluation's settings as eval.json keeps them: an experiment re-evaluates a run whose
  eval.json was made with other settings (another split, subset, CLUB or baselines)."""
  return json.loads(json.dumps(dataclasses.asdict(settings)))


def setup_digest(config, downstream_dir, tdic_checkpoint):
  """Which experiment a run is, whatever its seed: a digest of its settings (but the seed, what
  may change on resume, and GSW settings a run that is not SAIC does not use), its TDIC base and
  its classifier's run. bin/report merges the seeds of runs that share it."""
  # init_from, downstream_from: the TDIC base and the classifier are named below, however they
  # were reached (the first run of a sweep trains both and has neither flag).
  unused = set(GSW_SETTINGS) if config.resolved_loss != "saic" else set()
  settings = {k: v for k, v in config.to_dict().items()
              if k not in {"seed", "init_from", "downstream_from"} | unused
              and (k not in RESUMABLE_CHANGES or k == "finetune_steps")}
  settings["classifier"] = os.path.abspath(downstream_dir)
  settings["tdic"] = os.path.abspath(tdic_checkpoint)
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def paired_comparisons(record):
  """Each fine-tune of the run (APIC, SAIC, KD) against its TDIC base, on the same images."""
  correct = {name: statistics.decode(text) for name, text in record["correct"].items()}
  return [dict(a=name, b="tdic", **statistics.compare(correct[name], correct["tdic"]))
          for name in correct if name in ("apic", "saic", "kd") and "tdic" in correct]


def _methods(run, stages, baseline_names, nominal=None):
  """name -> images -> (reconstructions, bpp per image or None, and per image either the
  within-target flags (baselines) or the coded bpp (learned codec), or None); and the nominal
  bpp the baselines are held to (default the codec's)."""
  config = run.config
  if nominal is None:
    nominal = networks.nominal_bpp(
        (1, 1, networks.channels_for_bpp(config.bpp, config.stride)), config.stride,
        config.stride)
  methods = {"original": lambda images: (images, None, None)}
  for name, _ in stages:
    stage = stages_lib.load_stage(run, name)
    def run_codec(images, stage=stage):
      """Reconstructions, nominal bpp, and the bpp of each image's .saic file."""
      height, width = images.shape[1:3]
      bits = stage.codec.encode(images)
      coded = [8 * len(bitstream.write(height, width, b, stage.entropy_model,
                                       stage.fingerprint)) / (height * width)
               for b in bits.numpy()]
      bpp = np.full(images.shape[0], float(stage.codec.nominal_bpp(height, width)))
      reconstructions = stage.codec.decode(bits, height, width).numpy()
      return reconstructions, bpp, np.array(coded)
    methods[name] = run_codec
  for name in baseline_names:
    if name not in baselines_lib.CODECS:
      raise UserError(f"--baselines: unknown codec {name!r}; choose from "
                      f"{', '.join(baselines_lib.CODECS)}")
    methods[name] = lambda images, name=name: baselines_lib.round_trip(images, name, nominal)
  return methods, nominal


def _pass(methods, network, dataset, details, gallery_indices=(), progress=None):
  """Runs every method over the dataset; returns labels, per-method arrays, and the images
  (uint8) at `gallery_indices`. `progress` (a loop.Progress) counts the images, its lines
  naming each method's seconds so far (which of them is slow)."""
  out = {name: dict(probs=[], bpp=[], within=[], coded_bpp=[], psnr=[], ssim=[], mse=[],
                    feature_mse=[])
         for name in methods}
  labels, gallery = [], {name: [] for name in methods}
  seconds = dict.fromkeys(methods, 0.0)
  offset = 0
  for images, batch_labels in dataset:
    labels.append(batch_labels.numpy())
    keep = [i - offset for i in gallery_indices if offset <= i < offset + len(batch_labels)]
    offset += len(batch_labels)
    original_features = network.features(images, training=False)
    for name, method in methods.items():
      start = time.perf_counter()
      reconstructions, bpp, extra = method(images)
      seconds[name] += time.perf_counter() - start
      reconstructions = tf.convert_to_tensor(reconstructions, tf.float32)
      features = network.features(reconstructions, training=False)
      logits = network.head(features, training=False)
      row = out[name]
      row["probs"].append(tf.nn.softmax(logits).numpy())
      if bpp is not None:
        row["bpp"].append(bpp)
      if extra is not None:
        row["within" if extra.dtype == bool else "coded_bpp"].append(extra)
      if details and name != "original":
        for key, value in metrics.image_metrics(images, reconstructions).items():
          row[key].append(value)
        row["feature_mse"].append(metrics.feature_mse(original_features, features))
      if keep:
        gallery[name].append(to_uint8(tf.gather(reconstructions, keep)).numpy())
    if progress is not None:
      progress.update(len(batch_labels),
                      note=", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()
                                     if name != "original"))
  merged = {name: {k: np.concatenate(v) for k, v in row.items() if v}
            for name, row in out.items()}
  return np.concatenate(labels), merged, {k: np.concatenate(v) for k, v in gallery.items() if v}


def _row(name, labels, result, num_classes, si):
  predictions = result["probs"].argmax(axis=1)
  matrix = metrics.confusion_matrix(labels, predictions, num_classes)
  mean = lambda key: float(np.mean(result[key])) if key in result else None
  row = dict(accuracy=metrics.accuracy(matrix), f1=metrics.macro_f1(matrix),
             psnr=mean("psnr"), ssim=mean("ssim"), mse=mean("mse"),
             feature_mse=mean("feature_mse"), bpp=mean("bpp"), coded_bpp=mean("coded_bpp"),
             si=si)
  if "within" in result:
    row["images_over_target"] = int(np.sum(~result["within"]))
    row["max_bpp"] = float(np.max(result["bpp"]))
  return row


@dataclasses.dataclass
class Loaded:
  """What an evaluation measures with (load): the run, the run whose classifier judges it and
  that classifier, the task's data, the methods and the nominal rate."""
  run: Run
  out_dir: str
  downstream_run: Run
  network: downstream.DownstreamNetwork
  dataset: str
  image_size: int
  train_source: datasets.Source
  test_source: datasets.Source
  stages: list  # [(stage, checkpoint)] of the run
  evaluated: list  # those of them with a row
  methods: dict
  nominal: float


@dataclasses.dataclass
class Measured:
  """What the passes gave (measure): the test labels, each method's arrays, the gallery's
  images and their indices, and each method's row of eval.json."""
  labels: np.ndarray
  results: dict
  gallery: dict
  picks: np.ndarray
  rows: dict


def evaluate(model_dir, settings: EvalSettings = EvalSettings()):
  """Evaluates the run in `model_dir` (or the shipped codec of that name, or a common.run.Run);
  writes eval.json, eval.md, eval_gallery.npz to settings.out_dir, default the run's directory.

  A codec without a downstream network of its own (a --loss=tdic run, a shipped codec) is
  evaluated with --downstream_dir's network, at that network's image size."""
  loaded = load(model_dir, settings)
  measured = measure(loaded, settings)
  evaluation = record(loaded, measured, settings)
  write(loaded, measured, evaluation)
  return evaluation


def load(model_dir, settings: EvalSettings):
  """The run (resolved once, here), the classifier that judges it, the data and the methods:
  every refusal of a bad flag or directory comes before the passes."""
  if settings.baselines_at is not None and (
      settings.baselines_at <= 0 or not settings.out_dir or not settings.baselines):
    raise UserError(f"--baselines_at={settings.baselines_at:g}: give a rate > 0, --out_dir and "
                    "--baselines (the codecs to evaluate at that rate)")
  run = Run.resolve(model_dir)
  if run.shipped and not settings.out_dir:
    raise UserError(f"--model_dir={run.name} is a shipped codec: pass --out_dir=DIR for its "
                    "evaluation (nothing is written into the package)")
  config = run.config
  # The CLUB training subset (a seeded shuffle) and CLUB's own fit depend on TensorFlow's global
  # seed: set it, so that an evaluation gives the same SI in a fresh bin/evaluate and inside a
  # process that trained first (bin/demo, bin/sweep_tau, bin/reproduce).
  tf.keras.utils.set_random_seed(config.seed)
  if not config.semantic and not settings.downstream_dir:
    raise UserError(f"{run.directory}: a codec without a downstream network (--loss=tdic, or a "
                    "shipped codec): pass --downstream_dir=RUN, the run whose classifier "
                    "judges it")
  if not settings.downstream_dir:
    base = run.downstream
  else:  # another run's classifier, its directory taken as a path
    base = run if settings.downstream_dir == run.directory else Run.at(settings.downstream_dir)
  # A codec alone is judged on the task of the classifier it is given: its data and size.
  task = config if config.semantic else base.config
  dataset = settings.dataset or task.dataset
  data_dir = task.data_dir if settings.data_dir is None else settings.data_dir
  train_source = datasets.load(dataset, "train", data_dir, task.holdout_every)
  test_source = datasets.load(dataset, settings.split, data_dir, task.holdout_every)
  image_size = task.image_size
  if base.config.image_size != image_size:  # a fine-tune is evaluated at its training size
    raise UserError(f"--downstream_dir={base.directory}: its network takes "
                    f"{base.config.image_size}px images, this run's codec "
                    f"{config.image_size}px")
  # The classifier of the downstream run, split where this run's feature loss was taken.
  network = downstream.load(
      dataclasses.replace(base.config, feature_layer=task.feature_layer), base.directory,
      train_source.num_classes)
  stages = run.stages
  evaluated = stages if settings.base_row or not config.semantic else stages[-1:]
  if settings.baselines_at is not None:
    evaluated = []
  methods, nominal = _methods(run, evaluated, settings.baselines, settings.baselines_at)
  return Loaded(run, settings.out_dir or run.directory, base, network, dataset, image_size,
                train_source, test_source, stages, evaluated, methods, nominal)


def measure(loaded: Loaded, settings: EvalSettings):
  """Every method over the split and over CLUB's training pairs, then each method's row: ACC,
  F1, PSNR, SSIM, MSE, feature MSE, bpp and SI."""
  methods, test_source, train_source = loaded.methods, loaded.test_source, loaded.train_source
  logging.info("evaluate: %s on %s/%s (%s images) with %s", loaded.run.directory,
               loaded.dataset, settings.split, settings.max_images or test_source.num_examples,
               ", ".join(methods))
  count = min(settings.max_images or test_source.num_examples, test_source.num_examples)
  picks = np.linspace(0, count - 1, min(GALLERY_SIZE, count)).astype(int)
  # A subset is drawn at random (file order is by class), the same one for every run, so that
  # runs evaluated on it pair image by image (statistics.py).
  test = datasets.eval_dataset(test_source, loaded.image_size, settings.batch_size,
                               limit=settings.max_images or None, subset_seed=SUBSET_SEED)
  club_train = datasets.eval_dataset(train_source, loaded.image_size, settings.batch_size,
                                     limit=settings.club_train_images,
                                     shuffle_seed=loaded.run.config.seed)
  try:
    labels, results, gallery = _pass(
        methods, loaded.network, test, details=True, gallery_indices=picks,
        progress=loop.Progress(f"evaluate: {settings.split} split", count))
    _, train_results, _ = _pass(
        methods, loaded.network, club_train, details=False,
        progress=loop.Progress("evaluate: CLUB's training pairs",
                               min(settings.club_train_images, train_source.num_examples)))
  except tf.errors.OpError as e:  # e.g. a damaged file in an image folder
    datasets.check_decode_error(e, test_source, train_source)
  rows = {}
  club_progress = loop.Progress("evaluate: SI (CLUB fits)", len(methods), unit="methods")
  for name in methods:
    si = club_lib.mutual_information(
        (train_results["original"]["probs"], train_results[name]["probs"]),
        (results["original"]["probs"], results[name]["probs"]), settings.club)
    rows[name] = _row(name, labels, results[name], train_source.num_classes, si)
    logging.info("evaluate: %-8s ACC %.4f  F1 %.4f  SI %.3f nats", name, rows[name]["accuracy"],
                 rows[name]["f1"], si)
    club_progress.update()
  return Measured(labels, results, gallery, picks, rows)


def record(loaded: Loaded, measured: Measured, settings: EvalSettings):
  """eval.json's record: the rows, what was evaluated and with what (run, classifier, data,
  settings), which image each method got right, and the paired comparisons."""
  config, network, labels = loaded.run.config, loaded.network, measured.labels
  stages, evaluated, base = loaded.stages, loaded.evaluated, loaded.downstream_run.directory
  # The baselines alone are an evaluation of their own (its gallery in out_dir), not the run's.
  alone = settings.baselines_at is not None
  evaluation = dict(
      model_dir=os.path.abspath(loaded.out_dir if alone else loaded.run.directory),
      dataset=loaded.dataset, split=settings.split, num_images=int(len(labels)),
      image_size=loaded.image_size,
      loss=None if alone else config.loss, seed=None if alone else config.seed,
      tau=None if alone else config.tau, baselines_at=settings.baselines_at,
      gsw=config.gsw if config.resolved_loss == "saic" and not alone else None,
      kd_feature_weight=(config.kd_feature_weight or None) if not alone else None,
      feature_layer=config.feature_layer,
      setup_digest=setup_digest(config, base, dict(stages)["tdic"]) if evaluated else None,
      nominal_bpp=loaded.nominal, stages={k: v for k, v in stages} if evaluated else {},
      downstream=dict(dir=os.path.abspath(base), backbone=network.backbone,
                      feature_layer=network.feature_layer,
                      test_accuracy=network.info.get("test_accuracy"),
                      **{k: network.info[k] for k in ("model", "sha256", "input")
                         if k in network.info}),
      si=dict(estimator="CLUB", units="nats", outputs="softmax probabilities",
              club_train_images=settings.club_train_images,
              logvar_range=[club_lib.LOGVAR_MIN, club_lib.LOGVAR_MAX],
              **dataclasses.asdict(settings.club)),
      rows=measured.rows, images_digest=statistics.images_digest(labels),
      evaluation=settings_record(settings),
      correct={name: statistics.encode(measured.results[name]["probs"].argmax(1) == labels)
               for name in loaded.methods})
  evaluation["paired"] = paired_comparisons(evaluation)
  return evaluation


def write(loaded: Loaded, measured: Measured, evaluation):
  """eval.json, eval.md and eval_gallery.npz (a few images per method with the predicted
  labels, for bin/report) into the evaluation's directory."""
  out_dir, methods, picks = loaded.out_dir, loaded.methods, measured.picks
  write_json(layout.eval_path(out_dir), evaluation)
  write_bytes(layout.eval_path(out_dir, layout.EVAL_MARKDOWN),
              tables.eval_markdown(evaluation).encode())
  source = loaded.train_source
  gallery_bytes = io.BytesIO()
  np.savez_compressed(
      gallery_bytes, labels=measured.labels[picks],
      class_names=np.array(source.display_names or source.class_names),
      methods=np.array(list(methods)),
      **{f"images_{name}": measured.gallery[name] for name in methods},
      **{f"predictions_{name}": measured.results[name]["probs"][picks].argmax(1)
         for name in methods})
  write_bytes(layout.eval_path(out_dir, layout.GALLERY_FILE), gallery_bytes.getvalue())
