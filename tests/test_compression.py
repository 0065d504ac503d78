"""bin/compress and bin/decompress with a tiny trained TDIC run on real images."""
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from saic_tf import baselines, compression
from conftest import IMAGES
from test_cli import run_bin



def test_file_round_trip_equals_the_codec_and_beats_the_nominal_rate(tdic_run):
  codec = compression.FileCodec(tdic_run, fit_images=64)
  for name in sorted(os.listdir(IMAGES))[:3]:
    image = compression.read_image(os.path.join(IMAGES, name))
    odd = image[:201, :157]  # sizes that are not multiples of the stride
    content = codec.compress(odd)
    decoded = codec.decompress(content)
    floats = tf.image.convert_image_dtype(tf.constant(odd)[None], tf.float32)
    bits = codec.codec.encode(floats)
    expected = baselines.to_uint8(codec.codec.decode(bits, 201, 157)[0].numpy())
    np.testing.assert_array_equal(decoded, expected)
    assert 8 * len(content) / (201 * 157) < codec.nominal_bpp(201, 157)
  assert os.path.exists(os.path.join(tdic_run, "tdic", compression.ENTROPY_MODEL_FILE))


def test_cli_round_trip_and_errors(tdic_run, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  for name in sorted(os.listdir(IMAGES))[:2]:
    Image.open(os.path.join(IMAGES, name)).save(inputs / (name + ".png"))
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  result = run_bin("compress", str(inputs), f"--model={tdic_run}", "-o", str(tmp_path / "saic"))
  assert result.returncode == 1  # the broken file is listed, the good ones are written
  assert "broken.png" in result.stderr and "bpp actual" in result.stdout
  written = sorted(os.listdir(tmp_path / "saic"))
  assert written == sorted(n[:-4] + ".saic" for n in os.listdir(inputs) if n != "broken.png")
  result = run_bin("decompress", str(tmp_path / "saic"), f"--model={tdic_run}", "-o",
                   str(tmp_path / "png"))
  assert result.returncode == 0, result.stderr[-2000:]
  for name in written:
    with Image.open(tmp_path / "png" / (name[:-5] + ".png")) as image:
      assert image.size == (224, 224)
  one = tmp_path / "saic" / written[0]
  truncated = tmp_path / "truncated.saic"
  truncated.write_bytes(one.read_bytes()[:-10])
  result = run_bin("decompress", str(truncated), f"--model={tdic_run}", "-o",
                   str(tmp_path / "out.png"))
  assert result.returncode != 0 and "truncated" in result.stderr
  assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "out.png")
