import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from saic_tf.common.errors import UserError
from saic_tf.data import datasets, images
from conftest import write_stl10_binary


def first_batches(ds, k):
  return [(x.numpy(), y.numpy()) for x, y in ds.take(k)]


def test_embedded_sample_is_real_labelled_imagenette():
  train = datasets.load("sample", "train")
  test = datasets.load("sample", "test")
  assert (train.num_examples, test.num_examples, train.num_classes) == (200, 100, 10)
  assert train.class_names[0] == "n01440764"
  assert train.display_names[:2] == ["tench", "English springer"]  # from CLASSES.txt
  images, labels = next(iter(datasets.train_dataset(train, 48, 8, seed=0)))
  assert images.shape == (8, 48, 48, 3) and images.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
  assert float(tf.math.reduce_std(images)) > 0.05  # real pictures, not a constant
  assert set(labels.numpy()) <= set(range(10))


def test_sample_cifar10_at_native_size():
  source = datasets.load("sample_cifar10", "test")
  images, labels = next(iter(datasets.eval_dataset(source, 32, 100)))
  assert images.shape == (100, 32, 32, 3)
  assert np.bincount(labels.numpy()).tolist() == [10] * 10


def test_training_order_is_a_function_of_the_seed():
  source = datasets.load("sample_cifar10", "train")
  a = first_batches(datasets.train_dataset(source, 32, 4, seed=7), 3)
  b = first_batches(datasets.train_dataset(source, 32, 4, seed=7), 3)
  c = first_batches(datasets.train_dataset(source, 32, 4, seed=8), 3)
  for (xa, ya), (xb, yb) in zip(a, b):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_resumed_stream_continues_exactly():
  source = datasets.load("sample_cifar10", "train")
  straight = first_batches(datasets.train_dataset(source, 32, 16, seed=3), 16)  # > 1 epoch
  resumed = first_batches(datasets.train_dataset(source, 32, 16, seed=3, start_step=11), 5)
  for (x1, y1), (x2, y2) in zip(straight[11:], resumed):
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_random_crops_are_windows_of_the_image_and_resume_exactly(awkward_folder):
  """--crop_size: batches of crop_size² windows; without scaling each is a window of the
  (flipped or not) resized image; with --crop_scale_min the stream still resumes exactly."""
  folder = datasets.load("imagefolder", "train", awkward_folder)
  originals = next(iter(datasets.eval_dataset(folder, 32, folder.num_examples)))[0].numpy()
  crops = first_batches(datasets.train_dataset(folder, 32, 4, seed=2, crop_size=16), 3)
  assert crops[0][0].shape == (4, 16, 16, 3)
  for crop in np.concatenate([x for x, _ in crops]):
    assert any(_window_of(crop, original) for original in originals)
  source = datasets.load("sample_cifar10", "train")
  straight = first_batches(datasets.train_dataset(source, 32, 4, seed=2, crop_size=16,
                                                  crop_scale_min=0.5), 6)
  resumed = first_batches(datasets.train_dataset(source, 32, 4, seed=2, start_step=4,
                                                 crop_size=16, crop_scale_min=0.5), 2)
  for (x1, _), (x2, _) in zip(straight[4:], resumed):
    np.testing.assert_array_equal(x1, x2)
  assert all(x.shape == (4, 16, 16, 3) and 0 <= x.min() and x.max() <= 1 for x, _ in straight)


def _window_of(crop, image):
  """True when `crop` is a window of `image` or of its mirror image."""
  size = crop.shape[0]
  for candidate in (image, image[:, ::-1]):
    for i in range(image.shape[0] - size + 1):
      for j in range(image.shape[1] - size + 1):
        if np.allclose(candidate[i:i + size, j:j + size], crop, atol=1e-6):
          return True
  return False


def test_validation_is_held_out_of_the_training_split():
  """--holdout_every=N: every N-th training image (by class, then name) is the validation split,
  never trained on; together they are the training split; the test split is untouched."""
  full = datasets.load("sample_cifar10", "train")
  train = datasets.load("sample_cifar10", "train", holdout_every=5)
  validation = datasets.load("sample_cifar10", "validation", holdout_every=5)
  names = lambda source: [p.decode() for p in source.arrays[0].numpy()]
  assert validation.num_examples == full.num_examples // 5 == len(names(validation))
  assert train.num_examples + validation.num_examples == full.num_examples
  assert not set(names(train)) & set(names(validation))
  assert sorted(names(train) + names(validation)) == sorted(names(full))
  assert len(set(validation.arrays[1].numpy())) == len(full.class_names)  # every class
  batch, _ = next(iter(datasets.eval_dataset(validation, 16, 4)))
  assert batch.shape == (4, 16, 16, 3)
  assert datasets.load("sample_cifar10", "test", holdout_every=5).num_examples == (
      datasets.load("sample_cifar10", "test").num_examples)
  with pytest.raises(UserError, match="needs --holdout_every"):
    datasets.load("sample_cifar10", "validation")


def test_each_epoch_is_a_permutation(awkward_folder):
  source = datasets.load("imagefolder", "train", awkward_folder)
  assert source.num_examples == 4  # notes.txt is not an image
  labels = [y for _, y in first_batches(datasets.train_dataset(source, 16, 2, seed=1), 4)]
  expected = sorted(source.arrays[1].numpy())
  assert sorted(np.concatenate(labels[:2])) == expected  # epoch 0
  assert sorted(np.concatenate(labels[2:])) == expected  # epoch 1


