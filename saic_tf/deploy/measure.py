"""A codec alone on any images, through real .saic files (bin/measure; what CompressAI's
eval_model reports for its models).

Each image is compressed into .saic bytes by a FileCodec, decoded from those bytes, and compared
with itself: PSNR (tf.image.psnr, RGB, uint8 range) and MS-SSIM (tf.image.ssim_multiscale), the
file's real bpp (its bytes × 8 / pixels, header included) beside the nominal C/s², and the
encoding and decoding seconds; per image and as the mean over the images.

MS-SSIM's five standard scales need the image's shorter side above 160 pixels: each scale halves
the image (rounding up) and the coarsest must still hold the 11×11 window. A smaller image gets
as many of the finest scales as it holds (96×96: 4, 64×64: 3), their power factors renormalized
to sum to 1 so that the value is still a weighted geometric mean; each image records how many
it got, and one under 11 pixels has no MS-SSIM (null).
"""
import time

import numpy as np
import tensorflow as tf

from saic_tf.common.errors import UserError
from saic_tf.data.images import IMAGE_EXTENSIONS, read_image
from saic_tf.deploy.file_codec import FileCodec, input_files

# tf.image.ssim_multiscale's defaults (Wang et al., 2003): the factors of scales 1 (finest) to 5.
POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
MEANS = ("psnr", "ms_ssim", "bpp", "nominal_bpp", "encode_seconds", "decode_seconds")


def ms_ssim_scales(height, width):
  """How many of the standard scales an image of this size holds (module doc); 0: none."""
  side = min(height, width)
  return max(k for k in range(len(POWER_FACTORS) + 1)
             if k == 0 or -(-side // 2 ** (k - 1)) >= FILTER_SIZE)


def power_factors(scales):
  """The standard factors at five scales; with fewer, the finest ones summing to 1."""
  if scales == len(POWER_FACTORS):
    return POWER_FACTORS
  finest = POWER_FACTORS[:scales]
  return tuple(f / sum(finest) for f in finest)


def image_measures(original, decoded):
  """(PSNR in dB, MS-SSIM or None, its number of scales) of two uint8 [H, W, 3] images."""
  original, decoded = tf.constant(original), tf.constant(decoded)
  psnr = float(tf.image.psnr(original, decoded, max_val=255))
  scales = ms_ssim_scales(*original.shape[:2])
  ms_ssim = float(tf.image.ssim_multiscale(original, decoded, max_val=255,
                                           power_factors=power_factors(scales),
                                           filter_size=FILTER_SIZE)) if scales else None
  return psnr, ms_ssim, scales


def measure_image(codec: FileCodec, image):
  """One uint8 [H, W, 3] image through its .saic file: the figures of its row (module doc)."""
  height, width = image.shape[:2]
  start = time.perf_counter()
  content = codec.compress(image)
  encoded = time.perf_counter()
  decoded = codec.decompress(content)
  decode_seconds = time.perf_counter() - encoded
  psnr, ms_ssim, scales = image_measures(image, decoded)
  return dict(height=height, width=width, bytes=len(content),
              bpp=8 * len(content) / (height * width),
              nominal_bpp=codec.nominal_bpp(height, width), psnr=psnr, ms_ssim=ms_ssim,
              ms_ssim_scales=scales, encode_seconds=encoded - start,
              decode_seconds=decode_seconds)


def mean(rows):
  """The mean of each figure over the images that have it (MS-SSIM: those of 11 pixels and
  more), with the number of images and the scale counts MS-SSIM used."""
  figures = {key: (float(np.mean([r[key] for r in rows if r[key] is not None]))
                   if any(r[key] is not None for r in rows) else None) for key in MEANS}
  figures["images"] = len(rows)
  figures["ms_ssim_images"] = sum(r["ms_ssim"] is not None for r in rows)
  figures["ms_ssim_scales"] = sorted({r["ms_ssim_scales"] for r in rows})
  return figures


def measure(codec: FileCodec, paths, model=None, log=print):
  """Every image of `paths` (files, and the images inside directories) through a .saic file,
  with a line each. A bad input is listed and skipped. Returns (the record, the failures
  [(path, error)]); the record holds the codec, each image's row, their mean and the metrics'
  settings."""
  if not paths:
    raise UserError("no images given: bin/measure IMAGE|DIR... --model=MODEL")
  files = input_files(paths, IMAGE_EXTENSIONS)
  if not files:
    raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {' '.join(paths)}")
  rows, failures = [], []
  for number, (path, _) in enumerate(files, 1):
    try:
      row = dict(path=path, **measure_image(codec, read_image(path, codec.max_pixels)))
    except (UserError, OSError) as e:
      failures.append((path, str(e) if isinstance(e, UserError) else
                       f"cannot read ({e.strerror or e})"))
      log(f"[{number}/{len(files)}] {path}: error: {failures[-1][1]}")
      continue
    rows.append(row)
    ms_ssim = ("no MS-SSIM (under 11 pixels)" if row["ms_ssim"] is None else
               f"MS-SSIM {row['ms_ssim']:.4f} ({row['ms_ssim_scales']} scales)")
    log(f"[{number}/{len(files)}] {path}: {row['height']}x{row['width']}  PSNR "
        f"{row['psnr']:.2f} dB  {ms_ssim}  {row['bpp']:.4f} bpp (nominal "
        f"{row['nominal_bpp']:.4f})")
  record = dict(
      model=model, stage=codec.stage, fingerprint=codec.fingerprint.hex(),
      mean=mean(rows) if rows else None, images=rows,
      failures=[dict(path=p, error=e) for p, e in failures],
      metrics=dict(
          psnr="tf.image.psnr of the uint8 RGB images (max_val 255), dB",
          ms_ssim=dict(function="tf.image.ssim_multiscale", max_val=255,
                       filter_size=FILTER_SIZE, power_factors=list(POWER_FACTORS),
                       fewer_scales="an image too small for 5 scales gets the finest "
                                    "ms_ssim_scales of them, their factors renormalized to "
                                    "sum to 1"),
          bpp="8 × the .saic file's bytes (header included) / pixels",
          nominal_bpp="C / s² over the latent ⌈H/s⌉ × ⌈W/s⌉, per image pixel"))
  return record, failures


def summary(record):
  """The one-line summary of a record."""
  figures = record["mean"]
  name = f"{record['model']} ({record['stage']})" if record["model"] else record["stage"]
  if not figures:
    return f"{name}: no image measured"
  ms_ssim = "n/a" if figures["ms_ssim"] is None else f"{figures['ms_ssim']:.4f}"
  return (f"{name}: {figures['images']} images, mean PSNR {figures['psnr']:.2f} dB, MS-SSIM "
          f"{ms_ssim}, {figures['bpp']:.4f} bpp ({figures['nominal_bpp']:.4f} nominal)")
