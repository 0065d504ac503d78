"""Paired statistics of two methods classified on the same images (bin/evaluate, bin/report).

Each method's per-image correctness is kept in eval.json as a string of 0/1 (`encode`), in
the evaluation's image order, with a digest of the labels that says which images they were
(`images_digest`): two records pair only when their digests agree.

  difference   accuracy(a) − accuracy(b), and its 95 % percentile-bootstrap interval over the
               images (the same resampled images for both methods, which is what pairs them)
  McNemar      exact two-sided p of the discordant images: of the n images only one method gets
               right, b go to a; p = min(1, 2·P(Binomial(n, ½) ≤ min(b, n − b)))

Methods repeated over seeds pair seed by seed (a's run of seed s with b's run of seed s). The
difference is then the mean over seeds and images, and its interval a two-level bootstrap: each
resample draws the seeds with replacement, then the images (the same images for every seed
drawn), so the interval covers the fine-tunes' seed-to-seed variation as well as the choice of
images. With 3 seeds that level is coarse: a bootstrap of n seeds keeps (n − 1)/n of their
variance (two thirds for 3), so read the interval as approximate. McNemar is taken
for each seed (an image is one unit in each), reported as the largest p over the seeds.
"""
import hashlib
import math

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000


def encode(correct):
  """Per-image correctness (bool array) as the eval.json string of 0/1."""
  return "".join("1" if c else "0" for c in np.asarray(correct, bool))


def decode(text):
  return np.frombuffer(text.encode(), np.uint8) == ord("1")


def images_digest(labels):
  """Which images an evaluation saw, in order (their labels, and how many)."""
  labels = np.asarray(labels, np.int64)
  return hashlib.sha256(labels.tobytes()).hexdigest()[:16] + f"-{len(labels)}"


def mcnemar_exact_p(correct_a, correct_b):
  """Exact two-sided McNemar p of two methods' per-image correctness (module doc)."""
  a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
  only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
  n = only_a + only_b
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
  return min(1.0, float(2 * tail / 2**n))


def bootstrap_difference(correct_a, correct_b, resamples=BOOTSTRAP_RESAMPLES, seed=0):
  """(difference, low, high): accuracy(a) − accuracy(b) with its 95 % paired bootstrap CI, of
  [images] or [seeds, images] arrays (seeds and images resampled: module doc)."""
  difference = (np.atleast_2d(np.asarray(correct_a, np.float64)) -
                np.atleast_2d(np.asarray(correct_b, np.float64)))  # [seeds, images]
  seeds, images = difference.shape
  rng = np.random.default_rng(seed)
  means = np.empty(resamples)
  for start in range(0, resamples, 1000):  # 1000 resamples at a time bounds the memory
    count = min(1000, resamples - start)
    # How often each seed is drawn, as weights: [count, seeds] @ [seeds, images] gives each
    # resample's per-image difference averaged over its drawn seeds.
    drawn = rng.integers(0, seeds, size=(count, seeds))
    weights = (drawn[:, :, None] == np.arange(seeds)).sum(axis=1) / seeds
    per_image = weights @ difference
    picks = rng.integers(0, images, size=(count, images))
    means[start:start + count] = np.take_along_axis(per_image, picks, axis=1).mean(axis=1)
  low, high = np.percentile(means, [2.5, 97.5])
  return float(difference.mean()), float(low), float(high)


def compare(correct_a, correct_b):
  """The paired comparison of a against b, as recorded and tabulated: per-image correctness
  [images], or [seeds, images] of runs paired seed by seed (module doc)."""
  a, b = np.atleast_2d(correct_a), np.atleast_2d(correct_b)
  if a.shape != b.shape:
    raise ValueError(f"paired runs differ in shape: {a.shape} and {b.shape}")
  difference, low, high = bootstrap_difference(a, b)
  per_seed = [mcnemar_exact_p(a_s, b_s) for a_s, b_s in zip(a, b)]
  return dict(difference=difference, ci95=[low, high], mcnemar_p=max(per_seed),
              mcnemar_p_per_seed=per_seed, images=a.shape[1], seeds=len(a))


def markdown(comparisons, extra=()):
  """Table lines of [(label a, label b, compare(...))]; `extra`: further columns, as (header,
  function of the (label a, label b, compare(...)) row) pairs."""
  header = (["comparison", "ΔACC (points)", "95 % CI (bootstrap)",
             "McNemar p (largest over seeds)", "images", "seeds"] + [h for h, _ in extra])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in comparisons:
    name_a, name_b, c = row
    low, high = c["ci95"]
    cells = [f"{name_a} − {name_b}", f"{100 * c['difference']:+.2f}",
             f"[{100 * low:+.2f}, {100 * high:+.2f}]", f"{c['mcnemar_p']:.3g}",
             f"{c['images']}", f"{c.get('seeds', 1)}"] + [cell(row) for _, cell in extra]
    lines.append("| " + " | ".join(cells) + " |")
  return lines
