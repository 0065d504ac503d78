"""bin/compress and bin/decompress with a tiny trained TDIC run on real images."""
import os
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from conftest import IMAGES, ROOT
from saic_tf.codec import stages
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.run import Run
from saic_tf.data.images import read_image, to_uint8
from saic_tf.deploy import file_codec
from test_cli import run_bin

LEGACY = os.path.join(ROOT, "tests", "data", "legacy_saic")


def test_file_round_trip_equals_the_codec_and_beats_the_nominal_rate(tdic_run):
  codec = file_codec.FileCodec(tdic_run)
  for name in sorted(os.listdir(IMAGES))[:3]:
    image = read_image(os.path.join(IMAGES, name))
    odd = image[:201, :157]  # sizes that are not multiples of the stride
    content = codec.compress(odd)
    decoded = codec.decompress(content)
    floats = tf.image.convert_image_dtype(tf.constant(odd)[None], tf.float32)
    bits = codec.codec.encode(floats)
    expected = to_uint8(codec.codec.decode(bits, 201, 157)[0]).numpy()
    np.testing.assert_array_equal(decoded, expected)
    assert 8 * len(content) / (201 * 157) < codec.nominal_bpp(201, 157)


@pytest.mark.slow
def test_training_fits_the_entropy_model_and_reading_never_does(tdic_run, tmp_path):
  """bin/train ends each codec stage with its entropy model; compress, decompress and evaluate
  only read it (a missing one is a one-line error naming bin/export), and bin/export fits it
  for a run that has none: the same model training fitted."""
  fitted = os.path.join(tdic_run, "tdic", layout.ENTROPY_MODEL_FILE)
  assert os.path.exists(fitted)
  old = str(tmp_path / "old_run")
  shutil.copytree(tdic_run, old)
  os.remove(os.path.join(old, "tdic", layout.ENTROPY_MODEL_FILE))
  with pytest.raises(UserError, match=r"entropy_model.json: missing .*bin/export --model_dir="):
    file_codec.FileCodec(old)
  assert not os.path.exists(os.path.join(old, "tdic", layout.ENTROPY_MODEL_FILE))
  result = run_bin("compress", os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0]),
                   f"--model={old}", "-o", str(tmp_path / "x.saic"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "bin/export --model_dir=" in result.stderr
  written = stages.fit_missing_entropy_models(Run.at(old))
  assert written == [os.path.join(old, "tdic", layout.ENTROPY_MODEL_FILE)]
  assert open(written[0]).read() == open(fitted).read()
  assert stages.fit_missing_entropy_models(Run.at(old)) == []  # nothing to do


def test_a_file_written_before_the_package_moved_decodes_to_the_same_pixels():
  """tests/data/legacy_saic/ was written by the flat-module code (saic_tf/compression.py): its
  run, a .saic file made with it, and the pixels that code decoded."""
  codec = file_codec.FileCodec(os.path.join(LEGACY, "run"))
  with open(os.path.join(LEGACY, "image.saic"), "rb") as f:
    decoded = codec.decompress(f.read())
  expected = np.asarray(Image.open(os.path.join(LEGACY, "decoded.png")))
  assert decoded.shape == expected.shape == (75, 97, 3)
  np.testing.assert_array_equal(decoded, expected)


@pytest.mark.slow
def test_cli_round_trip_and_errors(tdic_run, tmp_path):
  """Two images of one name in two sub-folders: -o mirrors the input tree, in both commands."""
  inputs = tmp_path / "in"
  for folder, name in zip(("cat", "dog"), sorted(os.listdir(IMAGES))[:2]):
    (inputs / folder).mkdir(parents=True)
    Image.open(os.path.join(IMAGES, name)).save(inputs / folder / "x.png")
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  result = run_bin("compress", str(inputs), f"--model={tdic_run}", "-o", str(tmp_path / "saic"))
  assert result.returncode == 1  # the broken file is listed, the good ones are written
  assert "broken.png" in result.stderr and "bpp actual" in result.stdout
  written = [os.path.join("cat", "x.saic"), os.path.join("dog", "x.saic")]
  assert sorted(os.listdir(tmp_path / "saic")) == ["cat", "dog"]
  assert all(os.listdir(tmp_path / "saic" / folder) == ["x.saic"] for folder in ("cat", "dog"))
  result = run_bin("decompress", str(tmp_path / "saic"), f"--model={tdic_run}", "-o",
                   str(tmp_path / "png"))
  assert result.returncode == 0, result.stderr[-2000:]
  decoded = []
  for name in written:
    with Image.open(tmp_path / "png" / (name[:-5] + ".png")) as image:
      assert image.size == (224, 224)
      decoded.append(np.asarray(image))
  assert not np.array_equal(*decoded)  # two images, neither written over the other
  one = tmp_path / "saic" / written[0]
  truncated = tmp_path / "truncated.saic"
  truncated.write_bytes(one.read_bytes()[:-10])
  result = run_bin("decompress", str(truncated), f"--model={tdic_run}", "-o",
                   str(tmp_path / "out.png"))
  assert result.returncode != 0 and "truncated" in result.stderr
  assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "out.png")


