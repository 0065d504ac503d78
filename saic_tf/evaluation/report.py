"""Tables and figures from one or more evaluated runs (their eval.json), in the paper's layout.

Rows Original / TDIC / APIC / SAIC / JPEG / WebP / AVIF, one block per nominal rate; columns SI,
ACC, F1, PSNR, SSIM, MSE, bpp. Figures: accuracy and PSNR against bpp for every method, the τ
sweep (ACC and SI against τ, paper Fig. 4), the distribution of W' (paper appendix), and a
gallery like paper Fig. 3 (at the lowest rate of a learned codec, originals beside each table
row's reconstruction, from the first seed's run, with the downstream network's predicted
label).
"""
import collections
import csv
import os

import numpy as np

from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_json
from saic_tf.evaluation import statistics
from saic_tf.evaluation import tables

FIGURES = ("accuracy_vs_bpp.png", "psnr_vs_bpp.png", "tau_sweep.png", "gsw_weights.png",
           "gallery.png")
# Figures: one colour per method; SAIC runs of different τ differ by their marker.
FINE_TUNES = ("apic", "saic", "kd")
METHOD_COLORS = {"tdic": "tab:blue", "apic": "tab:orange", "saic": "tab:red", "kd": "tab:green",
                 "jpeg": "tab:pink", "webp": "tab:gray", "avif": "tab:olive"}
SAIC_MARKERS = "s^vD<>ph*"


def gather(records):
  """{nominal bpp: [(method, row)]} over runs, without repeating a row two runs share."""
  blocks, seen = {}, set()
  for record in records:
    for method, row in tables.sorted_rows(record["rows"].items()):
      stage_checkpoint = record.get("stages", {}).get(method)
      if method in ("original", "jpeg", "webp", "avif"):  # the same images at the same rate
        key = (method, record["nominal_bpp"], record["dataset"], record["num_images"])
      elif method == "saic":
        key = (method, stage_checkpoint, record["tau"])
      else:
        key = (method, stage_checkpoint)
      if key in seen:
        continue
      seen.add(key)
      fine_tune = method in FINE_TUNES
      row = dict(row, **_series_fields(method, record),
                 model_dir=record["model_dir"], images_digest=record.get("images_digest"),
                 num_images=record.get("num_images"),
                 correct=record.get("correct", {}).get(method),
                 seed=record.get("seed") if fine_tune else None,
                 setup=record.get("setup_digest") if fine_tune else None,
                 base=record.get("stages", {}).get("tdic"),
                 classifier=record.get("downstream", {}).get("dir"))
      blocks.setdefault(record["nominal_bpp"], []).append((method, row))
  return {bpp: tables.sorted_rows(merge_seeds(entries))
          for bpp, entries in sorted(blocks.items())}


def merge_seeds(entries):
  """Fine-tunes repeated over seeds (the same settings, base and classifier: evaluate's
  setup_digest), on the same images, become one row: the mean of each column, `std` (sample
  standard deviation) of ACC, F1, PSNR, SI and feature MSE, `seeds`, and each seed's per-image
  correctness in `correct_runs`."""
  def key(method, row):
    return (method, row.get("setup"), row.get("images_digest"))

  groups, merged = {}, []
  for method, row in entries:
    if row.get("setup") and row.get("seed") is not None:
      if key(method, row) in groups:
        groups[key(method, row)].append(row)
        continue
      groups[key(method, row)] = [row]
    merged.append((method, row))
  result = []
  for method, row in merged:
    runs = groups.get(key(method, row), [row])
    if len(runs) < 2 or len({r["seed"] for r in runs}) < len(runs):
      result += [(method, r) for r in runs]
      continue
    runs = sorted(runs, key=lambda r: r["seed"])
    mean = {}
    for column in tables.COLUMNS + ("coded_bpp", "feature_mse"):
      values = [r.get(column) for r in runs]
      mean[column] = None if None in values else float(np.mean(values))
    std = {column: float(np.std([r[column] for r in runs], ddof=1))
           for column in ("accuracy", "f1", "psnr", "si", "feature_mse")
           if mean[column] is not None}
    result.append((method, dict(runs[0], **mean, std=std, seeds=[r["seed"] for r in runs],
                                correct_runs=[r.get("correct") for r in runs])))
  return result


