"""bin/export: the SavedModel for stock TF Serving (core ops only, checked in a fresh process
that has not imported tensorflow-compression), the TFLite decoders' parity and the TFLite
encoders' bits."""
import base64
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from conftest import IMAGES, ROOT
from saic_tf.codec import bitstream
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json
from saic_tf.data.images import to_uint8
from saic_tf.deploy import export, file_codec, serving, tflite
from test_cli import error_lines, run_bin


@pytest.fixture(scope="module")
def exported(tdic_run, tmp_path_factory):
  export_dir = tmp_path_factory.mktemp("export")
  version_dir, parity = export.export(tdic_run, str(export_dir), "tiny", parity_images=4)
  return version_dir, parity


@pytest.fixture(scope="module")
def loaded(exported):
  """The export's SavedModel, loaded once for the tests that call its signatures here."""
  return tf.saved_model.load(exported[0])


def real_image(height, width):
  with Image.open(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])) as image:
    return np.asarray(image.convert("RGB"))[:height, :width]


def run_fresh_python(code):
  """Runs `code` in a new interpreter that imports TensorFlow but not tensorflow-compression."""
  code = ("import sys\n" + code +
          "\nassert 'tensorflow_compression' not in sys.modules, 'tfc was imported'\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_pack_bits_is_numpy_packbits_and_unpack_inverts_it():
  rng = np.random.default_rng(0)
  for shape in [(1, 1, 1), (3, 5, 7), (4, 4, 8), (2, 3, 16)]:
    bits = rng.integers(0, 2, shape)
    packed = serving.pack_bits(tf.constant(bits, tf.float32)).numpy()
    assert packed == np.packbits(bits.reshape(-1)).tobytes()
    np.testing.assert_array_equal(serving.unpack_bits(tf.constant(packed), shape).numpy(), bits)


@pytest.mark.slow
def test_layout_and_rerun_is_a_no_op(exported, tdic_run, tmp_path):
  version_dir, parity = exported
  assert os.path.basename(version_dir) == "1"
  assert os.path.basename(os.path.dirname(version_dir)) == "tiny"  # OUT/<model_name>/<version>
  for name in ("saved_model.pb", "variables", serving.INFO_FILE, tflite.PARITY_FILE,
               *tflite.FILES):
    assert os.path.exists(os.path.join(version_dir, name)), name
  assert read_json(os.path.join(version_dir, tflite.PARITY_FILE), "") == parity
  again, parity_again = export.export(tdic_run, os.path.dirname(os.path.dirname(version_dir)),
                                      "tiny")
  assert again == version_dir and parity_again == parity
  assert sorted(os.listdir(os.path.dirname(version_dir))) == ["1"]  # no temporary left behind
  # An export made before the TFLite encoders is not taken for a whole one.
  older = tmp_path / "tiny" / "1"
  shutil.copytree(version_dir, older)
  os.remove(older / tflite.ENCODER_INT8)
  with pytest.raises(UserError, match=f"without {tflite.ENCODER_INT8}; choose another version"):
    export.export(tdic_run, str(tmp_path), "tiny", version=1)


@pytest.mark.slow
def test_fresh_process_loads_the_export_without_tensorflow_compression(exported, tdic_run,
                                                                       tmp_path):
  version_dir, _ = exported
  image = real_image(41, 29)  # not multiples of the stride
  np.save(tmp_path / "image.npy", image)
  run_fresh_python(f"""
import numpy as np, tensorflow as tf
from saic_tf.deploy import serving
assert serving.non_core_ops({version_dir!r}) == [], serving.non_core_ops({version_dir!r})
loaded = tf.saved_model.load({version_dir!r})
assert sorted(loaded.signatures) == sorted(serving.SIGNATURES), list(loaded.signatures)
image = tf.constant(np.load({str(tmp_path / 'image.npy')!r}))
encoded = loaded.signatures["encode"](image=image)
decoded = loaded.signatures["decode"](**encoded)["image"]
np.savez({str(tmp_path / 'out.npz')!r}, latents=encoded["latents_bytes"].numpy(),
         latent_shape=encoded["latent_shape"].numpy(), image_shape=encoded["image_shape"].numpy(),
         decoded=decoded.numpy(),
         reconstructed=loaded.signatures["reconstruct"](image=image)["image"].numpy(),
         default=loaded.signatures["serving_default"](image=image)["image"].numpy())
""")
  out = np.load(tmp_path / "out.npz")
  keras = file_codec.FileCodec(tdic_run).codec
  bits = keras.encode(tf.image.convert_image_dtype(image[None], tf.float32))[0].numpy()
  assert out["latents"].tobytes() == np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes()
  assert out["latent_shape"].tolist() == [6, 4, keras.channels]
  assert out["image_shape"].tolist() == [41, 29]
  expected = to_uint8(keras.decode(bits[None], 41, 29)[0]).numpy()
  assert out["decoded"].dtype == np.uint8 and out["decoded"].shape == (41, 29, 3)
  # Graph and eager float sums may round differently: at most 1 level, on few pixels.
  difference = np.abs(out["decoded"].astype(int) - expected)
  assert difference.max() <= 1 and (difference > 0).mean() < 0.01
  np.testing.assert_array_equal(out["reconstructed"], out["decoded"])
  np.testing.assert_array_equal(out["default"], out["decoded"])


def test_core_op_check_catches_python_and_tensorflow_compression_ops(tmp_path):
  """The checker itself: it must flag a py_function and a tensorflow-compression op."""
  import tensorflow_compression as tfc  # pylint: disable=g-import-not-at-top

  class WithOps(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def python(self, x):
      return tf.py_function(lambda v: v + 1, [x], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([4], tf.int32)])
    def coder(self, cdf):
      return tfc.create_range_encoder([], tf.reshape(cdf, [1, 4]))

  module = WithOps()
  for name in ("python", "coder"):
    tf.saved_model.save(module, str(tmp_path / name), signatures={
        "serving_default": getattr(module, name)})
  assert "EagerPyFunc" in serving.non_core_ops(str(tmp_path / "python"))
  flagged = run_fresh_python(f"""
from saic_tf.deploy import serving
print(serving.non_core_ops({str(tmp_path / 'coder')!r}))
""")
  assert "CreateRangeEncoder" in flagged


@pytest.mark.slow
def test_saved_model_cli_lists_every_signature(exported):
  version_dir, _ = exported
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  result = subprocess.run([cli, "show", "--dir", version_dir, "--all"], capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  for name in serving.SIGNATURES:
    assert f"signature_def['{name}']" in result.stdout
  assert "latents_bytes" in result.stdout


def from_rest_json(value, spec):
  """What TF Serving's REST API does with one JSON input: {"b64": ...} -> bytes, else a
  tensor of the signature's dtype."""
  if isinstance(value, dict):
    return tf.constant(base64.b64decode(value["b64"]))
  return tf.constant(np.asarray(value), spec.dtype)


def test_rest_request_bodies_of_the_readme_run_through_the_signatures(loaded):
  image = real_image(24, 40)

  def predict(body):
    request = json.loads(body)
    signature = loaded.signatures[request.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    outputs = signature(**{k: from_rest_json(v, specs[k]) for k, v in request["inputs"].items()})
    # The response as TF Serving writes it: outputs named *_bytes are base64 encoded.
    return json.loads(json.dumps({"outputs": {
        k: {"b64": base64.b64encode(v.numpy()).decode()} if k.endswith("_bytes")
        else v.numpy().tolist() for k, v in outputs.items()}}))

  body = serving.rest_request_body("reconstruct", image=image)
  assert json.loads(body)["inputs"]["image"] == image.tolist()
  reconstructed = np.asarray(predict(body)["outputs"]["image"])
  encoded = predict(serving.rest_request_body("encode", image=image))["outputs"]
  decoded = np.asarray(predict(serving.rest_request_body("decode", **encoded))["outputs"]["image"])
  assert decoded.shape == (24, 40, 3)
  np.testing.assert_array_equal(decoded, reconstructed)


def test_tflite_decoders_meet_the_parity_bars_with_builtin_ops_at_any_size(exported):
  version_dir, parity = exported
  for name in (tflite.TFLITE_FLOAT, tflite.TFLITE_INT8):
    row = parity[name]
    assert row["passes"] and row["psnr_db"] >= tflite.PARITY_BARS[name], row
    assert len(row["shapes"]) == 2  # the run's size and an odd, non-square one
    assert not any(op.startswith(("Flex", "CUSTOM", "DELEGATE")) for op in row["ops"]), row
    assert row["size_bytes"] == os.path.getsize(os.path.join(version_dir, name))
  assert parity[tflite.TFLITE_INT8]["size_bytes"] < parity[tflite.TFLITE_FLOAT]["size_bytes"]
  # Quality against the original images: the float decoder's is the Keras decoder's.
  keras_psnr = parity["keras"]["psnr_vs_images_db"]
  assert 5 < keras_psnr < 60, parity
  assert abs(parity[tflite.TFLITE_FLOAT]["psnr_vs_images_db"] - keras_psnr) < 0.01, parity
  assert abs(parity[tflite.TFLITE_INT8]["psnr_vs_images_db"] - keras_psnr) < 3, parity
  # A latent size the export never saw: the interpreter's input is resized.
  decoder = tflite.TFLiteDecoder(os.path.join(version_dir, tflite.TFLITE_FLOAT))
  channels = serving.read_info(version_dir)["channels"]
  latent = np.random.default_rng(1).integers(0, 2, (1, 7, 3, channels)).astype(np.float32)
  assert decoder(latent).shape == (1, 56, 24, 3)


def test_tflite_encoders_give_the_keras_bits_that_the_saved_model_decodes(exported, loaded,
                                                                         tdic_run):
  version_dir, parity = exported
  # The parity check of the export, on its real test images (the run's size and an odd one).
  assert parity["saved_model_encode"]["ms_per_image"] > 0
  for name in (tflite.ENCODER_FLOAT, tflite.ENCODER_INT8):
    row = parity[name]
    assert {"size_bytes", "bits_equal", "worst_image_bits_equal", "bits_compared",
            "psnr_vs_images_db", "ms_per_image", "bar", "passes", "ops", "shapes"} <= set(row)
    assert row["bar"] == tflite.ENCODER_BARS[name], row
    assert row["passes"] == (row["bits_equal"] >= row["bar"]), row
    assert 0 < row["worst_image_bits_equal"] <= row["bits_equal"] <= 1, row
    assert len(row["shapes"]) == 2 and row["ms_per_image"] > 0
    assert not any(op.startswith(("Flex", "CUSTOM", "DELEGATE")) for op in row["ops"]), row
    assert row["size_bytes"] == os.path.getsize(os.path.join(version_dir, name))
  # int8 is only measured (a trained E can put many outputs near 0.5: docs/export.md); float32
  # must give the SavedModel's bits.
  assert parity[tflite.ENCODER_FLOAT]["passes"] and parity[tflite.ENCODER_FLOAT]["bar"] == 0.999
  # Here, on other real images at sizes that are not multiples of the stride.
  run = file_codec.FileCodec(tdic_run)
  keras = run.codec
  encoder = tflite.TFLiteEncoder(os.path.join(version_dir, tflite.ENCODER_FLOAT))
  images = [real_image(41, 29), real_image(32, 32)[::-1], real_image(17, 50)]
  pairs = []
  for image in images:
    bits = keras.encode(tf.image.convert_image_dtype(image[None], tf.float32))[0].numpy()
    pairs.append((encoder(image[None]), bits.astype(np.uint8)))
  agreement = (sum(np.sum(tflite.unpack(p, b.shape) == b) for p, b in pairs) /
               sum(b.size for _, b in pairs))
  assert agreement >= 0.999, agreement
  # The edge path: the packed bits go as they are to the server's decode signature.
  packed, bits = pairs[0]
  np.testing.assert_array_equal(tflite.unpack(packed, bits.shape), bits)  # so the image below
  assert packed.dtype == np.uint8 and packed.tobytes() == np.packbits(bits).tobytes()
  decoded = loaded.signatures["decode"](
      latents_bytes=tf.constant(packed.tobytes()),
      latent_shape=tf.constant([-(-41 // keras.stride), -(-29 // keras.stride), keras.channels]),
      image_shape=tf.constant([41, 29]))["image"].numpy()
  expected = to_uint8(keras.decode(bits[None].astype(np.float32), 41, 29)[0]).numpy()
  # Equal bits: what remains is that graph and eager float sums may round differently, the
  # tolerance of the SavedModel's own decode (test above): 1 level, on few pixels.
  difference = np.abs(decoded.astype(int) - expected)
  assert decoded.shape == (41, 29, 3) and difference.max() <= 1 and (difference > 0).mean() < 0.01
  # Or a .saic file written on the server from them, with the export's entropy model: the file
  # bin/compress makes of the image.
  info = serving.read_info(version_dir)
  saic = bitstream.write(41, 29, tflite.unpack(packed, bits.shape),
                         bitstream.EntropyModel.from_dict(info["entropy_model"]),
                         bytes.fromhex(info["fingerprint"]))
  assert saic == run.compress(images[0])
  with pytest.raises(UserError, match="uint8 image"):
    encoder(images[0][None].astype(np.float32) / 255)


def test_saic_files_are_interchangeable_between_run_and_export(exported, tdic_run):
  version_dir, _ = exported
  from_run = file_codec.FileCodec(tdic_run)
  from_export = file_codec.FileCodec(os.path.dirname(os.path.dirname(version_dir)))
  assert from_export.fingerprint == from_run.fingerprint
  image = real_image(57, 48)
  content = from_export.compress(image)
  assert content == from_run.compress(image)
  difference = np.abs(from_export.decompress(content).astype(int) - from_run.decompress(content))
  assert difference.max() <= 1


@pytest.mark.slow
def test_cli_export_prints_parity_and_refuses_bad_input(exported, tdic_run, tmp_path):
  version_dir, _ = exported
  export_dir = os.path.dirname(os.path.dirname(version_dir))
  result = run_bin("export", f"--model_dir={tdic_run}", f"--export_dir={export_dir}",
                   "--model_name=tiny")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "already exported" in result.stderr and version_dir in result.stdout
  assert tflite.TFLITE_INT8 in result.stdout and "PSNR" in result.stdout
  assert tflite.ENCODER_INT8 in result.stdout and "bits = SavedModel" in result.stdout
  result = run_bin("export", f"--model_dir={tdic_run}", f"--export_dir={export_dir}",
                   "--model_name=tiny", "--stage=saic")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert len(error_lines(result.stderr)) == 1 and "--stage=saic" in result.stderr
  result = run_bin("export", f"--model_dir={tmp_path}", f"--export_dir={tmp_path}")
  assert result.returncode == 2 and "config.json" in error_lines(result.stderr)[0]
