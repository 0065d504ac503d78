"""The one image reader (bin/compress, image folders, hence bin/train and bin/evaluate) and the
conversions every stage shares: to RGB, the pixel limit, floats in [0, 1] back to uint8.

Every format Pillow reads (JPEG, PNG, WebP, AVIF, TIFF, BMP, GIF's first frame, ...) comes out
as 8-bit RGB: greyscale is repeated, alpha dropped, palette and CMYK images converted, and
16-bit samples scaled to 8 bits (v / 257, rounded). The pixel limit is checked against the size
the file declares, before anything is decoded.
"""
import contextlib
import os
import threading

import numpy as np
from PIL import Image
import tensorflow as tf

from saic_tf.common.errors import first_line, UserError

# What image folders and bin/compress pick up in directories (files named one by one are read
# whatever their name).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".avif",
                    ".avifs", ".tif", ".tiff", ".bmp", ".dib", ".gif", ".ppm", ".pgm", ".pbm",
                    ".pnm", ".tga", ".qoi", ".jp2", ".j2k")
# The encoder and decoder hold ~10 float tensors of filters × (H/2) × (W/2) at once: 2^24 pixels
# (e.g. 4096×4096) take several GiB at the default width.
DEFAULT_MAX_PIXELS = 1 << 24
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_HEADER_LOCK = threading.Lock()


def to_rgb(image):
  """uint8 [H, W, 1|3|4] -> [H, W, 3]: greyscale is repeated, alpha dropped."""
  channels = image.shape[-1]
  if channels == 1:
    image = tf.image.grayscale_to_rgb(image)
  elif channels == 4:
    image = image[..., :3]
  elif channels != 3:
    raise ValueError(f"images need 1, 3 or 4 channels, got shape {image.shape}")
  return image


@contextlib.contextmanager
def _no_bomb_check():
  """Pillow refuses to open an image of more than 2 × Image.MAX_IMAGE_PIXELS pixels without
  saying its size; opening reads only the header, so the check is ours (check_pixels)."""
  with _HEADER_LOCK:
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
      yield
    finally:
      Image.MAX_IMAGE_PIXELS = limit


def _to_rgb_array(image):
  """uint8 [H, W, 3] of an opened Pillow image in any mode."""
  if image.mode in _SIXTEEN_BIT_MODES or image.mode == "F":
    values = np.asarray(image, np.float64)
    if image.mode != "F":
      values = values / 257.0  # 16-bit samples: 65535 -> 255
    elif values.size and values.max() <= 1.0:
      values = values * 255.0  # floats in [0, 1]
    grey = np.clip(np.round(values), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")  # the palette's transparency, then dropped with the alpha
  return np.asarray(image.convert("RGB"))


def read_image(path, max_pixels=None):
  """uint8 RGB [H, W, 3] of an image file (module doc); a UserError if it cannot be read or
  declares more than `max_pixels` pixels."""
  if isinstance(path, np.ndarray):  # a string tensor's value (decode_image_file)
    path = path.item()
  if isinstance(path, bytes):
    path = path.decode()
  try:
    if os.path.getsize(path) == 0:
      raise UserError("not a readable image (the file is empty)")
    with _no_bomb_check():
      image = Image.open(path)
    with image:
      width, height = image.size
      if max_pixels:
        check_pixels(height, width, max_pixels)
      image.seek(0)  # an animation's first frame
      return _to_rgb_array(image)
  except UserError:
    raise
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    # Pillow: UnidentifiedImageError (an OSError) for what it cannot identify, OSError for
    # truncated data, SyntaxError or ValueError for some malformed headers.
    reason = ("no format Pillow reads" if isinstance(e, Image.UnidentifiedImageError) else
              getattr(e, "strerror", None) or first_line(e, 120))  # Pillow's names the file
    raise UserError(f"not a readable image ({reason})") from None


def as_rgb_uint8(image, max_pixels=None):
  """uint8 RGB [H, W, 3] of what the Python API takes: a file path, a Pillow image in any mode,
  or an array (uint8, bool, 16-bit or floats in [0, 1]; [H, W], [H, W, 1], [H, W, 3] or
  [H, W, 4]: greyscale repeated, alpha dropped, as read_image does with files)."""
  if isinstance(image, (str, bytes, os.PathLike)):
    path = os.fsdecode(image)
    try:
      return read_image(path, max_pixels)
    except UserError as e:
      raise UserError(f"{path}: {e}") from None
    except OSError as e:
      raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
  if isinstance(image, Image.Image):
    if max_pixels:
      check_pixels(image.size[1], image.size[0], max_pixels)
    return _to_rgb_array(image)
  try:
    array = np.asarray(image)
  except Exception:  # pylint: disable=broad-except
    array = None
  if array is None or array.dtype == object or array.ndim not in (2, 3) or (
      array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
    what = (f"an array of shape {array.shape}" if array is not None and array.ndim else
            f"a {type(image).__name__}")
    raise UserError(f"cannot take {what} as an image: give a file path, a PIL image, or an "
                    "array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]")
  if max_pixels:
    check_pixels(array.shape[0], array.shape[1], max_pixels)
  if array.dtype == np.bool_:
    array = array.astype(np.uint8) * 255
  elif array.dtype == np.uint16:
    array = np.round(array / 257.0).astype(np.uint8)
  elif np.issubdtype(array.dtype, np.floating):
    if array.size and not (np.nanmin(array) >= 0.0 and np.nanmax(array) <= 1.0):
      raise UserError("a float array must hold values in [0, 1] (or pass uint8 pixels)")
    array = to_uint8(array).numpy()
  elif array.dtype != np.uint8:
    raise UserError(f"cannot take a {array.dtype} array as an image: give uint8 (0..255), "
                    "uint16, bool or floats in [0, 1]")
  if array.ndim == 2 or array.shape[-1] == 1:
    array = np.repeat(array.reshape(array.shape[:2] + (1,)), 3, axis=-1)
  return np.ascontiguousarray(array[..., :3])


def _read_named(path):
  """read_image, with the file named in its error (a pipeline's error cannot say which)."""
  try:
    return read_image(path, DEFAULT_MAX_PIXELS)
  except UserError as e:
    name = path.item() if isinstance(path, np.ndarray) else path
    raise UserError(f"{name.decode() if isinstance(name, bytes) else name}: {e}") from None


def decode_image_file(path):
  """The reader in a TensorFlow graph (tf.data): path string tensor -> uint8 [H, W, 3]. A bad
  file fails the pipeline with a TensorFlow error that carries "UserError: <path>: <why>"
  (errors.user_error_inside; cli.run prints that line)."""
  image = tf.numpy_function(_read_named, [path], tf.uint8, stateful=False)
  image.set_shape([None, None, 3])
  return image


def to_uint8(images):
  """Float images in [0, 1] (tensor or array, any shape) -> uint8 tensor: cast to float32,
  clipped, times 255, rounded half to even. Core TF ops only, so the SavedModel's signatures
  use it too; `.numpy()` for an array."""
  return tf.cast(tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0) * 255.0),
                 tf.uint8)


def check_pixels(height, width, max_pixels):
  """Bounded memory: the codec runs on the whole image at once."""
  if height * width > max_pixels:
    raise UserError(f"image of {height}x{width} = {height * width} pixels is above "
                    f"--max_pixels={max_pixels} (raise it if the machine has the memory)")