def _correctness(row):
  """{seed: per-image correctness} of a row (a merged row has one per seed)."""
  if row.get("correct_runs"):
    return dict(zip(row["seeds"], map(statistics.decode, row["correct_runs"])))
  return {row.get("seed"): statistics.decode(row["correct"])} if row.get("correct") else {}


# What two rows must share for their per-image correctness to be paired: the same images, judged
# by the same classifier, from codecs fine-tuned from the same base.
SAME_SETTING = ("images_digest", "base", "classifier")


def _same_setting(row, other, keys):
  return all(row.get(k) == other.get(k) for k in keys)


def paired_against_apic(entries):
  """[(label, APIC's label, statistics.compare)] of every other learned fine-tune (SAIC at each
  τ, KD) against the APIC row of the same rate, base, classifier and feature layer, when both
  were classified on the same images."""
  # Decoded once per row: {id(row): {seed: correctness}}.
  decoded = {id(row): _correctness(row) for _, row in entries}
  comparisons = []
  for method, row in entries:
    mine = decoded[id(row)]
    if method not in ("saic", "kd") or not mine:
      continue
    candidates = [r for m, r in entries
                  if m == "apic" and decoded[id(r)] and
                  _same_setting(row, r, SAME_SETTING + ("feature_layer",))]
    if not candidates:
      continue
    # The APIC row sharing the most seeds; a single APIC run pairs with a single run whatever
    # their seeds.
    apic = max(candidates, key=lambda r: len(set(decoded[id(r)]) & set(mine)))
    theirs = decoded[id(apic)]
    seeds = sorted(set(mine) & set(theirs), key=str)
    if not seeds and len(candidates) == 1 and len(mine) == len(theirs) == 1:
      mine, theirs, seeds = {0: next(iter(mine.values()))}, {0: next(iter(theirs.values()))}, [0]
    if seeds:
      comparisons.append((tables.label(method, row), tables.label("apic", apic),
                          statistics.compare(np.stack([mine[s] for s in seeds]),
                                             np.stack([theirs[s] for s in seeds]))))
  return comparisons


def paired_against_base(entries):
  """[(APIC's label, TDIC's label, statistics.compare)]: each APIC row against the TDIC codec it
  was fine-tuned from (its base), judged by the same classifier on the same images: what the
  feature loss gains over pixel MSE (the paper's TDIC < APIC). TDIC is one codec whatever the
  fine-tune's seed, so each of APIC's seeds pairs with it."""
  comparisons = []
  for method, row in entries:
    mine = _correctness(row)
    if method != "apic" or not mine:
      continue
    for other, base in entries:
      if other == "tdic" and base.get("correct") and _same_setting(row, base, SAME_SETTING):
        seeds = sorted(mine, key=str)
        theirs = statistics.decode(base["correct"])
        comparisons.append((tables.label("apic", row), tables.label("tdic", base),
                            statistics.compare(np.stack([mine[s] for s in seeds]),
                                               np.stack([theirs] * len(seeds)))))
        break
  return comparisons


def paired_comparisons(blocks):
  """{rate: {"paired_base": APIC against its TDIC base, "paired": the others against APIC}}:
  computed once (each is a bootstrap) for the tables and results.json alike."""
  return {bpp: dict(paired_base=paired_against_base(entries), paired=paired_against_apic(entries))
          for bpp, entries in blocks.items()}


