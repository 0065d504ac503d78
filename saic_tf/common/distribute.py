"""Distribution strategies (--strategy) and which worker writes what.

mirrored      tf.distribute.MirroredStrategy: every local GPU, or the CPU.
multi_worker  tf.distribute.MultiWorkerMirroredStrategy, configured by the TF_CONFIG environment
              variable of each process (cluster addresses, this task's type and index).
one_device    tf.distribute.OneDeviceStrategy on the first GPU, or the CPU.

Under multi_worker every worker runs the same program on its shard of each global batch (the
batch flag is the global batch), and all of them must save checkpoints (saving is collective),
but only the chief's copy is kept: the others write to a private temporary directory, as
TensorFlow's multi-worker guide prescribes, and read the chief's checkpoints to resume (the
model directory must be on a file system all workers share).
"""
import hashlib
import json
import os
import tempfile

import tensorflow as tf

from saic_tf.common.errors import UserError

STRATEGIES = ("mirrored", "multi_worker", "one_device")


def _check_tf_config():
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster "
                    "and task of this process; see docs/multi-worker-and-speed.md)")
  try:
    config = json.loads(raw)
    workers = config["cluster"]["worker"]
    task = config["task"]
    valid = (isinstance(workers, list) and task["type"] in config["cluster"] and
             0 <= int(task["index"]) < len(config["cluster"][task["type"]]))
  except (ValueError, KeyError, TypeError):
    valid = False
  if not valid:
    raise UserError("TF_CONFIG: expected {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
                    "\"task\": {\"type\": \"worker\", \"index\": i}} with i < the worker count")


def make_strategy(name):
  """The tf.distribute strategy of --strategy (see module doc)."""
  if name == "multi_worker":
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  raise UserError(f"--strategy={name}: must be one of {', '.join(STRATEGIES)}")


def _task(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return None, 0
  return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
  """True where the run's files are written: a single process, the chief task, or worker 0 of
  a cluster without a chief."""
  task_type, task_id = _task(strategy)
  if task_type is None or task_type == "chief":
    return True
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def write_dir(path, strategy):
  """`path` on the chief; on another worker, a private directory that mirrors it."""
  if is_chief(strategy):
    return path
  task_type, task_id = _task(strategy)
  key = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
  return os.path.join(tempfile.gettempdir(), f"saic_{task_type}_{task_id}", key)


def local_metrics(model, strategy):
  """Under multi_worker, Keras sums each worker's metric values ("auto" reduction), which
  reports e.g. twice the loss on two workers; "first" reports this worker's own shard instead.
  Returns `model`."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    model.distribute_reduction_method = "first"
  return model
