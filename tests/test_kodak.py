"""Kodak rate–distortion (experiments/kodak.py), on a stand-in of two small photos."""
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.experiments import kodak, model_zoo
from conftest import small_photos


@pytest.fixture
def photos_dir(tmp_path):
  return small_photos(tmp_path / "kodak")


def test_kodak_points_of_runs_codecs_and_published_curves(tdic_run, photos_dir, tmp_path,
                                                          monkeypatch):
  run = str(tmp_path / "run")
  shutil.copytree(tdic_run, run)
  twin = str(tmp_path / "twin")  # another "seed": the same codec, so the std is 0
  shutil.copytree(tdic_run, twin)
  lines = []
  record = kodak.measure({"TDIC": [[run, twin]]}, photos_dir, str(tmp_path), log=lines.append)
  assert record["images"] == 2
  [point] = record["learned"]["TDIC"]
  assert point["runs"] == 2 and point["psnr_std"] == 0.0 and 0 < point["bpp"] <= 0.25
  # The point is the mean over the photos of real .saic files.
  by_hand = model_zoo.measure_images(kodak.FileCodec(run), model_zoo.kodak_photos(photos_dir))
  assert point["psnr"] == pytest.approx(by_hand["psnr"]) and point["bpp"] == by_hand["bpp"]
  for codec, qualities in kodak.QUALITIES.items():
    points = record["codecs"][codec]
    assert [p["quality"] for p in points] == list(qualities)
    # A higher quality: a larger file.
    assert all(a["bpp"] < b["bpp"] for a, b in zip(points, points[1:])), codec
  assert {p["name"] for p in record["published"]} == {"toderici2017", "bmshj2018-factorized"}
  assert all(len(p["bpp"]) == len(p["psnr"]) and p["source"] for p in record["published"])
  assert any(line.startswith("kodak: TDIC:") for line in lines)
  [there] = record["beside"]["TDIC"]
  assert set(there) == {"bpp", "JPEG", "WebP", "AVIF", "Toderici 2017", "Ballé 2018"}

  # In this process, a codec whose files stay as they were is not even loaded again (a study
  # collects after each run); a change to them (a run trained further) loads it again.
  file_codec = kodak.FileCodec
  monkeypatch.setattr(kodak, "FileCodec", lambda *a, **k: pytest.fail("loaded again"))
  assert kodak.measure({"TDIC": [[run, twin]]}, photos_dir, str(tmp_path)) == record
  os.utime(os.path.join(twin, "tdic", layout.ENTROPY_MODEL_FILE), ns=(1, 1))
  with pytest.raises(pytest.fail.Exception, match="loaded again"):
    kodak.measure({"TDIC": [[run, twin]]}, photos_dir, str(tmp_path))
  monkeypatch.setattr(kodak, "FileCodec", file_codec)
  # Measured once per codec, in any process: kept beside the run, keyed by the codec's
  # fingerprint.
  monkeypatch.setattr(kodak, "_LEARNED", {})
  kept = os.path.join(run, layout.KODAK_FILE)
  assert os.path.exists(kept)
  monkeypatch.setattr(model_zoo, "measure_images", lambda *a, **k: pytest.fail("measured again"))
  assert kodak.learned(run, model_zoo.kodak_photos(photos_dir))["psnr"] == point["psnr"]
  monkeypatch.setattr(kodak, "codec_curve", lambda *a, **k: pytest.fail("measured again"))
  assert kodak.measure({"TDIC": [[run, twin]]}, photos_dir, str(tmp_path)) == record

  path = kodak.figure(record, str(tmp_path / "kodak_rd.png"))
  assert np.asarray(Image.open(path)).shape[0] > 100


def test_beside_each_learned_point_is_each_curves_psnr_at_its_bpp_never_extrapolated():
  published = [dict(short="Toderici 2017", bpp=(0.125, 0.25), psnr=(23.0, 25.0))]
  record = dict(codecs={"webp": [dict(quality=5, bpp=0.3, psnr=30.0),
                                 dict(quality=0, bpp=0.1, psnr=26.0)]},  # any order
                published=published,
                learned={"TDIC": [dict(bpp=0.05, psnr=20.0), dict(bpp=0.2, psnr=24.0)]})
  assert kodak.beside(record) == {"TDIC": [
      dict(bpp=0.05, WebP=None, **{"Toderici 2017": None}),  # below both curves
      dict(bpp=0.2, WebP=pytest.approx(28.0), **{"Toderici 2017": pytest.approx(24.2)})]}
  assert {p["short"] for p in kodak.PUBLISHED} == {"Toderici 2017", "Ballé 2018"}


def test_a_shipped_codec_is_measured_once_and_nothing_is_written_into_the_package(
    tdic_run, photos_dir, tmp_path, monkeypatch):
  zoo_root = str(tmp_path / "zoo")
  monkeypatch.setattr(layout, "ZOO_ROOT", zoo_root)
  monkeypatch.setattr(zoo, "_FINGERPRINTS", {})
  model_zoo.package(tdic_run, "tdic-0.25", "bin/train --tiny")
  before = sorted(os.walk(zoo_root))
  images = model_zoo.kodak_photos(photos_dir)
  first = kodak.learned("tdic-0.25", images, cache_dir=str(tmp_path))
  assert os.path.exists(tmp_path / "kodak_tdic-0.25.json")
  assert sorted(os.walk(zoo_root)) == before
  monkeypatch.setattr(model_zoo, "measure_images", lambda *a, **k: pytest.fail("measured again"))
  monkeypatch.setattr(kodak, "_LEARNED", {})  # as another process would: from the file
  assert kodak.learned("tdic-0.25", images, cache_dir=str(tmp_path)) == first


def test_a_missing_or_empty_kodak_folder_is_one_line(tmp_path):
  with pytest.raises(UserError, match="--kodak_dir=.*no such directory"):
    kodak.measure({}, str(tmp_path / "absent"))
  with pytest.raises(UserError, match="no PNG images in it"):
    kodak.measure({}, str(tmp_path))
