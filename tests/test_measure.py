"""bin/measure: the shipped codec tdic-0.25 alone on a few tiny real images, through real .saic
files."""
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from conftest import IMAGES
from saic_tf.common.errors import UserError
from saic_tf.data.images import read_image
from saic_tf.deploy import measure
from saic_tf.deploy.file_codec import FileCodec
from test_cli import error_lines, run_bin

SIZES = {"cat/x.png": (96, 96), "dog/x.png": (64, 80), "dog/tiny.png": (9, 9)}  # (height, width)


@pytest.fixture(scope="module")
def codec():
  return FileCodec("tdic-0.25")


@pytest.fixture
def folder(tmp_path):
  """Real photos of the sample at the sizes of SIZES, two of them of one name."""
  for (name, (height, width)), source in zip(SIZES.items(), sorted(os.listdir(IMAGES))):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    Image.open(os.path.join(IMAGES, source)).convert("RGB").resize((width, height)).save(
        tmp_path / name)
  return tmp_path


@pytest.mark.parametrize("side", [10, 11, 20, 21, 43, 44, 87, 96, 160, 161])
def test_ms_ssim_takes_as_many_standard_scales_as_tensorflow_allows(side):
  scales = measure.ms_ssim_scales(side, side + 7)
  assert scales == sum(side > 10 * 2**k for k in range(5))  # the coarsest holds 11x11
  image = tf.constant(np.random.RandomState(side).randint(0, 256, (side, side + 7, 3)), tf.uint8)
  if scales:
    factors = measure.power_factors(scales)
    assert sum(factors) == pytest.approx(1.0, abs=2e-4)
    same = tf.image.ssim_multiscale(image, image, 255, power_factors=factors)
    assert float(same) == pytest.approx(1)
  if scales < 5:
    with pytest.raises(tf.errors.InvalidArgumentError):
      tf.image.ssim_multiscale(image, image, 255, power_factors=measure.POWER_FACTORS[:scales + 1])
  assert measure.power_factors(5) == measure.POWER_FACTORS


def test_each_image_goes_through_its_saic_file(codec, folder):
  lines = []
  record, failures = measure.measure(codec, [str(folder)], model="tdic-0.25", log=lines.append)
  assert not failures and len(lines) == 3 and lines[0].startswith("[1/3] ")
  rows = {os.path.relpath(row["path"], folder): row for row in record["images"]}
  assert set(rows) == set(SIZES)
  for name, row in rows.items():
    image = read_image(str(folder / name))
    content = codec.compress(image)
    assert (row["height"], row["width"]) == SIZES[name] and row["bytes"] == len(content)
    assert row["bpp"] == 8 * len(content) / image.shape[0] / image.shape[1]
    assert row["nominal_bpp"] == codec.nominal_bpp(*SIZES[name])
    decoded = codec.decompress(content)
    assert row["psnr"] == pytest.approx(float(tf.image.psnr(image, decoded, 255)))
  assert [rows[n]["ms_ssim_scales"] for n in SIZES] == [4, 3, 0]
  assert rows["dog/tiny.png"]["ms_ssim"] is None and 0 < rows["cat/x.png"]["ms_ssim"] < 1
  mean = record["mean"]
  assert mean["images"] == 3 and mean["ms_ssim_images"] == 2
  assert mean["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows.values()]))
  assert mean["ms_ssim"] == pytest.approx(np.mean([rows[n]["ms_ssim"] for n in SIZES][:2]))
  assert record["fingerprint"] == codec.fingerprint.hex() and record["stage"] == "tdic"
  assert measure.summary(record).startswith("tdic-0.25 (tdic): 3 images, mean PSNR ")
  json.dumps(record)  # all of it is JSON
  with pytest.raises(UserError, match="no images given"):
    measure.measure(codec, [])
  (folder / "empty").mkdir()
  with pytest.raises(UserError, match="no images"):
    measure.measure(codec, [str(folder / "empty")])


def test_bin_measure_writes_the_json_and_lists_a_bad_image_in_one_line(folder, tmp_path):
  (folder / "dog" / "tiny.png").unlink()
  (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  out = tmp_path / "figures" / "m.json"
  result = run_bin("measure", str(folder), "--model=tdic-0.25", f"--out={out}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert "broken.png: not a readable image" in line
  summary = [l for l in result.stdout.splitlines() if l.startswith("tdic-0.25 (tdic): ")]
  assert len(summary) == 1 and "2 images, mean PSNR" in summary[0]
  assert f"wrote {out}" in result.stdout
  record = json.load(open(out))
  assert len(record["images"]) == 2 and record["failures"][0]["path"].endswith("broken.png")
  assert record["mean"]["ms_ssim_scales"] == [3, 4]
