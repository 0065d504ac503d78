import numpy as np
import pytest

from saic_tf import bitstream
from saic_tf.errors import UserError


def random_bits(shape, p_one=0.2, seed=0):
  rng = np.random.default_rng(seed)
  bits = (rng.random(shape) < p_one).astype(np.int32)
  bits[..., 1] = np.repeat(bits[:, :1, 1], shape[1], axis=1)  # a channel with structure
  return bits


def test_contexts_pack_the_three_neighbours_above():
  bits = np.zeros((2, 3, 1), np.int32)
  bits[0, :, 0] = [1, 0, 1]
  k = bitstream.contexts(bits)[..., 0]
  assert k[0].tolist() == [0, 0, 0]  # nothing above the first row
  # row 1, column 0: up-left outside (0), up 1, up-right 0 -> 2; column 1: 1,0,1 -> 5; 2: 0,1,0 -> 2
  assert k[1].tolist() == [2, 5, 2]


def test_range_coded_bits_round_trip_exactly_and_compress():
  latents = np.stack([random_bits((6, 7, 5), seed=s) for s in range(4)])
  model = bitstream.fit_entropy_model(latents)
  for bits in list(latents) + [random_bits((3, 9, 5), p_one=0.8, seed=9)]:
    payload = bitstream.encode_bits(bits, model)
    np.testing.assert_array_equal(bitstream.decode_bits(payload, bits.shape, model), bits)
  assert len(bitstream.encode_bits(latents[0], model)) * 8 < latents[0].size  # < 1 bit each


def test_model_survives_its_json_form():
  model = bitstream.fit_entropy_model(random_bits((4, 4, 3), seed=1)[None])
  again = bitstream.EntropyModel.from_dict(model.to_dict())
  np.testing.assert_array_equal(again.zeros, model.zeros)
  with pytest.raises(UserError, match="entropy model"):
    bitstream.EntropyModel.from_dict({"probabilities": [[0.5] * 8]})


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