def write_tables(blocks, paired, out_dir):
  """results.md and results.csv; `paired` is paired_comparisons(blocks)."""
  lines = ["# Results", ""]
  for bpp, entries in blocks.items():
    lines += [f"## {bpp:g} bpp (nominal)", ""] + tables.markdown_rows(entries) + [""]
    for comparisons, words in ((paired[bpp]["paired_base"], "APIC against its TDIC base"),
                               (paired[bpp]["paired"], "Against APIC")):
      if comparisons:
        lines += [f"{words} on the same images: the accuracy difference with its 95 % "
                  "bootstrap interval and McNemar's exact p.", ""]
        lines += statistics.markdown(comparisons) + [""]
  per_bit = accuracy_per_bit_markdown(blocks)
  if len(blocks) > 1 and per_bit:
    lines += ["## Accuracy per bit", "",
              f"The real bpp of the files at which each method keeps {100 * KEEP:g} % of the "
              "original images' accuracy, linear between its rates.", ""] + per_bit + [""]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(lines))
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["nominal_bpp", "method", "tau"] + list(tables.COLUMNS) +
                    ["coded_bpp", "feature_mse", "images_over_target", "model_dir", "seeds",
                     "accuracy_std"])
    for bpp, entries in blocks.items():
      for method, row in entries:
        writer.writerow([bpp, method, row.get("tau")] + [row[c] for c in tables.COLUMNS] +
                        [row.get("coded_bpp"), row.get("feature_mse"),
                         row.get("images_over_target"), row["model_dir"],
                         len(row.get("seeds") or []) or 1, row.get("std", {}).get("accuracy")])


def save_figure(figure, path, dpi=120):
  figure.tight_layout()
  figure.savefig(path, dpi=dpi)
  pyplot().close(figure)


def pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


class SeriesKey(collections.namedtuple(
    "SeriesKey", ("method", "tau", "gsw", "feature_layer", "kd_feature_weight"))):
  """What makes a method's rows one series across rates."""

  def label(self):
    return tables.label(self.method, self._asdict())


def metric_series(blocks, column):
  """{SeriesKey: sorted [(real bpp, value, std over seeds)]} of every method but
  Original, and Original's values. Every method is at the real size of its files: the learned
  codec's .saic files come out below its nominal rate, JPEG/WebP/AVIF's at or below it."""
  series, original = {}, []
  for entries in blocks.values():
    for method, row in entries:
      if row[column] is None:
        continue
      scale = 100 if column == "accuracy" else 1
      if method == "original":
        original.append(scale * row[column])
        continue
      key = SeriesKey(method, row["tau"], row.get("gsw") or "", row.get("feature_layer") or "",
                      row.get("kd_feature_weight") or 0.0)
      spread = row.get("std", {}).get(column)
      series.setdefault(key, []).append((
          row["coded_bpp"] if row.get("coded_bpp") is not None else row["bpp"],
          scale * row[column], 0.0 if spread is None else scale * spread))
  return {key: sorted(points) for key, points in series.items()}, original


KEEP = 0.9  # accuracy per bit: the real bpp at which a method keeps this share of Original's
# bpp_to_keep's answer in words, by its bound.
PER_BIT_WORDS = {None: "{:.3f}", "below": "≤ {:.3f}", "above": "> {:.3f}"}


def bpp_to_keep(points, target):
  """The real bpp at which accuracy first reaches `target` along [(bpp, accuracy, ...)] (sorted
  by bpp), linear between the two points around it: (bpp, None); or (the lowest bpp measured,
  "below") when it is reached there already; or (the highest, "above") when never."""
  if points[0][1] >= target:
    return points[0][0], "below"
  for (x0, y0, *_), (x1, y1, *_) in zip(points, points[1:]):
    if y0 < target <= y1:
      return x0 + (x1 - x0) * (target - y0) / (y1 - y0), None
  return points[-1][0], "above"


