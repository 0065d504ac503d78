"""bin/models: the shipped codecs (codec/zoo.py) with their measured figures, how a trained run
becomes one (package), and the command that measures them (measure).

Figures are measured on real files (`.saic` bytes, headers included) by FileCodec, the path
bin/compress takes:

  kodak           the 24 Kodak photos at full size (768×512), real bpp and PSNR
  imagenette96    Imagenette's val split (3,439 images) resized to 96×96, as the reproduction
  sample96        the shipped sample's val images at 96×96 (what the tests check the weights on)

`curve` scores the checkpoints a training run passed through (copies kept while it ran) on
Imagenette-96 val against the CPU time spent to reach each: the PSNR-per-training-time curve
that says what a longer run would give. Bits do not change in the range coder, so the curve
runs the network alone (its PSNR is that of the .saic files).

PSNR is of the decoded uint8 image against the uint8 original (max 255), averaged over images;
bpp is the mean of each file's bits over its pixels. Toderici et al. 2017's binary codec on
Kodak (tensorflow/compression's published results) is the bar: TODERICI_KODAK, interpolated
linearly at the same real bpp and extended from the nearest segment outside it. The stretch goal
is WebP (Pillow) within STRETCH_DB: each Kodak photo is encoded as the largest WebP file no larger
than that photo's .saic file (evaluation/baselines.py), so WebP never gets more bits per image.
"""
import dataclasses
import glob
import os
import shutil
import time

from absl import logging
import numpy as np
import tensorflow as tf

from saic_tf.codec import stages
from saic_tf.codec import zoo
from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_bytes, write_json
from saic_tf.common.run import Run
from saic_tf.data import datasets
from saic_tf.data.images import read_image, to_uint8
from saic_tf.deploy.file_codec import FileCodec
from saic_tf.evaluation import baselines

# (bpp, PSNR dB) of Toderici et al. 2017 (binary codes) on Kodak, as the issue quotes them.
TODERICI_KODAK = ((0.125, 23.0), (0.25, 25.7), (0.5, 28.3))
STRETCH_DB = 1.5  # the stretch goal: within this much of WebP at the same real bpp, on Kodak
IMAGENETTE_BARS = {0.125: 22.5, 0.25: 24.0, 0.5: 25.5}  # dB on Imagenette-96 val (issue 15)
TREND_FROM_CPU_HOURS = 1.0  # the trend leaves out the first hour's fast rise


@dataclasses.dataclass
class MeasureSettings:
  kodak_dir: str = os.path.join("..", "shared", "data", "kodak")
  imagenette_dir: str = os.path.join("..", "shared", "data", "imagenette2-224")
  imagenette_images: int = 0  # 0: the whole val split
  size: int = 96


def toderici_psnr(bpp):
  """The bar at a real bpp: Toderici 2017's curve, linear between its points and beyond them."""
  points = TODERICI_KODAK
  index = 0 if bpp <= points[1][0] else 1
  (x0, y0), (x1, y1) = points[index], points[index + 1]
  return y0 + (y1 - y0) * (bpp - x0) / (x1 - x0)


def kodak_photos(kodak_dir):
  """The Kodak photos (every PNG in `kodak_dir`, by name) as uint8 arrays."""
  if not os.path.isdir(kodak_dir):
    raise UserError(f"--kodak_dir={kodak_dir}: no such directory")
  names = sorted(f for f in os.listdir(kodak_dir) if f.lower().endswith(".png"))
  if not names:
    raise UserError(f"--kodak_dir={kodak_dir}: no PNG images in it")
  return [read_image(os.path.join(kodak_dir, name)) for name in names]


def image_psnr(original, decoded):
  """PSNR (dB) of two uint8 images."""
  return float(tf.image.psnr(tf.constant(original), tf.constant(decoded), max_val=255))


