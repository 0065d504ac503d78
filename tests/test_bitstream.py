import numpy as np
import pytest

from saic_tf.codec import bitstream
from saic_tf.common.errors import UserError


def random_bits(shape, p_one=0.2, seed=0):
  rng = np.random.default_rng(seed)
  bits = (rng.random(shape) < p_one).astype(np.int32)
  bits[..., 1] = np.repeat(bits[:, :1, 1], shape[1], axis=1)  # a channel with structure
  return bits


def test_neighbour_features_are_left_upleft_up_upright_with_zeros_outside():
  bits = np.zeros((2, 3, 2), np.int32)
  bits[0, :, 0] = [1, 0, 1]
  bits[1, 0, 1] = 1
  features = bitstream.neighbour_features(bits, np.array([1, 1, 0]), np.array([1, 2, 0]))
  # Per neighbour, both channels: (1, 1): left (1,0)=[0,1], up-left (0,0)=[1,0], up (0,1)=[0,0],
  # up-right (0,2)=[1,0]. (1, 2): left [0,0], up-left [0,0], up [1,0], up-right outside.
  assert features.tolist() == [[0, 1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 0, 0, 0],
                               [0] * 8]


@pytest.mark.parametrize("h,w", [(1, 1), (1, 6), (5, 1), (4, 7), (7, 4)])
def test_wavefronts_cover_every_position_once_after_its_neighbours(h, w):
  order = {}
  for t, (rows, cols) in enumerate(bitstream.wavefronts(h, w)):
    for position in zip(rows.tolist(), cols.tolist()):
      assert position not in order
      order[position] = t
  assert sorted(order) == [(i, j) for i in range(h) for j in range(w)]
  for (i, j), t in order.items():
    for neighbour in [(i, j - 1), (i - 1, j - 1), (i - 1, j), (i - 1, j + 1)]:
      assert order.get(neighbour, -1) < t


def test_range_coded_bits_round_trip_exactly_and_compress():
  latents = np.stack([random_bits((6, 7, 5), seed=s) for s in range(8)])
  model = bitstream.fit_entropy_model(latents)
  assert np.any(model.weights)  # the structured channel is predictable from its neighbours
  for bits in list(latents) + [random_bits((3, 9, 5), p_one=0.8, seed=9)]:
    payload = bitstream.encode_bits(bits, model)
    np.testing.assert_array_equal(bitstream.decode_bits(payload, bits.shape, model), bits)
  assert len(bitstream.encode_bits(latents[0], model)) * 8 < latents[0].size  # < 1 bit each


def test_no_neighbour_weights_when_they_do_not_generalize():
  """On independent fair bits the neighbours predict nothing: the held-out check keeps the
  per-channel rates only, so a file is hardly bigger than the raw bits."""
  bits = (np.random.default_rng(3).random((1, 16, 16, 32)) < 0.5).astype(np.int32)
  model = bitstream.fit_entropy_model(bits, steps=50)
  assert not np.any(model.weights)
  unseen = (np.random.default_rng(4).random((48, 32, 32)) < 0.5).astype(np.int32)
  assert len(bitstream.encode_bits(unseen, model)) < 1.01 * unseen.size / 8


def test_model_survives_its_json_form():
  model = bitstream.fit_entropy_model(random_bits((4, 4, 3), seed=1)[None])
  again = bitstream.EntropyModel.from_dict(model.to_dict())
  np.testing.assert_array_equal(again.weights, model.weights)
  np.testing.assert_array_equal(again.bias, model.bias)
  with pytest.raises(UserError, match="entropy model"):
    bitstream.EntropyModel.from_dict({"zeros": [[30000] * 8]})  # the version 1 layout
  with pytest.raises(UserError, match="entropy model"):
    bitstream.EntropyModel.from_dict(dict(model.to_dict(), weights=[[1]]))


def file_for(bits, height, width):
  model = bitstream.fit_entropy_model(bits[None])
  return model, bitstream.write(height, width, bits, model, b"\x01\x02\x03\x04")


def test_file_accounting_and_parse():
  bits = random_bits((12, 12, 8), seed=2)
  model, data = file_for(bits, 96, 93)
  payload = bitstream.encode_bits(bits, model)
  # 4 magic + 1 version + 4 fingerprint + varints (96, 93, 12, 12, 8, len) + 4 CRC
  varints = 5 + (1 if len(payload) < 128 else 2)
  assert len(data) == 13 + varints + len(payload)
  header = bitstream.parse(data, b"\x01\x02\x03\x04", stride=8, channels=8)
  assert (header.height, header.width, header.latent_shape) == (96, 93, (12, 12, 8))
  np.testing.assert_array_equal(bitstream.decode_bits(header.payload, (12, 12, 8), model), bits)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: b"JPEG" + d[4:], "wrong magic"),
    (lambda d: d[:4] + b"\x09" + d[5:], "unsupported .saic version"),
    (lambda d: d[:-5], "truncated"),
    (lambda d: d[:7], "truncated"),
    (lambda d: d + b"\x00", "bytes after the payload"),
])
def test_bad_files_are_one_clear_error(mutate, match):
  _, data = file_for(random_bits((4, 4, 8), seed=3), 32, 32)
  with pytest.raises(UserError, match=match):
    bitstream.parse(mutate(data), b"\x01\x02\x03\x04", stride=8, channels=8)


def test_another_model_is_named():
  _, data = file_for(random_bits((4, 4, 8), seed=4), 32, 32)
  with pytest.raises(UserError, match="another model"):
    bitstream.parse(data, b"\xff\xff\xff\xff", stride=8, channels=8)


def test_every_single_bit_flip_and_every_truncation_is_refused():
  _, data = file_for(random_bits((5, 6, 8), seed=5), 33, 45)  # sizes not multiples of 8
  for position in range(len(data)):
    for bit in range(8):
      flipped = bytearray(data)
      flipped[position] ^= 1 << bit
      with pytest.raises(UserError):
        bitstream.parse(bytes(flipped), b"\x01\x02\x03\x04", stride=8, channels=8)
  for length in range(len(data)):
    with pytest.raises(UserError):
      bitstream.parse(data[:length], b"\x01\x02\x03\x04", stride=8, channels=8)
