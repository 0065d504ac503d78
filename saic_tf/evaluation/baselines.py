"""The codecs everyone already has, at the learned codec's rate: JPEG, WebP and AVIF (Pillow).

Per image, the quality is searched whose file is the largest that does not exceed the target
size (target bpp × H × W / 8 bytes), by bisection over the codec's quality range with every
candidate actually encoded. Where even the lowest quality is larger than the target (headers
alone can be: a JPEG of 96×96 pixels never gets below roughly 0.7 bpp), the lowest quality is
used and the image is counted as over the target, so tables can say so instead of hiding it.
"""
import dataclasses
import io

import numpy as np
from PIL import Image

from saic_tf.data.images import to_uint8

# Pillow format name and quality range of each codec (lowest first).
CODECS = {"jpeg": ("JPEG", 1, 95), "webp": ("WEBP", 0, 100), "avif": ("AVIF", 0, 100)}


@dataclasses.dataclass
class Encoded:
  quality: int
  data: bytes
  bpp: float
  within_target: bool


def encode(image_uint8, codec, quality):
  buffer = io.BytesIO()
  Image.fromarray(image_uint8).save(buffer, CODECS[codec][0], quality=int(quality))
  return buffer.getvalue()


def decode(data):
  """File bytes -> uint8 RGB array."""
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode_at_bpp(image_uint8, codec, target_bpp):
  """The best-quality file of `image_uint8` [H, W, 3] no larger than `target_bpp`."""
  height, width = image_uint8.shape[:2]
  budget = target_bpp * height * width / 8.0
  _, low, high = CODECS[codec]
  best = None
  while low <= high:
    quality = (low + high) // 2
    data = encode(image_uint8, codec, quality)
    if len(data) <= budget:
      best, low = (quality, data), quality + 1
    else:
      high = quality - 1
  within = best is not None
  if not within:
    lowest = CODECS[codec][1]
    best = (lowest, encode(image_uint8, codec, lowest))
  quality, data = best
  return Encoded(quality, data, len(data) * 8.0 / (height * width), within)


def round_trip(images, codec, target_bpp):
  """A batch of float images -> (decoded float images, bpp per image, within-target flags)."""
  decoded, bpp, within = [], [], []
  for image in np.asarray(images):
    encoded = encode_at_bpp(to_uint8(image).numpy(), codec, target_bpp)
    decoded.append(decode(encoded.data).astype(np.float32) / 255.0)
    bpp.append(encoded.bpp)
    within.append(encoded.within_target)
  return np.stack(decoded), np.array(bpp), np.array(within)
