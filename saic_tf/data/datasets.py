"""Image data: sources (embedded sample, image folders, STL-10 binaries, tfds), tf.data pipelines.

Every source yields `(raw, label)` pairs in a fixed order plus a `decode(raw)` function giving a
uint8 RGB image; `train_dataset` and `eval_dataset` turn a source into batches of float images in
[0, 1]. The training stream is a pure function of (seed, position): element i of the stream is
example perm_e(i mod n) of epoch e = i div n, with perm_e a stateless permutation keyed by
(seed, e) (tf.random.experimental.index_shuffle), and its augmentation draws from stateless RNGs
keyed by (seed, i). So a run resumed at step N starts at element N * batch and sees exactly the
batches an uninterrupted run would, without reading the skipped ones. Sources too large to hold
in memory (tfds) are streamed instead: shuffled with a buffer and skipped on resume.
"""
import dataclasses
import os
import socket
from typing import Callable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from saic_tf.common.errors import first_line, user_error_inside, UserError
from saic_tf.data.images import (decode_image_file, DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS,
                                 read_image, to_rgb)

SAMPLE_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "sample_data")
EMBEDDED = {"sample": "imagenette", "sample_cifar10": "cifar10"}
# Canonical split names are "train" and "test"; each tfds dataset names its held-out split.
TFDS_NAMES = {
    "stl10": ("stl10", {"train": "train", "test": "test"}),
    "cifar10": ("cifar10", {"train": "train", "test": "test"}),
    "imagenette": ("imagenette/320px-v2", {"train": "train", "test": "validation"}),
    "imagenet2012": ("imagenet2012", {"train": "train", "test": "validation"}),
}
DATASETS = tuple(EMBEDDED) + ("imagefolder",) + tuple(TFDS_NAMES)
# "validation" is carved from the training split (every --holdout_every-th image, see load):
# hyper-parameters are chosen on it, never on "test".
SPLITS = ("train", "validation", "test")
# Shuffle buffer of streamed (tfds) sources; file-list and in-memory sources permute whole epochs.
STREAM_SHUFFLE_BUFFER = 4096
SUBSET_BY_INDEX_MAX = 100_000  # eval_dataset's subset_seed: larger splits are shuffled instead
# Where a tfds download would go first; probed with a short timeout so that an offline machine
# fails in seconds instead of spending minutes in tfds' retries. Overridable for tests.
NETWORK_PROBE = os.environ.get("SAIC_NETWORK_PROBE", "storage.googleapis.com:443")


@dataclasses.dataclass
class Source:
  """One split of a labelled image dataset, in a fixed order."""
  name: str
  split: str
  examples: tf.data.Dataset  # (raw, label int64) pairs
  decode: Callable[[tf.Tensor], tf.Tensor]  # raw -> uint8 [H, W, 3]
  num_examples: int
  class_names: List[str]
  # (raw, labels) tensors indexable by example number; None for streamed sources (tfds).
  arrays: Optional[Tuple[tf.Tensor, tf.Tensor]] = None
  # Human-readable class names where the dataset has them (e.g. Imagenette's wnid -> name).
  display_names: Optional[List[str]] = None

  @property
  def num_classes(self):
    return len(self.class_names)


def unreadable_files(source: Source, limit=20):
  """[(path, reason)] of the files of a file-based source that do not decode (at most `limit`);
  [] for other sources. Used to name the culprits after TensorFlow's decoder failed
  mid-pipeline, where its error cannot say which file it was."""
  if source.decode is not decode_image_file or source.arrays is None:
    return []
  bad = []
  for path in source.arrays[0].numpy():
    try:
      read_image(path, DEFAULT_MAX_PIXELS)
    except UserError as e:
      bad.append((path.decode(), str(e)[:100]))
      if len(bad) >= limit:
        break
  return bad


