"""Rate–distortion on Kodak: the 24 photos at full size, the real size of every file.

  learned     a trained run's codec (TDIC, APIC, SAIC, KD: its last stage) or a shipped codec,
              through .saic files, headers included (FileCodec, the path bin/compress takes);
              one point per run: mean PSNR over the photos against their mean real bpp
  codecs      JPEG, WebP and AVIF (Pillow) at fixed quality settings (QUALITIES), one point per
              setting, measured the same way
  published   curves from the literature, each cited by the file it comes from (PUBLISHED)
  beside      at each learned point's real bpp, the PSNR of every codec and published curve
              there (interpolated, never extrapolated)

PSNR is of the decoded uint8 RGB image against the original (max 255), as the published RGB
curves are. A run's figures are kept beside its checkpoints (<run>/kodak.json, with the
codec's fingerprint), so a resumed experiment measures each run once; within one process its
codec is not even loaded again while its files stay as they were (a study collects its results
after each run, each time over every run so far).
"""
import hashlib
import os
import re

from absl import logging
import numpy as np

from saic_tf.common import layout
from saic_tf.common.files import read_json, write_json
from saic_tf.common.run import Run
from saic_tf.deploy.file_codec import FileCodec
from saic_tf.evaluation import baselines
from saic_tf.evaluation import report
from saic_tf.evaluation import tables
from saic_tf.experiments import model_zoo

# Each curve as published (bpp, PSNR in dB over RGB), up to 1 bpp, with the file it is from.
PUBLISHED = (
    dict(name="toderici2017", short="Toderici 2017",
         label="Toderici et al. 2017, binary codes (published)",
         source="tensorflow/compression, results/image_compression/kodak/PSNR_sRGB_RGB/"
                "toderici-2017-cvpr.txt",
         bpp=(0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0),
         psnr=(23.014080, 25.646310, 27.144170, 28.267100, 29.281390, 30.144410, 30.941350,
               31.617940)),
    dict(name="bmshj2018-factorized", short="Ballé 2018",
         label="Ballé et al. 2018, factorized prior (published)",
         source="CompressAI, results/image/kodak/paper-bmshj2018-factorized.json",
         bpp=(0.119752, 0.194591, 0.316000, 0.481060, 0.721303),
         psnr=(26.775134, 28.348719, 30.020793, 31.729556, 33.685797)),
)
PUBLISHED_COLORS = ("black", "tab:purple")  # none of report.METHOD_COLORS
CODECS_FILE = "kodak_codecs.json"  # measure's cache of the codecs' curves
# Pillow quality settings drawn for each codec: from below the learned codecs' lowest rate on
# Kodak to about 1 bpp.
QUALITIES = {"jpeg": (2, 5, 10, 20, 35, 50), "webp": (0, 5, 15, 30, 50, 70),
             "avif": (5, 15, 30, 45, 60)}


# learned's figures in this process, by codec files and photos (module doc).
_LEARNED = {}


def _codec_files(run: Run):
  """(path, size, modification time) of each file of a run's codec stages: what its
  fingerprint (weights and entropy model) is made of."""
  state = []
  for _, checkpoint in layout.codec_stages(run.config, run.directory):
    for entry in sorted(os.scandir(os.path.dirname(checkpoint)), key=lambda e: e.name):
      if entry.is_file():
        state.append((entry.path, entry.stat().st_size, entry.stat().st_mtime_ns))
  return tuple(state)


def images_digest(images):
  """A digest of the photos `learned` measures on (its key within a process)."""
  digest = hashlib.sha256()
  for image in images:
    digest.update(str(image.shape).encode() + image.tobytes())
  return digest.hexdigest()


def learned(model_dir, images, stage=None, cache_dir=None, digest=None):
  """{psnr, bpp, images, stage, fingerprint} of a run's (or shipped codec's) .saic files,
  measured once per codec (its fingerprint: weights and entropy model): kept in
  <run>/kodak.json, or for a shipped codec in `cache_dir`/kodak_<name>.json (nothing is written
  into the package; without `cache_dir`, measured every time). `digest`: images_digest(images),
  when the caller has it."""
  run = Run.resolve(model_dir)
  if run.shipped:  # nothing is written into the package
    path = os.path.join(cache_dir, f"kodak_{model_dir}.json") if cache_dir else None
  else:
    path = os.path.join(model_dir, layout.KODAK_FILE)
  key = (model_dir, stage, path, digest or images_digest(images), _codec_files(run))
  if path and key in _LEARNED and os.path.exists(path):
    return _LEARNED[key]
  codec = FileCodec(run, stage)
  fingerprint = codec.fingerprint.hex()
  figures = None
  if path and os.path.exists(path):
    kept = read_json(path, "delete it to measure again")
    if kept.get("fingerprint") == fingerprint and kept.get("images") == len(images):
      figures = kept
  if figures is None:
    figures = dict(model_zoo.measure_images(codec, images), stage=codec.stage,
                   fingerprint=fingerprint)
    if path:
      write_json(path, figures)
  _LEARNED[key] = figures
  return figures