def measure_images(codec: FileCodec, images, per_image=False):
  """Mean PSNR (dB) and mean real bpp of uint8 images through .saic files (and each image's
  PSNR and bpp, in order, with `per_image`: for paired comparisons on the same images)."""
  psnr, bpp = [], []
  for image in images:
    content = codec.compress(image)
    psnr.append(image_psnr(image, codec.decompress(content)))
    bpp.append(8 * len(content) / (image.shape[0] * image.shape[1]))
  figures = dict(psnr=float(np.mean(psnr)), bpp=float(np.mean(bpp)), images=len(psnr))
  if per_image:
    figures["psnr_per_image"] = [round(value, 4) for value in psnr]
    figures["bpp_per_image"] = [round(value, 5) for value in bpp]
  return figures


def webp_at_bpp(images, bpp_per_image):
  """Mean PSNR and real bpp of WebP, each image at the largest file within its given bpp, and
  how many images even WebP's lowest quality does not fit (those keep that quality)."""
  psnr, bpp, over = [], [], 0
  for image, target in zip(images, bpp_per_image):
    encoded = baselines.encode_at_bpp(image, "webp", target)
    psnr.append(image_psnr(image, baselines.decode(encoded.data)))
    bpp.append(encoded.bpp)
    over += not encoded.within_target
  return dict(psnr=float(np.mean(psnr)), bpp=float(np.mean(bpp)), over_budget=over)


def resized_split(dataset, split, data_dir, size, limit=0, holdout_every=0):
  """uint8 images of a split at size×size, by the pipeline's one resize path."""
  source = datasets.load(dataset, split, data_dir, holdout_every)
  batches = datasets.eval_dataset(source, size, 64, limit=limit or None)
  return [image for batch, _ in batches for image in to_uint8(batch).numpy()]


def measure(name, settings=MeasureSettings(), log=logging.info):
  """The figures of shipped codec `name` (module doc); written into its record.json."""
  codec = FileCodec(zoo.check_name(name))
  # A data set that is not here keeps the figures recorded from it (the record's weights are the
  # shipped ones: bin/models --package writes a new record), never silently drops them.
  missing = [(key, flag, directory) for key, flag, directory in (
      ("imagenette96", "--imagenette_dir", settings.imagenette_dir),
      ("kodak", "--kodak_dir", settings.kodak_dir)) if not os.path.isdir(directory)]
  recorded = zoo.record(name).get("figures", {})
  figures = {key: recorded[key] for key, _, _ in missing if key in recorded}
  for key, flag, directory in missing:
    log(f"{name}: {flag}={directory} not found: {key} "
        f"{'kept as recorded' if key in figures else 'not measured'}")
  start = time.time()
  figures["sample96"] = measure_images(codec, resized_split("sample", "test", "", settings.size))
  log(f"{name}: sample96 {figures['sample96']}")
  if os.path.isdir(settings.imagenette_dir):
    figures["imagenette96"] = measure_images(codec, resized_split(
        "imagefolder", "test", settings.imagenette_dir, settings.size,
        settings.imagenette_images))
    log(f"{name}: imagenette96 {figures['imagenette96']}")
  if os.path.isdir(settings.kodak_dir):
    photos = kodak_photos(settings.kodak_dir)
    kodak = measure_images(codec, photos, per_image=True)
    webp = webp_at_bpp(photos, kodak.pop("bpp_per_image"))
    del kodak["psnr_per_image"]
    figures["kodak"] = dict(kodak, toderici_psnr_at_bpp=toderici_psnr(kodak["bpp"]),
                            webp_psnr_at_bpp=webp["psnr"], webp_bpp=webp["bpp"],
                            webp_over_budget=webp["over_budget"])
    log(f"{name}: kodak {figures['kodak']}")
  figures["seconds"] = round(time.time() - start, 1)  # of what this call measured
  kept = [key for key, _, _ in missing if key in figures]
  if kept:
    figures["kept_from_an_earlier_measure"] = kept
  path = os.path.join(layout.zoo_dir(name), zoo.RECORD_FILE)
  write_json(path, dict(zoo.record(name), figures=figures))
  return figures