def check_decode_error(error, *sources):
  """Turns an error raised inside a tf.data pipeline (the reader fails there as a TensorFlow
  error that cannot say which file it was) into a UserError that lists the unreadable files of
  `sources`; re-raises `error` when none is found."""
  if user_error_inside(error) is None:  # not the image reader (e.g. out of memory)
    raise error
  bad = [item for source in sources for item in unreadable_files(source)]
  if not bad:
    raise error
  listed = "; ".join(f"{path} ({reason})" for path, reason in bad[:5])
  more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
  raise UserError(f"unreadable images in the dataset: {listed}{more}; remove or replace "
                  "them") from None


def resize(image, size):
  """The single resize path for training, evaluation and codecs: uint8 or float -> float [0, 1].

  Bilinear with antialiasing, to a square `size` x `size` (aspect ratio not kept, as STL-10 and
  the Imagenette copy in shared/ were made) or to `size` = (height, width). `size` 0 or None
  keeps the image's own size.
  """
  image = tf.image.convert_image_dtype(image, tf.float32)
  if size:
    size = [size, size] if isinstance(size, int) else list(size)
    spatial = image.shape[-3:-1] if image.shape.rank is not None else tf.TensorShape(None)
    if not (spatial.is_fully_defined() and spatial.as_list() == size):  # (cached: already)
      image = tf.image.resize(image, size, method="bilinear", antialias=True)
  return tf.clip_by_value(image, 0.0, 1.0)


# ----------------------------------------------------------------------------- sources

def _list_image_folder(split_dir, class_names):
  paths, labels = [], []
  for label, name in enumerate(class_names):
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      continue
    for file_name in sorted(os.listdir(class_dir)):
      if file_name.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(class_dir, file_name))
        labels.append(label)
  return paths, labels


def image_folder(root, split, name="imagefolder"):
  """ROOT/{train, val|test}/CLASS/*.jpg|png, as keras.utils.image_dataset_from_directory reads."""
  flag = "--data_dir" if name == "imagefolder" else "--dataset"
  if not root or not os.path.isdir(root):
    raise UserError(f"{flag}={root!r}: not a directory; --dataset=imagefolder needs "
                    "--data_dir=ROOT with ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg")
  train_dir = os.path.join(root, "train")
  if not os.path.isdir(train_dir):
    raise UserError(f"{flag}={root}: has no train/ folder (expected ROOT/train/CLASS/*.jpg)")
  class_names = sorted(d for d in os.listdir(train_dir)
                       if os.path.isdir(os.path.join(train_dir, d)))
  if split == "train":
    split_dir = train_dir
  else:
    candidates = [os.path.join(root, d) for d in ("val", "test")]
    split_dir = next((d for d in candidates if os.path.isdir(d)), None)
    if split_dir is None:
      raise UserError(f"{flag}={root}: has no val/ or test/ folder for the test split")
    extra = sorted(set(os.listdir(split_dir)) - set(class_names))
    extra = [d for d in extra if os.path.isdir(os.path.join(split_dir, d))]
    if extra:
      raise UserError(f"{split_dir}: classes {extra} are not in {train_dir}")
  paths, labels = _list_image_folder(split_dir, class_names)
  if not paths:
    raise UserError(f"{split_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class "
                    "folders")
  arrays = (tf.constant(paths), tf.constant(labels, tf.int64))
  examples = tf.data.Dataset.from_tensor_slices(arrays)
  return Source(name, split, examples, decode_image_file, len(paths), class_names, arrays,
                _display_names(root, class_names))


def _display_names(root, class_names):
  """ROOT/CLASSES.txt lines "folder<TAB>name" (as in Imagenette), else the folder names."""
  path = os.path.join(root, "CLASSES.txt")
  if not os.path.exists(path):
    return list(class_names)
  with open(path) as f:
    names = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
  return [names.get(c, c) for c in class_names]


def _stl10_binary_dir(data_dir):
  for d in (os.path.join(data_dir, "stl10_binary"), data_dir):
    if os.path.exists(os.path.join(d, "train_X.bin")):
      return d
  return None


