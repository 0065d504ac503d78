"""The one image reader: every format and mode Pillow reads becomes 8-bit RGB, in bin/compress
and in image folders; bad files are one line that names them."""
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from conftest import IMAGES
from saic_tf.common.errors import UserError
from saic_tf.data import datasets, images
from test_cli import run_bin

# Pillow format, file name, lossless (decoded pixels equal the saved ones).
FORMATS = [("JPEG", "photo.jpg", False), ("PNG", "photo.png", True),
           ("WEBP", "photo.webp", False), ("AVIF", "photo.avif", False),
           ("TIFF", "photo.tiff", True), ("BMP", "photo.bmp", True), ("GIF", "photo.gif", False)]


@pytest.fixture(scope="module")
def real():
  with Image.open(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])) as image:
    return image.convert("RGB").resize((61, 47))


@pytest.mark.parametrize("fmt, name, lossless", FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_reads_as_8_bit_rgb(tmp_path, real, fmt, name, lossless):
  path = tmp_path / name
  real.save(path, fmt)
  image = images.read_image(str(path))
  assert image.dtype == np.uint8 and image.shape == (47, 61, 3)
  if lossless:
    np.testing.assert_array_equal(image, np.asarray(real))
  else:  # lossy, or a 256-colour palette (GIF): close to the original
    assert np.abs(image.astype(int) - np.asarray(real)).mean() < 12


def test_modes_become_8_bit_rgb(tmp_path, real):
  grey = np.asarray(real.convert("L"))
  Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
  real.convert("CMYK").save(tmp_path / "cmyk.jpg")
  real.convert("CMYK").save(tmp_path / "cmyk.tiff")
  real.convert("P").save(tmp_path / "palette.png")
  real.convert("RGBA").save(tmp_path / "alpha.webp", lossless=True)
  real.convert("LA").save(tmp_path / "grey_alpha.png")
  sixteen = images.read_image(str(tmp_path / "sixteen.png"))
  np.testing.assert_array_equal(sixteen, np.repeat(grey[..., None], 3, axis=-1))
  np.testing.assert_array_equal(images.read_image(str(tmp_path / "alpha.webp")),
                                np.asarray(real))
  np.testing.assert_array_equal(images.read_image(str(tmp_path / "grey_alpha.png"))[..., 1],
                                grey)
  for name in ("cmyk.jpg", "cmyk.tiff", "palette.png"):  # Pillow's own conversion to RGB
    image = images.read_image(str(tmp_path / name))
    with Image.open(tmp_path / name) as opened:
      assert opened.mode in ("CMYK", "P"), (name, opened.mode)
      np.testing.assert_array_equal(image, np.asarray(opened.convert("RGB")), err_msg=name)


def test_an_animation_gives_its_first_frame(tmp_path, real):
  second = Image.fromarray(255 - np.asarray(real))
  real.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100)
  frame = images.read_image(str(tmp_path / "anim.gif"))
  assert np.abs(frame.astype(int) - np.asarray(real)).mean() < 12


def test_bad_files_are_one_line_and_the_pixel_limit_states_the_declared_size(tmp_path):
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "text.webp").write_text("not an image")
  with pytest.raises(UserError, match=r"^not a readable image \(the file is empty\)$"):
    images.read_image(str(tmp_path / "empty.png"))
  for name in ("text.webp", "missing.tiff"):
    with pytest.raises(UserError, match=r"^not a readable image \(") as error:
      images.read_image(str(tmp_path / name))
    assert "\n" not in str(error.value) and "function_node" not in str(error.value)
    assert name not in str(error.value)  # Pillow's own message names the file: the caller does
  (tmp_path / "declared.png").write_bytes(png_declaring(60000, 60000))
  with pytest.raises(UserError, match=r"image of 60000x60000 = 3600000000 pixels is above "
                     r"--max_pixels=16777216"):
    images.read_image(str(tmp_path / "declared.png"), max_pixels=1 << 24)


def png_declaring(width, height):
  """A 1×1 PNG whose header declares width×height (IHDR rewritten, CRC-32 fixed): the pixel
  limit must act on the declared size before anything is decoded."""
  buffer = io.BytesIO()
  Image.new("L", (1, 1)).save(buffer, "PNG")
  data = bytearray(buffer.getvalue())
  start = data.index(b"IHDR")  # length (4 bytes) before it, then type, 13 bytes of data, CRC
  data[start + 4:start + 12] = struct.pack(">II", width, height)
  data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
  return bytes(data)


@pytest.mark.slow
def test_bin_compress_reads_webp_and_tiff_and_names_bad_files(tdic_run, tmp_path, real):
  inputs = tmp_path / "in"
  inputs.mkdir()
  real.save(inputs / "a.webp")
  real.save(inputs / "b.tiff")
  (inputs / "c.avif").write_bytes(b"")
  result = run_bin("compress", str(inputs), f"--model={tdic_run}", "-o", str(tmp_path / "out"))
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert sorted(os.listdir(tmp_path / "out")) == ["a.saic", "b.saic"]
  error_line = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(error_line) == 1 and "c.avif: not a readable image (the file is empty)" in (
      error_line[0])
  (inputs / "c.avif").unlink()
  real.save(inputs / "a.png")  # a.webp and a.png would both become a.saic
  result = run_bin("compress", str(inputs), f"--model={tdic_run}", "-o", str(tmp_path / "o2"))
  assert result.returncode == 1 and "is " in result.stderr and "different names" in (
      result.stderr)
  assert sorted(os.listdir(tmp_path / "o2")) == ["a.saic", "b.saic"]


def test_an_image_folder_of_other_formats_reads_through_the_same_reader(tmp_path, real):
  for split in ("train", "val"):
    for label, fmt, ext in (("cat", "WEBP", ".webp"), ("dog", "TIFF", ".tif")):
      folder = tmp_path / split / label
      folder.mkdir(parents=True)
      real.save(folder / f"x{ext}", fmt)
      real.convert("CMYK").save(folder / f"y{ext}" if fmt == "TIFF" else folder / "y.jpg")
  source = datasets.load("imagefolder", "train", str(tmp_path))
  assert source.num_examples == 4
  batch, labels = next(iter(datasets.eval_dataset(source, 16, 4)))
  assert batch.shape == (4, 16, 16, 3) and sorted(labels.numpy()) == [0, 0, 1, 1]
  tiff = [i for i, p in enumerate(source.arrays[0].numpy()) if p.endswith(b"x.tif")][0]
  np.testing.assert_allclose(batch[tiff].numpy(), datasets.resize(np.asarray(real), 16),
                             atol=1e-6)