def accuracy_per_bit(blocks, keep=KEEP):
  """[(label, real bpp, bound)] of every method with its rates (module doc: bpp_to_keep), in the
  tables' order: the real bpp at which it keeps `keep` of the Original row's accuracy."""
  series, original = metric_series(blocks, "accuracy")
  if not original:
    return []
  target = keep * float(np.mean(original))
  return [(key.label(), *bpp_to_keep(series[key], target))
          for key in sorted(series, key=lambda key: tables.order(*key[:2]))]


def accuracy_per_bit_markdown(blocks, keep=KEEP):
  """accuracy_per_bit as a table."""
  rows = accuracy_per_bit(blocks, keep)
  if not rows:
    return []
  notes = {None: "", "below": " (the lowest rate measured)",
           "above": " (not reached at the rates measured)"}
  return ([f"| method | real bpp at {100 * keep:g} % of the original accuracy |", "|---|---|"] +
          [f"| {label} | {PER_BIT_WORDS[bound].format(bpp)}{notes[bound]} |"
           for label, bpp, bound in rows])


def _metric_vs_bpp(blocks, column, ylabel, path):
  plt = pyplot()
  figure, axis = plt.subplots(figsize=(5, 3.5))
  series, original = metric_series(blocks, column)
  for value in original:
    axis.axhline(value, color="k", linestyle=":", linewidth=1)
  if column == "accuracy" and original:  # where accuracy per bit is read off
    axis.axhline(KEEP * float(np.mean(original)), color="gray", linestyle="--", linewidth=1,
                 label=f"{100 * KEEP:g} % of the original")
  saic_series = sorted(key[1:] for key in series if key[0] == "saic")
  for key in sorted(series, key=lambda key: tables.order(*key[:2])):
    method = key.method
    marker = (SAIC_MARKERS[saic_series.index(key[1:]) % len(SAIC_MARKERS)]
              if method == "saic" else "o")
    x, y, error = zip(*series[key])
    axis.errorbar(x, y, yerr=error if any(error) else None, marker=marker, capsize=3,
                  label=key.label(), color=METHOD_COLORS.get(method))
  axis.set_xlabel("bpp of the files (real size)")
  rates = [x for points in series.values() for x, *_ in points if x]
  if rates and max(rates) > 8 * min(rates):  # e.g. the baselines alone at 1-2 bpp
    axis.set_xscale("log")
  axis.set_ylabel(ylabel)
  axis.grid(alpha=0.3)
  axis.legend(fontsize=7)
  save_figure(figure, path)


def _tau_sweep(blocks, path):
  plt = pyplot()
  figure, (acc_axis, si_axis) = plt.subplots(1, 2, figsize=(8, 3.5))

  def variant(row):
    return tables.label("saic", dict(gsw=row.get("gsw"), feature_layer=row.get("feature_layer")))

  def sweep(entries, name):
    # With seeds, each point is their mean and its error bar their std.
    return sorted((row["tau"], row["accuracy"], row["si"],
                   row.get("std", {}).get("accuracy", 0.0), row.get("std", {}).get("si", 0.0))
                  for method, row in entries
                  if method == "saic" and row.get("tau") and variant(row) == name)

  # A rate where a variant ran at one τ only (bin/reproduce's other rates) is no sweep: drawn
  # only when the variant has more than one τ at no rate.
  swept = {variant(row) for entries in blocks.values() for method, row in entries
           if method == "saic" and len(sweep(entries, variant(row))) > 1}
  for bpp, entries in blocks.items():
    line = None
    for name in sorted({variant(row) for method, row in entries if method == "saic"}):
      points = sweep(entries, name)
      if not points or (name in swept and len(points) < 2):
        continue
      taus, accs, sis, acc_std, si_std = zip(*points)
      name = f"{bpp:g} bpp" + (f", {name}" if name != "SAIC" else "")
      line, *_ = acc_axis.errorbar(taus, [100 * a for a in accs],
                                   yerr=[100 * e for e in acc_std] if any(acc_std) else None,
                                   marker="o", capsize=3, label=name)
      si_axis.errorbar(taus, sis, yerr=si_std if any(si_std) else None, marker="o", capsize=3,
                       label=name, color=line.get_color())
    if line is not None:
      # APIC is the uniform-weight limit τ → 0 of the same fine-tune: a dashed level.
      for method, row in entries:
        if method == "apic":
          acc_axis.axhline(100 * row["accuracy"], color=line.get_color(), linestyle="--",
                           linewidth=1, label=f"APIC, {bpp:g} bpp")
          si_axis.axhline(row["si"], color=line.get_color(), linestyle="--", linewidth=1,
                          label=f"APIC, {bpp:g} bpp")
  for axis, ylabel in ((acc_axis, "ACC (%)"), (si_axis, "SI (nats)")):
    axis.set_xscale("log")
    axis.set_xlabel("τ")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if axis.get_lines():
      axis.legend(fontsize=7)
    else:
      axis.text(0.5, 0.5, "no SAIC run", ha="center", transform=axis.transAxes)
  save_figure(figure, path)