def codec_curve(images, codec, qualities=None):
  """[{quality, psnr, bpp}] of a Pillow codec at each quality setting, over `images`."""
  points = []
  for quality in qualities or QUALITIES[codec]:
    psnr, bpp = [], []
    for image in images:
      data = baselines.encode(image, codec, quality)
      psnr.append(model_zoo.image_psnr(image, baselines.decode(data)))
      bpp.append(8 * len(data) / (image.shape[0] * image.shape[1]))
    points.append(dict(quality=quality, psnr=float(np.mean(psnr)), bpp=float(np.mean(bpp))))
  return points


def figure(record, path):
  """PSNR against real bpp: each learned method (mean ± std over its runs), the codecs' curves
  and the published ones."""
  plt = report.pyplot()
  fig, axis = plt.subplots(figsize=(6, 4))
  for name, points in record["codecs"].items():
    axis.plot([p["bpp"] for p in points], [p["psnr"] for p in points], marker=".",
              label=f"{tables.METHOD_NAMES.get(name, name)} (Pillow)",
              color=report.METHOD_COLORS.get(name))
  for curve, color in zip(record["published"], PUBLISHED_COLORS):
    axis.plot(curve["bpp"], curve["psnr"], linestyle="--", marker="x", color=color,
              label=curve["label"])
  for method, points in record["learned"].items():
    axis.errorbar([p["bpp"] for p in points], [p["psnr"] for p in points],
                  yerr=[p.get("psnr_std", 0.0) for p in points], marker="o", capsize=3,
                  label=method,
                  color=report.METHOD_COLORS.get(re.split(r"[ (-]", method)[0].lower()))
  axis.set_xlabel("bpp of the files (real size)")
  axis.set_ylabel("PSNR (dB)")
  axis.set_title(f"Kodak ({record['images']} photos, full size)", fontsize=9)
  axis.set_xlim(0, 1.0)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=6)
  report.save_figure(fig, path)
  return path


def measure(groups, kodak_dir, cache_dir=None, log=logging.info):
  """The Kodak record: `groups` is {method label: [[model_dir, ...] per rate]}, the runs of one
  rate (its seeds) becoming one point (mean PSNR and bpp, PSNR's std over the runs). The codecs'
  curves are kept in `cache_dir`/kodak_codecs.json when given."""
  images = model_zoo.kodak_photos(kodak_dir)
  digest = images_digest(images)
  learned_points = {}
  for method, rates in groups.items():
    points = []
    for runs in rates:
      measured = [learned(run, images, cache_dir=cache_dir, digest=digest) for run in runs]
      psnr = [m["psnr"] for m in measured]
      points.append(dict(psnr=float(np.mean(psnr)),
                         bpp=float(np.mean([m["bpp"] for m in measured])),
                         psnr_std=float(np.std(psnr, ddof=1)) if len(psnr) > 1 else 0.0,
                         runs=len(measured)))
      log(f"kodak: {method}: {points[-1]}")
    learned_points[method] = sorted(points, key=lambda p: p["bpp"])
  cache = os.path.join(cache_dir, CODECS_FILE) if cache_dir else None
  key = dict(images=len(images), qualities={c: list(q) for c, q in QUALITIES.items()})
  kept = read_json(cache, "delete it") if cache and os.path.exists(cache) else {}
  if {k: kept.get(k) for k in key} == key:
    codecs = kept["codecs"]
  else:
    codecs = {}
    for codec in QUALITIES:
      codecs[codec] = codec_curve(images, codec)
      log(f"kodak: {codec}: {codecs[codec]}")
    if cache:
      write_json(cache, dict(key, codecs=codecs))
  record = dict(images=len(images), learned=learned_points, codecs=codecs,
                published=[dict(p) for p in PUBLISHED])
  return dict(record, beside=beside(record))


def beside(record):
  """{learned method: [{column: PSNR}]}: at each learned point's real bpp (column "bpp"), the
  PSNR that each codec's curve and each published curve reaches there, linear between its
  points; None outside them (no extrapolation)."""
  def ordered(bpps, psnrs):  # np.interp needs increasing bpp; each curve is sorted once
    order = np.argsort(bpps)
    return np.asarray(bpps)[order], np.asarray(psnrs)[order]

  curves = {tables.METHOD_NAMES.get(codec, codec): ordered([p["bpp"] for p in points],
                                                           [p["psnr"] for p in points])
            for codec, points in record["codecs"].items()}
  curves.update({curve["short"]: ordered(curve["bpp"], curve["psnr"])
                 for curve in record["published"]})

  def at(bpp, curve):
    x, y = curve
    return float(np.interp(bpp, x, y)) if x[0] <= bpp <= x[-1] else None

  return {method: [dict(bpp=p["bpp"], **{name: at(p["bpp"], curve)
                                         for name, curve in curves.items()}) for p in points]
          for method, points in record["learned"].items()}