def _snapshot_checkpoints(snapshots):
  """(step, checkpoint path, training_time.json path) of every ckpt-<step> under `snapshots`."""
  found = []
  for index in glob.glob(os.path.join(snapshots, "**", "ckpt-*.index"), recursive=True):
    checkpoint = index[:-len(".index")]
    found.append((layout.checkpoint_step(checkpoint), checkpoint,
                  os.path.join(os.path.dirname(index), layout.TRAINING_TIME_FILE)))
  return sorted(found)


def _spent_at(spent, step, where):
  """(CPU seconds, wall seconds) training had spent at `step`, from a training_time.json record:
  its history, or its totals when they are of that step (a record without the history)."""
  for row_step, cpu, wall in spent.get("history") or []:
    if row_step == step:
      return cpu, wall
  if spent.get("step") == step:
    return spent["cpu_seconds"], spent["wall_seconds"]
  raise UserError(f"{where}: no training time recorded at step {step}")


def curve(name, snapshots, settings=MeasureSettings(), log=logging.info):
  """PSNR on Imagenette-96 val (settings.imagenette_images, 0: all) of each checkpoint under
  `snapshots` (ckpt-<step> files with the run's training_time.json beside them) and of the
  shipped weights, against the CPU and wall hours training had spent there; written into the
  record.json of shipped codec `name` as `curve`."""
  model_dir = zoo.check_name(name)
  if not os.path.isdir(snapshots):
    raise UserError(f"--snapshots={snapshots}: no such directory")
  if not os.path.isdir(settings.imagenette_dir):
    raise UserError(f"--imagenette_dir={settings.imagenette_dir}: no such directory")
  config = Run.at(model_dir).config
  record = zoo.record(name)
  shipped = layout.latest_complete_checkpoint(layout.stage_dir(model_dir, "tdic"), config.steps,
                                              "TDIC")
  points = [(step, checkpoint, _spent_at(read_json(times, "copy it with the checkpoint"), step,
                                         times))
            for step, checkpoint, times in _snapshot_checkpoints(snapshots)
            if step < config.steps]
  points.append((config.steps, shipped, _spent_at(dict(history=record.get(
      "training_time_history")), config.steps, f"{name}'s record.json")))
  images = resized_split("imagefolder", "test", settings.imagenette_dir, settings.size,
                         settings.imagenette_images)
  rows = []
  for step, checkpoint, (cpu, wall) in points:
    codec = stages.restore_codec(config, checkpoint)
    psnr = []
    for start in range(0, len(images), 64):
      batch = tf.constant(np.stack(images[start:start + 64]))
      decoded = to_uint8(codec(tf.image.convert_image_dtype(batch, tf.float32)))
      psnr.extend(tf.image.psnr(batch, decoded, max_val=255).numpy().tolist())
    rows.append(dict(step=step, cpu_hours=round(cpu / 3600, 3), wall_hours=round(wall / 3600, 3),
                     psnr=round(float(np.mean(psnr)), 3)))
    log(f"{name}: step {step}  {rows[-1]['cpu_hours']:.2f} CPU h  {rows[-1]['psnr']:.2f} dB")
  write_json(os.path.join(model_dir, zoo.RECORD_FILE),
             dict(zoo.record(name), curve=dict(images=len(images), size=settings.size,
                                               points=rows)))
  return rows