def test_without_o_each_output_lands_beside_its_input_and_never_over_a_file(tmp_path):
  """file_codec.process with no -o (the work stands in for the codec)."""
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in ("x.jpg", "x.png", "y.jpg", "z.jpg"):
    (folder / name).write_bytes(b"image")
  (folder / "y.saic").write_bytes(b"kept")

  def work(path):
    if path.endswith("z.jpg"):  # another process makes the output while this one codes
      (folder / "z.saic").write_bytes(b"theirs")
    return b"coded " + os.path.basename(path).encode(), ""

  failures = dict(file_codec.process([str(folder)], None, (".jpg", ".png"), ".saic", work))
  assert (folder / "x.saic").read_bytes() == b"coded x.jpg"
  assert "x.saic is " in failures[str(folder / "x.png")]  # the same name: said, not "give -o"
  assert "y.saic exists: not overwritten" in failures[str(folder / "y.jpg")]
  assert "z.saic exists: not overwritten" in failures[str(folder / "z.jpg")]
  assert (folder / "y.saic").read_bytes() == b"kept"
  assert (folder / "z.saic").read_bytes() == b"theirs"
  assert sorted(os.listdir(folder)) == ["x.jpg", "x.png", "x.saic", "y.jpg", "y.saic", "z.jpg",
                                        "z.saic"]  # no temporary file left


def test_with_o_the_tree_under_each_named_directory_is_mirrored(tmp_path):
  """file_codec.process with -o (the work stands in for the codec): files found in a named
  directory keep their path relative to it; a named file keeps its base name, and alone it
  may name the output file, as before."""
  for name in ("photos/cat/x.png", "photos/dog/x.png", "photos/dog/deep/y.jpg", "more/x.png",
               "single.jpg"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(name.encode())
  work = lambda path: (b"coded " + open(path, "rb").read(), "")
  out = tmp_path / "out"
  failures = dict(file_codec.process([str(tmp_path / "photos"), str(tmp_path / "single.jpg"),
                                      str(tmp_path / "more")], str(out), (".jpg", ".png"),
                                     ".saic", work))
  assert (out / "cat" / "x.saic").read_bytes() == b"coded photos/cat/x.png"
  assert (out / "dog" / "x.saic").read_bytes() == b"coded photos/dog/x.png"
  assert (out / "dog" / "deep" / "y.saic").read_bytes() == b"coded photos/dog/deep/y.jpg"
  assert (out / "single.saic").read_bytes() == b"coded single.jpg"
  assert (out / "x.saic").read_bytes() == b"coded more/x.png" and not failures
  # Two named directories, each with an x.png at its top: one output name, the second listed.
  failures = dict(file_codec.process([str(tmp_path / "more"), str(tmp_path / "photos" / "cat")],
                                     str(tmp_path / "out2"), (".png",), ".saic", work))
  assert "x.saic is " in failures[str(tmp_path / "photos" / "cat" / "x.png")]
  failures = file_codec.process([str(tmp_path / "single.jpg")], str(tmp_path / "one.saic"),
                                (".jpg",), ".saic", work)
  assert not failures and (tmp_path / "one.saic").read_bytes() == b"coded single.jpg"