def _gsw_weights(records, path):
  plt = pyplot()
  figure, axis = plt.subplots(figsize=(5, 3.5))
  for record in records:
    gsw_path = layout.gsw_path(record["model_dir"])
    if os.path.exists(gsw_path):
      gsw = formats.read("gsw", gsw_path, "delete it or compute GSW again")
      axis.hist(gsw["W_prime"], bins=40, alpha=0.6,
                label=f"τ={gsw['tau']:g}, {record['nominal_bpp']:g} bpp")
  axis.set_xlabel("w'_k")
  axis.set_ylabel("channels")
  if axis.patches:
    axis.legend(fontsize=7)
  else:
    axis.text(0.5, 0.5, "no SAIC run (no gsw.json)", ha="center", transform=axis.transAxes)
  save_figure(figure, path)


def _series_fields(method, record):
  """The fields of a run's record that, with the method, make one of its rows a series
  (SeriesKey's): SAIC's τ and variant, KD's feature weight, a fine-tune's feature layer."""
  return dict(tau=record["tau"] if method == "saic" else None,
              gsw=record.get("gsw") if method == "saic" else None,
              kd_feature_weight=record.get("kd_feature_weight") if method == "kd" else None,
              feature_layer=record.get("feature_layer") if method in FINE_TUNES else None)


def gallery_columns(records):
  """(rate, [(title, images, predictions, labels, class names, real bpp)]) of the paper's Fig. 3:
  at the lowest rate of a learned codec with a gallery, one column per row of the tables (each
  SAIC variant and τ its own, titled as in the tables, in their order), from the first run that
  has it (the first seed's); real bpp is that run's mean over the evaluated images (None for
  Original)."""
  found = [(r, layout.eval_path(r["model_dir"], layout.GALLERY_FILE)) for r in records]
  found = [(r, path) for r, path in found if os.path.exists(path)]
  # Not a rate of the baselines alone (bin/evaluate --baselines_at), which may be lower.
  rate = min((r["nominal_bpp"] for r, _ in found if not r.get("baselines_at")), default=None)
  columns = {}  # title: (sort key, images, predictions, labels, class names, real bpp)
  for record, gallery_path in found:
    if record["nominal_bpp"] != rate:
      continue
    gallery = np.load(gallery_path)
    for method in map(str, gallery["methods"]):
      fields = _series_fields(method, record)
      row = record.get("rows", {}).get(method, {})
      real = row.get("coded_bpp") if row.get("coded_bpp") is not None else row.get("bpp")
      columns.setdefault(tables.label(method, fields), (
          tables.order(method, fields["tau"]), gallery[f"images_{method}"],
          gallery[f"predictions_{method}"], gallery["labels"], gallery["class_names"],
          None if method == "original" else real))
  ordered = sorted(columns.items(), key=lambda item: item[1][0])  # stable: ties as found
  return rate, [(title, *column[1:]) for title, column in ordered]


