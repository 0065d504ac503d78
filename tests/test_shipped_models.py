"""The codecs shipped in saic_tf/codec/models/: each loads, carries the fingerprint its record
names, and reproduces its recorded PSNR on the shipped sample within 0.1 dB at no more than its
nominal rate; together they stay within the package's 20 MB."""
import os

import pytest

from saic_tf.codec import zoo
from saic_tf.common import layout
from saic_tf.deploy.file_codec import FileCodec
from saic_tf.experiments import model_zoo

SHIPPED = [name for name in zoo.names()
           if layout.ZOO_ROOT.startswith(os.path.dirname(os.path.dirname(__file__)))]
NONE_YET = [pytest.param(None, marks=pytest.mark.skip(reason="no codec is shipped yet"))]


@pytest.mark.parametrize("name", SHIPPED or NONE_YET)
def test_a_shipped_codec_reproduces_its_recorded_figures(name):
  record = zoo.record(name)
  codec = FileCodec(layout.zoo_dir(name))
  assert codec.fingerprint.hex() == record["fingerprint"]
  measured = model_zoo.measure_images(codec, model_zoo.resized_split("sample", "test", "", 96))
  recorded = record["figures"]["sample96"]
  assert abs(measured["psnr"] - recorded["psnr"]) < 0.1, (measured, recorded)
  assert measured["bpp"] <= record["bpp"], measured


def test_the_zoo_stays_small():
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(layout.ZOO_ROOT)
              for f in files) if os.path.isdir(layout.ZOO_ROOT) else 0
  assert total <= 20 * 2**20
