
import numpy as np
import pytest

from saic_tf.data import datasets, images
from saic_tf.evaluation import baselines


def real_images(size, count=3):
  source = datasets.load("sample", "test")
  paths = source.arrays[0].numpy()[::37][:count]
  return [images.to_uint8(datasets.resize(images.decode_image_file(p), size)).numpy()
          for p in paths]


@pytest.mark.parametrize("codec", sorted(baselines.CODECS))
@pytest.mark.parametrize("target_bpp", [0.5, 1.0])
def test_matched_bpp_never_exceeds_and_lands_within_10_percent(codec, target_bpp):
  for image in real_images(224):
    encoded = baselines.encode_at_bpp(image, codec, target_bpp)
    assert encoded.within_target
    assert len(encoded.data) * 8 / (224 * 224) == pytest.approx(encoded.bpp)
    assert encoded.bpp <= target_bpp
    assert encoded.bpp >= 0.9 * target_bpp, (codec, encoded.quality, encoded.bpp)
    decoded = baselines.decode(encoded.data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8


def test_unreachable_targets_are_flagged_not_hidden():
  image = real_images(96, count=1)[0]
  encoded = baselines.encode_at_bpp(image, "jpeg", 0.125)  # a JPEG header alone is larger
  assert not encoded.within_target and encoded.quality == 1 and encoded.bpp > 0.125


def test_round_trip_of_a_float_batch():
  images = np.stack(real_images(96, count=2)).astype(np.float32) / 255.0
  decoded, bpp, within = baselines.round_trip(images, "webp", 1.0)
  assert decoded.shape == images.shape and decoded.dtype == np.float32
  assert within.all() and (bpp <= 1.0).all()
  assert np.abs(decoded - images).mean() < 0.1