def _gallery(records, path, rows=6):
  """Each image's predicted class under it (green: right)."""
  plt = pyplot()
  rate, columns = gallery_columns(records)
  rows = min([rows] + [len(c[1]) for c in columns]) if columns else 1
  figure, axes = plt.subplots(rows, max(len(columns), 1), squeeze=False,
                              figsize=(1.6 * max(len(columns), 1), 1.8 * rows + 0.3))
  for j, (title, images, predictions, labels, names, real) in enumerate(columns):
    for i in range(rows):
      axis = axes[i, j]
      axis.imshow(images[i], interpolation="nearest")
      right = predictions[i] == labels[i]
      axis.set_xlabel(str(names[predictions[i]]), fontsize=6, color="green" if right else "red")
      axis.set_xticks([])
      axis.set_yticks([])
      if i == 0:  # "SAIC-magnitude (τ=8)" on two lines, to fit the column
        # The real size too: JPEG/WebP/AVIF may not fit the nominal rate at all.
        axis.set_title(title.replace(" (", "\n(") +
                       ("" if real is None else f"\n{real:.3f} bpp real"), fontsize=7)
  if rate is not None:
    figure.suptitle(f"{rate:g} bpp (nominal)", fontsize=9)
  # At 80 dpi a panel is about 110 pixels wide: the images' own size (96 in the
  # reproduction), not upscaled into megabytes of PNG.
  save_figure(figure, path, dpi=80)


def results_record(blocks, paired):
  """results.json: every row of every block (means over seeds, their std, without per-image
  correctness), each block's paired comparisons against APIC (`paired`) and of APIC against its
  TDIC base (`paired_base`; `paired` is paired_comparisons(blocks)), and accuracy per bit: what
  the tables show, for other tools (and bin/reproduce's README) to read."""
  dropped = ("correct", "correct_runs")
  record = dict(blocks=[], accuracy_per_bit=[
      dict(method=label, bpp=bpp, bound=bound) for label, bpp, bound in accuracy_per_bit(blocks)],
                keep=KEEP)
  for bpp, entries in blocks.items():
    rows = [dict({k: v for k, v in row.items() if k not in dropped}, method=method,
                 label=tables.label(method, row)) for method, row in entries]
    comparisons = {key: [dict(a=a, b=b, **c) for a, b, c in paired[bpp][key]]
                   for key in ("paired", "paired_base")}
    record["blocks"].append(dict(nominal_bpp=bpp, rows=rows, **comparisons))
  return record


def build(model_dirs, out_dir):
  """Writes results.md, results.csv, results.json and the figures of the evaluated runs into
  `out_dir`."""
  return build_records([read_json(layout.eval_path(d), f"run bin/evaluate --model_dir={d} first")
                        for d in model_dirs], out_dir)


def build_records(records, out_dir):
  """build, from eval.json records already read."""
  if not records:
    raise UserError("bin/report needs at least one evaluated MODEL_DIR")
  os.makedirs(out_dir, exist_ok=True)
  blocks = gather(records)
  paired = paired_comparisons(blocks)
  write_tables(blocks, paired, out_dir)
  write_json(os.path.join(out_dir, "results.json"), results_record(blocks, paired))
  _metric_vs_bpp(blocks, "accuracy", "ACC (%)", os.path.join(out_dir, FIGURES[0]))
  _metric_vs_bpp(blocks, "psnr", "PSNR (dB)", os.path.join(out_dir, FIGURES[1]))
  _tau_sweep(blocks, os.path.join(out_dir, FIGURES[2]))
  _gsw_weights(records, os.path.join(out_dir, FIGURES[3]))
  _gallery(records, os.path.join(out_dir, FIGURES[4]))
  return [os.path.join(out_dir, name)
          for name in ("results.md", "results.csv", "results.json") + FIGURES]