def stl10_binary(binary_dir, split):
  """The original STL-10 files: {split}_X.bin (N x 3 x 96 x 96 uint8, column-major) and _y.bin.

  Labels in the files are 1..10; here 0..9.
  """
  x_path = os.path.join(binary_dir, f"{split}_X.bin")
  y_path = os.path.join(binary_dir, f"{split}_y.bin")
  for path in (x_path, y_path):
    if not os.path.exists(path):
      raise UserError(f"{path}: missing (STL-10 binary layout: {{train,test}}_{{X,y}}.bin)")
  raw = np.fromfile(x_path, dtype=np.uint8)
  labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
  image_bytes = 3 * 96 * 96
  if raw.size % image_bytes or raw.size // image_bytes != labels.size:
    raise UserError(f"{x_path}: {raw.size} bytes is not {labels.size} images of 3x96x96 "
                    f"as {y_path} says")
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise UserError(f"{y_path}: labels must be 1..10")
  # Each image is stored channel by channel, each channel column-major: (N, C, W, H).
  images = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
  names_path = os.path.join(binary_dir, "class_names.txt")
  if os.path.exists(names_path):
    class_names = [line.strip() for line in open(names_path) if line.strip()]
  else:
    class_names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
                   "truck"]
  arrays = (tf.constant(images), tf.constant(labels))
  examples = tf.data.Dataset.from_tensor_slices(arrays)
  return Source("stl10", split, examples, tf.identity, int(labels.size), class_names, arrays)


def network_reachable(probe=None, timeout=3.0):
  """True when a TCP connection to host:port opens within `timeout` seconds."""
  host, _, port = (probe or NETWORK_PROBE).rpartition(":")
  try:
    socket.create_connection((host, int(port)), timeout=timeout).close()
    return True
  except OSError:
    return False


def _offline_message(dataset, data_dir):
  where = data_dir or "~/tensorflow_datasets"
  return (f"--dataset={dataset}: no prepared copy in {where} and no network to download it "
          f"(offline?); pass --data_dir=DIR with a prepared tfds copy"
          f"{' or the stl10_binary files' if dataset == 'stl10' else ''}, or use "
          "--dataset=imagefolder --data_dir=ROOT, or --dataset=sample")