def test_greyscale_rgba_palette_and_odd_sizes_become_rgb(awkward_folder):
  for split in ("train", "test"):
    source = datasets.load("imagefolder", split, awkward_folder)
    assert source.class_names == ["cat", "dog"]
    for image, _ in datasets.eval_dataset(source, 24, 1):
      assert image.shape == (1, 24, 24, 3)
  grey = images.decode_image_file(os.path.join(awkward_folder, "train", "cat", "grey.png"))
  assert grey.shape == (23, 17, 3)
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_eval_is_in_file_order_without_augmentation(awkward_folder):
  source = datasets.load("imagefolder", "train", awkward_folder)
  first, _ = next(iter(datasets.eval_dataset(source, 16, 4)))
  path = os.path.join(awkward_folder, "train", "cat", "grey.png")
  np.testing.assert_array_equal(first[0], datasets.resize(images.decode_image_file(path), 16))


def test_an_eval_subset_is_the_same_whatever_the_global_seed():
  """--max_images draws its subset by index (evaluate.SUBSET_SEED): runs trained with other
  seeds are evaluated on the same images, so they pair image by image."""
  source = datasets.load("sample", "test", "")
  subsets = []
  for global_seed in (1, 2):
    tf.random.set_seed(global_seed)
    batches = datasets.eval_dataset(source, 16, 50, limit=30, subset_seed=0)
    subsets.append(np.concatenate([images.numpy() for images, _ in batches]))
  assert subsets[0].shape == (30, 16, 16, 3)
  np.testing.assert_array_equal(subsets[0], subsets[1])
  other = datasets.eval_dataset(source, 16, 50, limit=30, subset_seed=1)
  assert not np.array_equal(next(iter(other))[0].numpy(), subsets[0])


def test_imagenette_in_shared_loads_as_imagefolder():
  root = os.path.join(os.path.dirname(datasets.SAMPLE_ROOT), "..", "..", "shared", "data",
                      "imagenette2-224")
  if not os.path.isdir(root):
    pytest.skip("../shared/data/imagenette2-224 not present")
  train = datasets.load("imagefolder", "train", root)
  test = datasets.load("imagefolder", "test", root)
  assert (train.num_examples, test.num_examples, train.num_classes) == (5000, 3439, 10)


@pytest.mark.parametrize("root,match", [("/nonexistent", "not a directory"),
                                        ("EMPTY", "no train/ folder")])
def test_bad_image_folders_are_one_clear_error(tmp_path, root, match):
  root = str(tmp_path) if root == "EMPTY" else root
  with pytest.raises(UserError, match=match):
    datasets.load("imagefolder", "train", root)


def test_stl10_binary_files(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(5, 96, 96, 3), dtype=np.uint8)
  images[0, 0, 95] = [255, 0, 0]  # top-right pixel red: catches a row/column mix-up
  images[0, 95, 0] = [0, 0, 255]
  labels = np.array([0, 3, 9, 1, 2])
  write_stl10_binary(str(tmp_path / "stl10_binary"), "train", images, labels)
  write_stl10_binary(str(tmp_path / "stl10_binary"), "test", images[:2], labels[:2])
  source = datasets.load("stl10", "train", str(tmp_path))
  assert source.num_examples == 5 and source.class_names[0] == "airplane"
  decoded = [(source.decode(x).numpy(), int(y)) for x, y in source.examples]
  for (image, label), want_image, want_label in zip(decoded, images, labels):
    np.testing.assert_array_equal(image, want_image)
    assert label == want_label
  batch, _ = next(iter(datasets.train_dataset(source, 96, 4, seed=0)))
  assert batch.shape == (4, 96, 96, 3)
  assert datasets.load("stl10", "test", str(tmp_path)).num_examples == 2


def test_stl10_binary_size_mismatch_is_refused(tmp_path):
  images = np.zeros((2, 96, 96, 3), np.uint8)
  write_stl10_binary(str(tmp_path), "train", images, [0, 1, 2])
  with pytest.raises(UserError, match="train_X.bin"):
    datasets.load("stl10", "train", str(tmp_path))


def test_stl10_through_tfds_mock_data():
  with tfds.testing.mock_data(num_examples=6):
    source = datasets.load("stl10", "train")
    assert source.num_examples == 6 and source.num_classes == 10
    assert source.arrays is None  # tfds is streamed
    a = first_batches(datasets.train_dataset(source, 32, 3, seed=5), 4)
    b = first_batches(datasets.train_dataset(source, 32, 3, seed=5, start_step=2), 2)
  assert a[0][0].shape == (3, 32, 32, 3)
  assert 0.0 <= a[0][0].min() and a[0][0].max() <= 1.0
  for (x1, y1), (x2, y2) in zip(a[2:], b):
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_offline_tfds_fails_fast_with_one_clear_line(tmp_path, monkeypatch):
  monkeypatch.setattr(datasets, "NETWORK_PROBE", "127.0.0.1:9")  # nothing listens: refused at once
  start = time.time()
  with pytest.raises(UserError) as error:
    datasets.load("stl10", "train", str(tmp_path))
  message = str(error.value)
  assert time.time() - start < 20
  assert "\n" not in message
  for hint in ("--data_dir", "--dataset=imagefolder", "--dataset=sample"):
    assert hint in message


def test_unknown_dataset_is_refused():
  with pytest.raises(UserError, match="--dataset=mnist"):
    datasets.load("mnist")


def test_cached_source_gives_the_same_batches():
  source = datasets.load("sample_cifar10", "train")
  cached = datasets.cached(source, 24)
  plain = datasets.train_dataset(source, 24, 8, seed=4, start_step=3)
  fast = datasets.train_dataset(cached, 24, 8, seed=4, start_step=3)
  for (a, la), (b, lb) in zip(plain.take(3), fast.take(3)):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(la.numpy(), lb.numpy())