def package(run, name, command):
  """Copies the TDIC stage of the trained run `run` into the zoo as `name`: config.json (with
  the shipped sample as its data, for the export's calibration; the training data stays in
  record.json), the codec's weights alone at its last step, its entropy model, record.json
  (with the CPU and wall time training measured). config.json is written last: a directory
  without it is no shipped codec."""
  zoo.check_new_name(name)
  trained_run = Run.at(run)
  config = trained_run.config
  if config.resolved_loss != "tdic":
    raise UserError(f"{run}: a shipped codec is a TDIC run (--loss=tdic)")
  checkpoint = layout.latest_complete_checkpoint(layout.stage_dir(run, "tdic"), config.steps,
                                                 "TDIC")
  trained = stages.load_stage(trained_run, "tdic")
  target = layout.zoo_dir(name)
  tmp = target + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  shipped = dataclasses.replace(config, model_dir=name, dataset="sample", data_dir="",
                                cache=False, holdout_every=0)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(codec=trained.codec),
                                       layout.stage_dir(tmp, "tdic"), max_to_keep=1)
  manager.save(checkpoint_number=layout.checkpoint_step(checkpoint))
  shutil.copyfile(layout.entropy_model_path(os.path.dirname(checkpoint)),
                  layout.entropy_model_path(layout.stage_dir(tmp, "tdic")))
  time_path = os.path.join(os.path.dirname(checkpoint), layout.TRAINING_TIME_FILE)
  spent = read_json(time_path, "train the run again") if os.path.exists(time_path) else {}
  write_json(os.path.join(tmp, zoo.RECORD_FILE), formats.stamped(dict(
      name=name, command=command, steps=config.steps, bpp=config.bpp, filters=config.filters,
      stride=config.stride, trained_on=dict(dataset=config.dataset, data_dir=config.data_dir,
                                            split="train", holdout_every=config.holdout_every,
                                            image_size=config.image_size,
                                            crop_size=config.crop_size,
                                            crop_scale_min=config.crop_scale_min),
      cpu_seconds=spent.get("cpu_seconds"), wall_seconds=spent.get("wall_seconds"),
      training_time_history=spent.get("history"), fingerprint=trained.fingerprint.hex())))
  shipped.write(tmp)
  shutil.rmtree(target, ignore_errors=True)
  os.replace(tmp, target)
  return target


def pixel_codecs():
  """The shipped codecs trained on pixels (tdic-*); task-aware ones have tables of their own
  (task_codecs.table)."""
  return [n for n in zoo.names() if zoo.record(n).get("kind") != "task-aware codec"]


def table(names=None):
  """bin/models' table: each shipped codec with its measured figures."""
  lines = [f"{'name':12s} {'bpp':>6s} {'filters':>7s} {'steps':>7s}  "
           f"{'Kodak PSNR @ real bpp (Toderici 2017, WebP there)':52s} {'Imagenette-96 val':22s}"]
  names = names or pixel_codecs()
  if not names:
    return [f"no shipped codecs in {layout.ZOO_ROOT} yet"]
  for name in names:
    record = zoo.record(name)
    figures = record.get("figures", {})
    kodak, imagenette = figures.get("kodak"), figures.get("imagenette96")
    webp = f", {kodak['webp_psnr_at_bpp']:.2f}" if kodak and "webp_psnr_at_bpp" in kodak else ""
    kodak_cell = (f"{kodak['psnr']:.2f} dB @ {kodak['bpp']:.3f} "
                  f"({kodak['toderici_psnr_at_bpp']:.2f}{webp} dB)" if kodak else "not measured")
    imagenette_cell = (f"{imagenette['psnr']:.2f} dB @ {imagenette['bpp']:.3f}" if imagenette
                       else "not measured")
    lines.append(f"{name:12s} {record['bpp']:6g} {record['filters']:7d} {record['steps']:7d}  "
                 f"{kodak_cell:52s} {imagenette_cell:22s}")
  return lines


def _webp_cell(kodak):
  if not kodak or "webp_psnr_at_bpp" not in kodak:
    return "not measured"
  over = kodak["webp_over_budget"]
  return (f"{kodak['webp_psnr_at_bpp']:.2f} ({kodak['webp_bpp']:.3f} bpp"
          + (f"; {over} photo{'s' * (over > 1)} over: WebP's lowest quality is larger"
             if over else "") + ")")


