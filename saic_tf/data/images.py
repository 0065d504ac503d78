"""The one image reader (bin/compress, image folders, evaluation) and the conversions every
stage shares: to RGB, the pixel limit, floats in [0, 1] back to uint8."""
from PIL import Image
import tensorflow as tf

from saic_tf.common.errors import first_line, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The encoder and decoder hold ~10 float tensors of filters × (H/2) × (W/2) at once: 2^24 pixels
# (e.g. 4096×4096) take several GiB at the default width.
DEFAULT_MAX_PIXELS = 1 << 24


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


def decode_image_file(path):
  """Reads and decodes one JPEG/PNG/BMP/GIF file to uint8 RGB (greyscale and RGBA converted)."""
  image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def to_uint8(images):
  """Float images in [0, 1] (tensor or array, any shape) -> uint8 tensor, rounded half to even.
  Core TF ops only, so the SavedModel's signatures use it too; `.numpy()` for an array."""
  return tf.cast(tf.round(tf.clip_by_value(tf.convert_to_tensor(images, tf.float32), 0.0, 1.0)
                          * 255.0), tf.uint8)


def check_pixels(height, width, max_pixels):
  """Bounded memory: the codec runs on the whole image at once."""
  if height * width > max_pixels:
    raise UserError(f"image of {height}x{width} = {height * width} pixels is above "
                    f"--max_pixels={max_pixels} (raise it if the machine has the memory)")


def read_image(path, max_pixels=None):
  """uint8 RGB [H, W, 3] of an image file; a UserError if unreadable or above `max_pixels`
  (checked from the file's header, before anything is decoded)."""
  if max_pixels:
    try:
      with Image.open(path) as image:
        width, height = image.size
    except Image.DecompressionBombError:
      width = height = max_pixels  # far above any sane limit
    except OSError:
      width = height = 0  # not an image Pillow knows: TensorFlow's decoder says what is wrong
    check_pixels(height, width, max_pixels)
  try:
    return decode_image_file(path).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
          tf.errors.PermissionDeniedError, tf.errors.FailedPreconditionError) as e:
    raise UserError(f"not a readable image ({first_line(e, 120)})") from None
