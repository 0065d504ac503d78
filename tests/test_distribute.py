"""--strategy=multi_worker: two worker processes on 127.0.0.1 train like one process with the
same global batch."""
import json
import os
import socket
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from saic_tf.common import distribute
from saic_tf.common.errors import UserError

TINY = ["--dataset=sample", "--image_size=32", "--bpp=0.25", "--filters=8", "--batch_size=8",
        "--learning_rate=1e-3", "--steps=6", "--checkpoint_every=3", "--log_every=3",
        "--image_every=6", "--seed=3", "--noexport"]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def train(model_dir, *flags, env=None):
  return subprocess.Popen([os.path.join(ROOT, "bin", "train"), f"--model_dir={model_dir}",
                           *TINY, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, env=dict(os.environ, **(env or {})))


def codec_weights(checkpoint):
  """The codec's variables in a checkpoint (a directory: its newest)."""
  reader = tf.train.load_checkpoint(str(checkpoint))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.startswith("codec/") and "OPTIMIZER_SLOT" not in name}


@pytest.mark.slow
def test_two_workers_equal_one_process_with_the_same_global_batch(tmp_path):
  cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
  workers = [train(tmp_path / "multi", "--strategy=multi_worker", env={"TF_CONFIG": json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
  outputs = [w.communicate(timeout=600) for w in workers]
  for worker, (_, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stderr[-3000:]
  single = train(tmp_path / "single", "--strategy=mirrored")
  _, stderr = single.communicate(timeout=600)
  assert single.returncode == 0, stderr[-3000:]
  assert "tdic step 6/6" in outputs[0][1]
  # Progress lines show each worker's own shard (its mean), not a sum over the workers.
  assert " loss 0.0" in outputs[0][1] and " loss 0.0" in stderr
  assert tf.train.latest_checkpoint(str(tmp_path / "multi" / "tdic")).endswith("ckpt-6")
  multi, alone = codec_weights(tmp_path / "multi" / "tdic"), codec_weights(tmp_path / "single" /
                                                                            "tdic")
  assert multi.keys() == alone.keys() and len(multi) > 10
  for name in multi:
    np.testing.assert_allclose(multi[name], alone[name], rtol=1e-4, atol=1e-5, err_msg=name)
  # The weights moved between the checkpoints: the runs did train, the same way.
  earlier = codec_weights(str(tmp_path / "multi" / "tdic" / "ckpt-3"))
  assert any(not np.allclose(earlier[name], multi[name]) for name in multi)


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(UserError, match="TF_CONFIG"):
    distribute.make_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]},
                                              "task": {"type": "worker", "index": 3}}))
  with pytest.raises(UserError, match="TF_CONFIG"):
    distribute.make_strategy("multi_worker")