def markdown(names=None):
  """The table of the shipped codecs and each recorded curve, as Markdown (bin/models --out)."""
  names = names or pixel_codecs()
  lines = ["# Shipped codecs: measured figures", "",
           "Written by `bin/models --out` from each codec's `record.json` "
           "(`saic_tf/experiments/model_zoo.py` says how each figure is measured; docs/zoo.md "
           "how the codecs were trained).", "",
           f"WebP is each Kodak photo's largest WebP file within its .saic file's bits; the "
           f"stretch goal is within {STRETCH_DB:g} dB of it.", "",
           "| name | bpp | filters | steps | CPU h | Kodak PSNR (dB) | Kodak real bpp | "
           "Toderici 2017 at that bpp (dB) | WebP at those bits (dB) | "
           "Imagenette-96 val PSNR (dB) | its real bpp |",
           "|---" * 11 + "|"]
  for name in names:
    record = zoo.record(name)
    figures = record.get("figures", {})
    kodak, imagenette = figures.get("kodak"), figures.get("imagenette96")
    cpu = record.get("cpu_seconds")
    cells = [name, f"{record['bpp']:g}", str(record["filters"]), str(record["steps"]),
             f"{cpu / 3600:.2f}" if cpu else "not recorded"]
    cells += ([f"{kodak['psnr']:.2f}", f"{kodak['bpp']:.3f}",
               f"{kodak['toderici_psnr_at_bpp']:.2f}"] if kodak else ["not measured"] * 3)
    cells.append(_webp_cell(kodak))
    cells += ([f"{imagenette['psnr']:.2f}", f"{imagenette['bpp']:.3f}"] if imagenette
              else ["not measured"] * 2)
    lines.append("| " + " | ".join(cells) + " |")
  for name in names:
    recorded = zoo.record(name).get("curve")
    if not recorded:
      continue
    lines += ["", f"## {name}: PSNR against training time", "",
              f"Imagenette val at {recorded['size']}×{recorded['size']} "
              f"({recorded['images']} images), the network alone (`bin/models --curve`).", "",
              "| step | CPU h | wall h | PSNR (dB) |", "|---|---|---|---|"]
    lines += [f"| {p['step']} | {p['cpu_hours']:.2f} | {p['wall_hours']:.2f} | "
              f"{p['psnr']:.2f} |" for p in recorded["points"]]
    lines += ["", trend_line(recorded["points"], IMAGENETTE_BARS.get(zoo.record(name)["bpp"]))]
  return "\n".join(lines + [""])


def trend(points, bar=None):
  """(dB per doubling of CPU time, points used, CPU h at which that trend reaches `bar` or None):
  a least-squares line of PSNR on log2(CPU h) through the points from TREND_FROM_CPU_HOURS on."""
  late = sorted((p for p in points if p["cpu_hours"] >= TREND_FROM_CPU_HOURS),
                key=lambda p: p["cpu_hours"])
  if len({p["cpu_hours"] for p in late}) < 3:
    return None, len(late), None
  slope, intercept = np.polyfit(np.log2([p["cpu_hours"] for p in late]),
                                [p["psnr"] for p in late], 1)
  reach = None
  if bar is not None and slope >= 0.01 and late[-1]["psnr"] < bar:  # a rise, not rounding
    reach = float(2 ** ((bar - intercept) / slope))
    if reach <= late[-1]["cpu_hours"]:  # the line is above the bar where the run is below it
      reach = None
  return float(slope), len(late), reach


def trend_line(points, bar=None):
  """What a longer run would give, as far as the curve says: its trend, extrapolated."""
  slope, used, reach = trend(points, bar)
  if slope is None:
    return f"Too few points from {TREND_FROM_CPU_HOURS:g} CPU h on for a trend."
  line = (f"Trend from {TREND_FROM_CPU_HOURS:g} CPU h on ({used} points, least squares of PSNR "
          f"on log2 CPU time): {slope:+.2f} dB per doubling of CPU time.")
  final = max(points, key=lambda p: p["cpu_hours"])
  if reach is not None:
    line += (f" Extrapolated, not measured: the {bar:.1f} dB bar at about {reach:.0f} CPU h "
             f"({reach / final['cpu_hours']:.1f}× this run). The points come from one "
             "cosine schedule, whose decay lifts its last points; a longer run would follow "
             "another schedule, so this is a rough guess, not a measurement.")
  elif bar is not None and final["psnr"] < bar:
    line += (f" No extrapolation to the {bar:.1f} dB bar: the line "
             f"{'does not rise' if slope < 0.01 else 'is above it already'}.")
  return line


def write_markdown(out, names=None):
  return write_bytes(out, markdown(names).encode())
