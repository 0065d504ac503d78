"""Tables of evaluated runs in the paper's layout: rows Original / TDIC / APIC / SAIC / KD /
JPEG / WebP / AVIF, columns SI, ACC, F1, PSNR, SSIM, MSE, bpp. One run's table is MODEL_DIR/eval.md
(evaluate.py); several runs' are bin/report's results.md (report.py)."""

from saic_tf.evaluation import statistics

METHOD_ORDER = ("original", "tdic", "apic", "saic", "kd", "jpeg", "webp", "avif")
METHOD_NAMES = {"original": "Original", "tdic": "TDIC", "apic": "APIC", "saic": "SAIC",
                "kd": "KD", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
COLUMNS = ("si", "accuracy", "f1", "psnr", "ssim", "mse", "bpp")
HEADERS = ("SI (nats)", "ACC (%)", "F1 (%)", "PSNR (dB)", "SSIM", "MSE", "bpp")


def _format(column, value):
  if value is None:
    return "—"
  if column in ("accuracy", "f1"):
    return f"{100 * value:.2f}"
  if column in ("psnr", "si"):
    return f"{value:.2f}"
  if column == "bpp":
    return f"{value:.3f}"
  return f"{value:.4f}"


def label(method, row):
  """The row's name in tables and legends: SAIC with its GSW variant (every one, since the
  default is not the paper's; a row whose eval.json names none has none, but `paper` beside a
  layer) and τ, KD with the weight of its feature loss, and the number of seeds of a merged
  row."""
  name = METHOD_NAMES.get(method, method)
  if method == "saic" and row.get("feature_layer"):  # a layer other than the backbone's last
    name += f"-{row.get('gsw') or 'paper'}@{row['feature_layer']}"
  elif method == "saic" and row.get("gsw"):
    name += f"-{row['gsw']}"
  elif method in ("apic", "kd") and row.get("feature_layer"):
    name += f"@{row['feature_layer']}"
  if method == "kd" and row.get("kd_feature_weight"):  # KL + w · APIC's feature loss
    name += f"+{row['kd_feature_weight']:g}·APIC"
  if method == "saic" and row.get("tau") is not None:
    name += f" (τ={row['tau']:g})"
  if row.get("seeds"):
    name += f" ({len(row['seeds'])} seeds)"
  return name


def _bpp_cell(method, row):
  cell = _format("bpp", row["bpp"])
  if row.get("coded_bpp") is not None:
    cell += f" (file {row['coded_bpp']:.3f})"
  over = row.get("images_over_target")
  if over:
    cell += f" (target not reached for {over} images; up to {row['max_bpp']:.3f})"
  return cell


def _cell(column, row):
  """A value, or mean ± std for a row merged over seeds (report.merge_seeds)."""
  cell = _format(column, row[column])
  std = row.get("std", {}).get(column)
  if std is not None:
    cell += " ± " + (f"{100 * std:.2f}" if column in ("accuracy", "f1") else f"{std:.2f}")
  return cell


def markdown_rows(entries):
  lines = ["| method | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
  for method, row in entries:
    cells = [_cell(c, row) for c in COLUMNS[:-1]] + [_bpp_cell(method, row)]
    lines.append(f"| {label(method, row)} | " + " | ".join(cells) + " |")
  return lines


def eval_markdown(record):
  """MODEL_DIR/eval.md: one run's table with its settings."""
  named = dict(tau=record["tau"], gsw=record.get("gsw"),
               feature_layer=record.get("feature_layer"),
               kd_feature_weight=record.get("kd_feature_weight"))
  entries = [(m, dict(r, **named)) for m, r in sorted_rows(record["rows"].items())]
  si = record["si"]
  lines = [f"# Evaluation of {record['model_dir']}", "",
           f"{record['num_images']} images of {record['dataset']}/{record['split']} at "
           f"{record['image_size']}×{record['image_size']}; nominal rate "
           f"{record['nominal_bpp']:g} bpp; downstream {record['downstream']['backbone']} "
           f"(features: {record['downstream']['feature_layer']}).", ""]
  lines += markdown_rows(entries)
  lines += ["", "PSNR, SSIM and MSE (per pixel, on [0, 1]) are against the original images; "
            "bpp is the nominal C/s² for the learned codec (with, in brackets, the mean size "
            "of its entropy-coded .saic files, headers included) and the mean file size for "
            "JPEG/WebP/AVIF, searched per image to the largest file within the nominal rate.",
            f"SI: {si['estimator']} in {si['units']} between the downstream {si['outputs']} on "
            f"original and compressed images; q(y'|y) is a {si['hidden']}-unit MLP fitted for "
            f"{si['steps']} steps (batch {si['batch_size']}, lr {si['learning_rate']:g}) on "
            f"{si['club_train_images']} training pairs; log-variance kept in "
            f"{si['logvar_range']}, which bounds the Original row (y against itself).", ""]
  if record.get("paired"):
    lines += ["## Paired accuracy differences", "",
              "On the same images: the difference in accuracy with its 95 % bootstrap interval, "
              "and McNemar's exact p (saic_tf/evaluation/statistics.py).", ""]
    lines += statistics.markdown([(label(c["a"], named), label(c["b"], {}), c)
                                  for c in record["paired"]])
    lines.append("")
  return "\n".join(lines)


def order(method, tau):
  """Sort key of table rows and plot series: METHOD_ORDER, then SAIC runs by increasing τ."""
  rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
  return rank, tau or 0.0


def sorted_rows(items):
  """(method, row) items in `order`."""
  return sorted(items, key=lambda item: order(item[0], item[1].get("tau")))