def tfds_source(dataset, split, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds_name, split_names = TFDS_NAMES[dataset]
  kwargs = dict(split=split_names[split], data_dir=data_dir or None, as_supervised=True,
                with_info=True)
  try:
    examples, info = tfds.load(tfds_name, download=False, **kwargs)
  except (AssertionError, tfds.core.registered.DatasetNotFoundError, FileNotFoundError):
    if not network_reachable():
      raise UserError(_offline_message(dataset, data_dir)) from None
    try:
      examples, info = tfds.load(tfds_name, download=True, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      reason = first_line(e, default=type(e).__name__)
      raise UserError(f"--dataset={dataset}: tfds could not download or prepare it: {reason}; "
                      "use --dataset=imagefolder --data_dir=ROOT or --dataset=sample instead"
                      ) from None
  num_examples = info.splits[split_names[split]].num_examples if info.splits else 0
  if not num_examples:  # e.g. under tfds.testing.mock_data, which has no split sizes
    num_examples = int(examples.reduce(0, lambda n, _: n + 1))
  label_feature = info.features["label"]
  class_names = list(label_feature.names)
  decode = lambda image: to_rgb(tf.cast(image, tf.uint8))
  examples = examples.map(lambda image, label: (image, tf.cast(label, tf.int64)))
  return Source(dataset, split, examples, decode, num_examples, class_names)


def load(dataset, split="train", data_dir=None, holdout_every=0):
  """The `split` of `dataset` (see DATASETS) as a Source. With `holdout_every` = N > 0, every
  N-th image of the training split (in its fixed order: by class, then file name, so every
  class gives its share) is held out of "train" and makes the "validation" split."""
  if split not in SPLITS:
    raise UserError(f"split {split!r}: must be one of {SPLITS}")
  if split == "validation" and not holdout_every:
    raise UserError("the validation split is held out of the training split: it needs "
                    "--holdout_every=N (every N-th training image)")
  source = _load(dataset, "test" if split == "test" else "train", data_dir)
  if holdout_every and split != "test":
    source = _held_out(source, holdout_every, validation=split == "validation")
  return source


def _held_out(source: Source, every, validation):
  """The training split without (or with only) every `every`-th example."""
  if source.arrays is None:
    raise UserError(f"--holdout_every: --dataset={source.name} is streamed (tfds), not read by "
                    "index; hold out a validation split of an image folder, the sample or the "
                    "STL-10 binaries")
  split = "validation" if validation else "train"
  indexes = [i for i in range(source.num_examples) if ((i % every) == every - 1) == validation]
  if not indexes:
    raise UserError(f"--holdout_every={every}: the {split} split of --dataset={source.name} "
                    f"({source.num_examples} training images) would be empty")
  picked = tf.constant(indexes, tf.int64)
  arrays = tuple(tf.gather(a, picked) for a in source.arrays)
  return dataclasses.replace(source, split=split, arrays=arrays, num_examples=len(indexes),
                             examples=tf.data.Dataset.from_tensor_slices(arrays))


def _load(dataset, split, data_dir):
  if dataset in EMBEDDED:
    return image_folder(os.path.join(SAMPLE_ROOT, EMBEDDED[dataset]), split, name=dataset)
  if dataset == "imagefolder":
    return image_folder(data_dir, split)
  if dataset == "stl10" and data_dir and _stl10_binary_dir(data_dir):
    return stl10_binary(_stl10_binary_dir(data_dir), split)
  if dataset in TFDS_NAMES:
    return tfds_source(dataset, split, data_dir)
  raise UserError(f"--dataset={dataset}: unknown; choose one of {', '.join(DATASETS)}")


# ----------------------------------------------------------------------------- pipelines

def _augment(image, seed):
  """Random crop (after reflect-padding by 1/8 of the side) and horizontal flip, stateless."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  size = tf.shape(image)[:2]
  pad = tf.maximum(size // 8, 1)
  padded = tf.pad(image, [[pad[0], pad[0]], [pad[1], pad[1]], [0, 0]], mode="REFLECT")
  image = tf.image.stateless_random_crop(padded, tf.concat([size, [3]], 0), crop_seed)
  return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _random_crop(image, seed, crop_size, scale_min):
  """A crop_size² window at a random place of the image, first scaled (square) by a random
  factor in [scale_min, 1] (at least to crop_size), and a random horizontal flip; stateless."""
  scale_seed, crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  if scale_min < 1:
    side = tf.cast(tf.shape(image)[0], tf.float32) * tf.random.stateless_uniform(
        [], scale_seed, scale_min, 1.0)
    side = tf.maximum(tf.cast(tf.round(side), tf.int32), crop_size)
    image = tf.clip_by_value(
        tf.image.resize(image, tf.stack([side, side]), method="bilinear", antialias=True),
        0.0, 1.0)
  image = tf.image.stateless_random_crop(image, [crop_size, crop_size, 3], crop_seed)
  return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _indexed_stream(source: Source, seed, start):
  """(position, (raw, label)) from stream position `start` on; epochs are seeded permutations."""
  raw, labels = source.arrays
  n = source.num_examples

  def element(position):
    epoch_seed = tf.stack([tf.constant(seed, tf.int64), position // n])
    index = tf.random.experimental.index_shuffle(position % n, epoch_seed, n - 1)
    return position, (tf.gather(raw, index), tf.gather(labels, index))

  return tf.data.Dataset.range(start, 2**62).map(element)


def _streamed(source: Source, seed, start):
  """The same for sources that can only be read in order: a shuffle buffer, skipped on resume."""
  shuffled = source.examples.shuffle(STREAM_SHUFFLE_BUFFER, seed=seed,
                                     reshuffle_each_iteration=True)
  return shuffled.repeat().enumerate().skip(start)


def cached(source: Source, image_size):
  """`source` with every image decoded and resized once, kept in memory as float32
  (N·size²·12 bytes: 0.55 GB for 5,000 images at 96×96). Same images, same order, same
  augmentation as the uncached source, without decoding files at every epoch. Streamed (tfds)
  sources are returned as they are."""
  if source.arrays is None:
    return source
  decoded = tf.data.Dataset.from_tensor_slices(source.arrays[0]).map(
      lambda raw: resize(source.decode(raw), image_size), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True)
  images = tf.concat(list(decoded.batch(256).as_numpy_iterator()), axis=0)
  labels = source.arrays[1]
  return dataclasses.replace(source, arrays=(images, labels), decode=tf.identity,
                             examples=tf.data.Dataset.from_tensor_slices((images, labels)))


def train_dataset(source: Source, image_size, batch_size, seed, start_step=0, crop_size=0,
                  crop_scale_min=1.0):
  """Endless batches (images in [0, 1], labels) from step `start_step` on; see module doc.

  Images are resized to `image_size` and augmented (shifted and flipped); with `crop_size`, a
  random crop_size² window of each, scaled first by a random factor in [crop_scale_min, 1]
  (the codec stages' --crop_size and --crop_scale_min: more steps per CPU-second, and several
  scales of the same content).
  """
  if source.num_examples < batch_size:
    raise UserError(f"--batch_size={batch_size} is larger than the {source.num_examples} "
                    f"training images of --dataset={source.name}")
  stream = _indexed_stream if source.arrays is not None else _streamed
  examples = stream(source, seed, start_step * batch_size)

  def prepare(position, example):
    raw, label = example
    image = resize(source.decode(raw), image_size)
    key = tf.stack([tf.constant(seed, tf.int64), position])
    if crop_size:
      return _random_crop(image, key, crop_size, crop_scale_min), label
    return _augment(image, key), label

  images = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  batches = images.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return batches.with_options(_distribute_options())


def eval_dataset(source: Source, image_size, batch_size, limit=None, shuffle_seed=None,
                 subset_seed=None):
  """The split once, resized, no augmentation; the last batch may be short.

  In its fixed order, or shuffled once by `shuffle_seed` (for a subset that covers every
  class when `limit` cuts the split short). With `subset_seed` and `limit` instead: `limit`
  images drawn at random by index, in the split's order, the same whatever TensorFlow's global
  seed (runs of different seeds then see the same images). That reads the whole split once, so
  a split of more than SUBSET_BY_INDEX_MAX examples is shuffled by `subset_seed` instead.
  """
  examples = source.examples
  by_index = subset_seed is not None and limit and limit < source.num_examples
  if by_index and source.num_examples <= SUBSET_BY_INDEX_MAX:
    keep = np.zeros(source.num_examples, bool)
    keep[np.random.RandomState(subset_seed).choice(source.num_examples, limit, replace=False)] = 1
    keep = tf.constant(keep)
    examples = examples.enumerate().filter(lambda i, _: keep[i]).map(lambda _, example: example)
  elif by_index or shuffle_seed is not None:
    examples = examples.shuffle(min(source.num_examples, STREAM_SHUFFLE_BUFFER),
                                seed=subset_seed if by_index else shuffle_seed,
                                reshuffle_each_iteration=False)
  if limit:
    examples = examples.take(limit)
  prepare = lambda raw, label: (resize(source.decode(raw), image_size), label)
  ds = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_distribute_options())


def _distribute_options():
  """Under a multi-worker strategy, every worker reads the same global batches and keeps its
  slice (DATA sharding): file sharding would need at least one file per worker, and the stream
  is a function of (seed, step) that must stay the same on every worker."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return options
