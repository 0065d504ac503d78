"""The real-data reproduction, second edition: bin/reproduce (paper Tables 1, 2, 6, Figs. 3-4).

One ResNet18 classifier, trained from scratch on Imagenette-96's training split less its
validation split (--holdout_every), judges every row. The codecs start from the shipped TDIC
codecs (--bases, one per rate). The runs take bin/gsw_study's layout, so a --model_dir the study
used shares its runs (and its selection.json):

  ROOT/selection.json                         τ chosen on the validation split (--select_taus),
                                              and KD's feature weight (--select_kd_weights)
  ROOT/bpp_<r>/apic/                          APIC (the first rate's also trains the classifier)
  ROOT/bpp_<r>/kd/                            the KD reference (…_feature_weight_<w> with a
                                              feature loss)
  ROOT/bpp_<r>/saic_<gsw>_tau_<τ>/            SAIC with --variant at its chosen τ
  ROOT/bpp_<s>/saic_<gsw>_tau_<t>/            the τ sweep (Fig. 4): every --select_taus at the
                                              selection rate, on the test split
  …_seed<s>                                   the same for every --seeds after the first
  ROOT/baselines_<r>/                         JPEG/WebP/AVIF alone at each --baseline_rates
  ROOT/timings.json                           wall-clock and CPU seconds of every run

RESULTS/ gets bin/report's tables and figures over every evaluated run (results.md/.csv/.json:
mean ± std over seeds, SAIC and KD against APIC with paired CIs, accuracy per bit; accuracy and
PSNR against the real bpp of the files; the τ sweep; W'; the gallery), kodak.json and
kodak_rd.png (experiments/kodak.py), tables.md (the paper's Tables 1, 2 and 6), comparison.md
(beside the paper's accuracies, paper.json), selection.json/.md, each run's small artifacts
(runs/…), COMMANDS.md, timings.json, accuracy_per_bit.json (the ratios the README gives), and
README.md, written from README_TEMPLATE with every number read from those JSON files.

A plan run by executor.execute, in order of importance (the first seed's rows at every rate,
the other seeds', the sweep, the baselines alone), each run trained, resumed or skipped, then
evaluated unless its evaluation matches its checkpoints; RESULTS/ is rewritten after every run
trained or evaluated, and at the end, so an interrupted reproduction leaves consistent partial
results and the same command continues it.
"""
import dataclasses
import os
import shlex
import shutil

from absl import logging

from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import copy_file, read_json, write_bytes, write_json
from saic_tf.evaluation import evaluate
from saic_tf.evaluation import report
from saic_tf.evaluation import statistics
from saic_tf.evaluation import tables
from saic_tf.experiments import executor
from saic_tf.experiments import gsw_study
from saic_tf.experiments import kodak
from saic_tf.experiments import model_zoo

# The paper's top-1 accuracy (%) of ResNet18 on STL-10 (its Table 2), for the side-by-side table.
PAPER_ACCURACY = {
    "source": "Sun et al., Semantic-assisted image compression (arXiv:2201.12599), Table 2: "
              "STL-10, ResNet18, top-1 accuracy (%)",
    "original": 85.45,
    "rates": {"0.125": {"tdic": 63.26, "apic": 68.55, "saic": 69.69},
              "0.25": {"tdic": 76.19, "apic": 77.66, "saic": 78.43},
              "0.5": {"tdic": 77.75, "apic": 79.04, "saic": 79.29}},
}
# What RESULTS/runs/ keeps of each run: small files only (no checkpoints).
KEPT_FILES = (layout.CONFIG_FILE, layout.GSW_FILE, layout.EVAL_FILE, layout.EVAL_MARKDOWN,
              layout.KODAK_FILE, layout.downstream_info_path(""))
README_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates",
                               "results_README.md")
KODAK_RESULTS, KODAK_FIGURE = "kodak.json", "kodak_rd.png"
PER_BIT_FILE = "accuracy_per_bit.json"  # the README's ratios of bits at the same accuracy
LEARNED = ("tdic", "apic", "saic", "kd")


@dataclasses.dataclass
class ReproduceSettings:
  bases: tuple = ("tdic-0.125", "tdic-0.25", "tdic-0.5")
  # The GSW variant of the SAIC rows (gsw or gsw@layer); "": the one of highest validation
  # accuracy in ROOT/selection.json (bin/gsw_study's selection), so that the test split chooses
  # neither the variant nor τ.
  variant: str = ""
  select_taus: tuple = (0.5, 2.0, 8.0)
  select_kd_weights: tuple = gsw_study.StudySettings.select_kd_weights
  select_rate: float = 0.0  # 0: the first base's rate
  seeds: tuple = (0, 1, 2)
  # JPEG/WebP/AVIF also at these nominal rates, where the codecs are not: accuracy per bit
  # needs the rate at which they keep the original accuracy, above the codecs' rates.
  baseline_rates: tuple = (1.0, 2.0)
  kodak_dir: str = os.path.join("..", "shared", "data", "kodak")
  results_dir: str = "results"

  def study(self, config: TrainConfig):
    """The same runs, as bin/gsw_study names them: one variant."""
    return gsw_study.StudySettings(
        bases=self.bases, variants=(self.variant,), select_taus=self.select_taus,
        select_kd_weights=self.select_kd_weights, select_rate=self.select_rate,
        seeds=self.seeds, results_dir=self.results_dir)


def with_variant(config: TrainConfig, settings: ReproduceSettings):
  """The settings with --variant resolved: as given, or the validation-chosen one."""
  if settings.variant:
    return settings
  path = os.path.join(config.model_dir, gsw_study.SELECTION_FILE)
  best = gsw_study.best_variant(gsw_study.read_selection(path)) if (
      os.path.exists(path)) else None
  if best is None:
    raise UserError(f"--variant: none chosen on the validation split yet ({path} has none): run "
                    f"bin/gsw_study --model_dir={config.model_dir} first, or name one "
                    "(e.g. --variant=fisher)")
  logging.info("reproduce: --variant=%s, of highest validation accuracy in %s", best[0], path)
  return dataclasses.replace(settings, variant=best[0])


def plan(config: TrainConfig, settings: ReproduceSettings, eval_settings: evaluate.EvalSettings,
         chosen, kd_weight=0.0):
  """[executor.RunSpec] in the order they run (module doc): bin/gsw_study's test runs of the one
  variant, the τ sweep, then JPEG/WebP/AVIF alone at each --baseline_rates with the classifier
  (evaluate's baselines_at, into ROOT/baselines_<r>/); `chosen` is selection.json's
  {variant: τ} and `kd_weight` its KD --kd_feature_weight."""
  study = settings.study(config)
  rates, select_rate = gsw_study.check(config, study, variants_flag="--variant")
  runs = gsw_study.plan(config, study, rates, select_rate, eval_settings, chosen, kd_weight,
                        sweep=True)
  alone = lambda bpp: dataclasses.replace(eval_settings, baselines_at=bpp, out_dir=os.path.join(
      config.model_dir, f"baselines_{bpp:g}"))
  return runs + [executor.RunSpec(evaluation=alone(bpp), evaluated=runs[0].run_dir)
                 for bpp in settings.baseline_rates]


def check_baseline_rates(rates, baseline_rates):
  codec_rates = {bpp for bpp, _ in rates}
  if (any(r <= 0 for r in baseline_rates) or len(set(baseline_rates)) != len(baseline_rates)
      or codec_rates & set(baseline_rates)):
    raise UserError(f"--baseline_rates={','.join(f'{r:g}' for r in baseline_rates)}: give "
                    "distinct rates > 0 other than the codecs' "
                    f"({', '.join(f'{r:g}' for r in sorted(codec_rates))}), or none")


def train_command(run_config: TrainConfig, flagfile, in_flagfile: TrainConfig):
  """The bin/train command that trains `run_config`: the flagfile (whose settings are
  `in_flagfile`), then every setting in which the run differs from it, and a SAIC run's GSW
  variant and scale always (their defaults have changed before)."""
  args = [f"--flagfile={flagfile}"]
  always = ("gsw", "gsw_scale") if run_config.resolved_loss == "saic" else ()
  for field in dataclasses.fields(TrainConfig):
    value = getattr(run_config, field.name)
    if field.name == "model_dir" or (value == getattr(in_flagfile, field.name)
                                     and field.name not in always):
      continue
    if value is None:  # absl cannot unset a flag
      raise UserError(f"{flagfile} sets --{field.name}, which {run_config.model_dir} leaves "
                      "unset: no bin/train command gives that run")
    args.append(f"--{'' if value else 'no'}{field.name}" if isinstance(value, bool)
                else f"--{field.name}={value}")
  args += ["--noexport", f"--model_dir={run_config.model_dir}"]
  return "bin/train " + " ".join(shlex.quote(a) for a in args)


def evaluate_command(model_dir, settings: evaluate.EvalSettings):
  args = [f"--model_dir={model_dir}", f"--split={settings.split}",
          f"--baselines={','.join(settings.baselines)}", f"--max_images={settings.max_images}",
          f"--club_train_images={settings.club_train_images}",
          f"--club_steps={settings.club.steps}"]
  if settings.baselines_at is not None:
    args += [f"--baselines_at={settings.baselines_at:g}", f"--out_dir={settings.out_dir}"]
  return "bin/evaluate " + " ".join(shlex.quote(a) for a in args)


def commands_markdown(runs, results_dir, command_line, flagfile, in_flagfile: TrainConfig,
                      study_first=""):
  """RESULTS/COMMANDS.md: the command that made RESULTS/, and what it runs, step by step;
  `runs` are the plan's RunSpecs, `in_flagfile` what the flagfile sets and `study_first` the
  bin/gsw_study command that chose the variant (when --variant was not given)."""
  lines = ["# Commands behind these results", "",
           "Made by (from the repository root; the same command resumes an interrupted run):",
           "", "```sh"] + ([study_first + "   # first: chooses the GSW variant (selection.md)"]
                          if study_first else []) + [command_line, "```", "",
           "which runs, in this order, the equivalent of (τ and KD's feature weight are chosen "
           "on the validation split first: selection.md):", "", "```sh"]
  done = []
  for spec in runs:  # the baselines alone last: nothing trained, done once evaluated at all
    evaluated = (executor.is_evaluated(spec.run_dir) if spec.config else
                 os.path.exists(layout.eval_path(spec.run_dir)))
    done += [spec.run_dir] if evaluated else []
    pending = "" if evaluated else "# not evaluated yet: "
    lines += [pending + train_command(spec.config, flagfile, in_flagfile)] if spec.config else []
    lines.append(pending + evaluate_command(spec.evaluated or spec.run_dir, spec.evaluation))
  lines.append("bin/report " + " ".join([f"--out={results_dir}"] + done))
  lines += ["```", "", f"`{flagfile}` holds the settings every run shares.", ""]
  return "\n".join(lines)


def _main_rows(blocks, chosen_tau, saic_layer="", layer=""):
  """{bpp: {method: row}}: each rate's Original, TDIC, APIC, KD and the baselines at the runs'
  --feature_layer (`layer`, "" for the backbone's last block), and SAIC at the chosen τ at its
  variant's layer (`saic_layer`, "" for `layer`; compared with the APIC control there), rows
  merged over seeds. Blocks of baselines alone (baseline_rates) are left out."""
  out = {}
  for bpp, entries in blocks.items():
    rows = {}
    for method, row in entries:
      at = row.get("feature_layer") or ""
      if method == "saic" and (row.get("tau") != chosen_tau or at != (saic_layer or layer)):
        continue
      if method in ("apic", "kd") and at != layer:
        continue
      rows.setdefault(method, row)
    if any(method in LEARNED for method in rows):  # not a block of the extra baseline rates
      out[bpp] = rows
  return out


def _cell(row, column, scale=1.0, digits=2):
  if row is None or row.get(column) is None:
    return "—"
  cell = f"{scale * row[column]:.{digits}f}"
  std = row.get("std", {}).get(column)
  return cell + (f" ± {scale * std:.{digits}f}" if std is not None else "")


def _table_head(rates, columns):
  head = "| method | " + " | ".join(f"{c} {bpp:g}" if c else f"{bpp:g} bpp"
                                    for bpp in rates for c in columns) + " |"
  return [head, "|---" * (len(rates) * len(columns) + 1) + "|"]


def feature_mse_lines(main):
  """The paper's Table 1: feature MSE of TDIC and APIC at each rate."""
  rates = list(main)
  return _table_head(rates, [""]) + [
      f"| {tables.METHOD_NAMES[method]} | " + " | ".join(
          _cell(main[bpp].get(method), "feature_mse", digits=4) for bpp in rates) + " |"
      for method in ("tdic", "apic")]


def accuracy_si_lines(main):
  """The paper's Tables 2 and 6: ACC (%) and SI (nats) of every method at each rate."""
  rates = list(main)
  lines = _table_head(rates, ["ACC (%)", "SI"])
  for method in ("original", "tdic", "apic", "saic", "kd", "jpeg", "webp", "avif"):
    present = [main[bpp][method] for bpp in rates if method in main[bpp]]
    if not present:
      continue
    cells = []
    for bpp in rates:
      row = main[bpp].get(method)
      cells += [_cell(row, "accuracy", 100), _cell(row, "si")]
    lines.append(f"| {tables.label(method, dict(present[0], seeds=None))} | " +
                 " | ".join(cells) + " |")
  return lines + over_budget_lines(main)


BASELINES = ("jpeg", "webp", "avif")


def _over_budget(row):
  """'(at X bpp real, N of M images over the rate)' for a baseline some of whose files could
  not fit its rate (its lowest quality is larger), else ''."""
  over = row.get("images_over_target") or 0
  return (f" (at {row['bpp']:.3f} bpp real, {over} of {row['num_images']} images over the rate)"
          if over else "")


def over_budget_lines(main):
  """A note under a table of the rates where JPEG/WebP/AVIF could not keep to the rate: their
  accuracy there is bought with more bits than the learned codecs had."""
  notes = [f"{tables.METHOD_NAMES[m]} at {bpp:g} bpp{_over_budget(rows[m])}"
           for bpp, rows in main.items() for m in BASELINES if m in rows and _over_budget(rows[m])]
  return ["", "Over budget (each file is the largest quality within the rate, or the lowest "
          "quality where none fits): " + "; ".join(notes) + "."] if notes else []


def paper_tables(blocks, chosen_tau, saic_layer="", layer=""):
  """tables.md: the paper's Table 1 (feature MSE of TDIC and APIC), Tables 2 and 6 (ACC and SI
  per rate and method), from the report's rows (mean ± std over seeds)."""
  main = _main_rows(blocks, chosen_tau, saic_layer, layer)
  return "\n".join(
      ["# The paper's tables, on Imagenette-96", "",
       "Written by bin/reproduce from the report's rows (saic_tf/experiments/reproduce.py); a row "
       "over seeds is their mean ± std.", "",
       "## Table 1: feature MSE (the downstream network's features of the original and the "
       "compressed image)", ""] + feature_mse_lines(main) +
      ["", "## Tables 2 and 6: ACC (%) and SI (nats)", ""] + accuracy_si_lines(main) + [""])


def comparison_markdown(blocks, chosen_tau, saic_layer="", layer=""):
  """comparison.md: this reproduction's accuracy beside the paper's (Table 2)."""
  main = _main_rows(blocks, chosen_tau, saic_layer, layer)
  lines = ["The paper's accuracies are ResNet18's on STL-10 (its Table 2, at 96×96); "
           "ours are on Imagenette at 96×96, the STL-10 stand-in, with a ResNet18 trained from "
           "scratch: compare the gaps between methods, not the levels.", "",
           "| bpp | method | paper ACC (%, STL-10) | ACC (%) | SI (nats) | PSNR (dB) | "
           "bpp of the files |", "|---" * 7 + "|"]
  for bpp, rows in main.items():
    paper = PAPER_ACCURACY["rates"].get(f"{bpp:g}", {})
    for method in ("original", "tdic", "apic", "saic", "kd"):
      row = rows.get(method)
      if row is None:
        continue
      paper_value = PAPER_ACCURACY["original"] if method == "original" else paper.get(method)
      lines.append("| " + " | ".join([
          f"{bpp:g}", tables.label(method, dict(row, seeds=None)),
          "—" if paper_value is None else f"{paper_value:.2f}",
          _cell(row, "accuracy", 100), _cell(row, "si"), _cell(row, "psnr"),
          "—" if row.get("coded_bpp") is None else f"{row['coded_bpp']:.3f}"]) + " |")
  return "\n".join(lines) + "\n"


def kodak_groups(done, rates, chosen_tau, saic_layer, default_layer):
  """{label: [[model_dir, ...] per rate]} of the evaluated main runs (Kodak's learned points):
  the TDIC bases, and APIC, SAIC (the chosen τ, at its variant's layer) and KD with their
  seeds."""
  groups = {"TDIC": [[base] for _, base in rates]}
  for method in ("apic", "saic", "kd"):
    layer = (saic_layer or default_layer) if method == "saic" else default_layer
    per_rate = []
    for _, base in rates:
      runs = [run.model_dir for run in done if run.loss == method and run.init_from == base and
              run.feature_layer == layer and run.tau in (None, chosen_tau)]
      if runs:
        per_rate.append(runs)
    if per_rate:
      groups[tables.METHOD_NAMES[method]] = per_rate
  return groups


def _points(value):
  return f"{100 * value:+.2f}"


def _comparison_sentence(name, c):
  low, high = c["ci95"]
  seeds = f"{c['seeds']} seed" + ("s" if c["seeds"] > 1 else "")
  return (f"{name} = {_points(c['difference'])} points (95 % CI [{_points(low)}, "
          f"{_points(high)}], McNemar p ≤ {c['mcnemar_p']:.3g}, {seeds})")


def _accuracy(row):
  """A row's accuracy in the summary: mean ± std over seeds."""
  std = row.get("std", {}).get("accuracy")
  return f"{100 * row['accuracy']:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def summary_lines(main, paired, per_bit, keep, paired_base=None):
  """(What holds, from results.json: at each rate APIC against its TDIC base and SAIC and KD
  against APIC, which differences are clear (95 % CI excluding 0), whether the goal
  (gsw_study.meets_goal; the template states it) is met where it was measured, and accuracy
  per bit; the image codecs' bits against the fine-tuned codecs', for PER_BIT_FILE)."""
  lines, met, clear = [], {}, {}
  for bpp, rows in main.items():
    original = rows.get("original")
    comparisons = {c["a"]: c for c in paired.get(bpp, [])}
    parts = []
    apic = rows.get("apic")
    for c in (paired_base or {}).get(bpp, []):
      if apic and c["a"] == apic["label"]:
        parts.append(_comparison_sentence("APIC − TDIC", c))
        clear.setdefault(("APIC", "TDIC"), []).append((bpp, c))
    for method in ("saic", "kd"):
      row = rows.get(method)
      c = comparisons.get(row["label"]) if row else None
      if c is None:
        continue
      # Against the APIC it pairs with: the control at SAIC's layer for a gsw@layer variant.
      name, control = tables.METHOD_NAMES[method], c["b"].split(" (")[0]
      parts.append(_comparison_sentence(f"{name} − {control}", c))
      clear.setdefault((name, control), []).append((bpp, c))
      if method == "saic":
        met[bpp] = gsw_study.meets_goal(c)
    kept = ", ".join(f"{tables.METHOD_NAMES[m]} {_accuracy(rows[m])} %"
                     + (_over_budget(rows[m]) if m in BASELINES else "")
                     for m in ("tdic", "apic", "saic", "kd") + BASELINES if m in rows)
    line = f"- **{bpp:g} bpp:** accuracy {kept}"
    if original:
      line += f" (original {100 * original['accuracy']:.2f} %)"
    lines.append(line + ("; " + "; ".join(parts) if parts else "") + ".")
  if clear:
    # Each pair's rates by the sign of its difference where the interval excludes 0.
    said = []
    for (a, b), found in clear.items():
      above = [f"{bpp:g}" for bpp, c in found if c["ci95"][0] > 0]
      below = [f"{bpp:g}" for bpp, c in found if c["ci95"][1] < 0]
      said += [f"{a} {sign} {b} at {_listed(rates)} bpp"
               for sign, rates in ((">", above), ("<", below)) if rates]
    lines.append("- **Of these differences, those whose 95 % CI excludes 0:** " +
                 ("; ".join(said) + "; every other one's CI contains 0." if said else "none."))
  if met:
    where = [f"{bpp:g} bpp" for bpp, ok in met.items() if ok]
    missing = [f"{bpp:g} bpp" for bpp in main if bpp not in met]
    verdict = ("met at every rate measured" if len(where) == len(met) else
               f"met at {', '.join(where)} only" if where else "not met at any rate measured")
    lines.append(f"- **The goal:** {verdict}" +
                 (f"; {', '.join(missing)} not measured yet." if missing else "."))
  # The main rows' methods (not the τ sweep's other τ, measured at one rate only), by their
  # label without the seed count, as accuracy per bit names its series.
  methods = {tables.label(method, {k: row.get(k) for k in report.SeriesKey._fields[1:]}):
             method for rows in main.values() for method, row in rows.items()}
  per_bit = [p for p in per_bit if p["method"] in methods]
  ratios = bits_against_codecs(per_bit, methods)
  if per_bit and len(paired) > 1:
    # One clause per fine-tuned codec: "JPEG needs more than 4.7× and WebP 1.2× the bits of
    # APIC".
    parts = []
    for learned in dict.fromkeys(r["learned"] for r in ratios):
      mine = [r for r in ratios if r["learned"] == learned]
      times = [f"{r['codec']}{' needs' if r is mine[0] else ''} "
               f"{'more than ' if r['more_than'] else ''}{r['times']:.1f}×" for r in mine]
      parts.append(f"{_listed(times)} the bits of {learned}")
    lines.append(f"- **Accuracy per bit** (the real bpp at which a method keeps "
                 f"{100 * keep:g} % of the original accuracy): " + ", ".join(
                     f"{p['method']} {report.PER_BIT_WORDS[p['bound']].format(p['bpp'])}"
                     for p in per_bit) + "." +
                 (" At that accuracy, " + "; ".join(parts) + "." if parts else ""))
  return lines, ratios


def _listed(items):
  """"a", "a and b", "a, b and c"."""
  return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def bits_against_codecs(per_bit, methods):
  """[{codec, learned, times, more_than}]: each image codec's real bpp at the kept accuracy
  over each fine-tuned codec's, where the fine-tuned codec's was interpolated and the image
  codec's was too or is a lower bound (never reached: `more_than`). `methods` maps labels to
  methods."""
  learned = [p for p in per_bit if methods[p["method"]] in ("saic", "apic", "kd")
             and p["bound"] is None]
  codecs = [p for p in per_bit if methods[p["method"]] in BASELINES and p["bound"] != "below"]
  return [dict(codec=c["method"], learned=p["method"], times=c["bpp"] / p["bpp"],
               more_than=c["bound"] == "above") for p in learned for c in codecs]


def _variant_choice(selection, variant, named=False):
  """How the SAIC rows' variant and τ were chosen, as the README says it; `named`: --variant
  named the variant."""
  scores = selection["validation_accuracy"][variant]
  taus = ", ".join(sorted(scores, key=float))
  chosen = selection["chosen_tau"][variant]
  tied = [tau for tau in sorted(scores, key=float)
          if float(tau) != chosen and scores[tau] == scores.get(f"{chosen:g}")]
  tie = (f", where τ = {' and '.join(tied)} scored the same (ties go to the smaller τ)"
         if tied else "")
  others, best = len(selection["chosen_tau"]) - 1, gsw_study.best_variant(selection)[0]
  if others and best == variant:
    return (f"of highest validation accuracy among {others + 1} variants, each at its τ of "
            f"{taus} chosen on the validation split{tie}")
  if others:
    return (f"τ chosen on the validation split among {taus}{tie} (the variant named by "
            f"`--variant`; the validation's best is `{best}`)")
  note = "the variant named by `--variant`, " if named else ""
  return f"{note}τ chosen on the validation split among {taus}{tie}"


def _kd_choice(selection):
  """What the KD rows train on, as the README says it (`selection`: read_selection's)."""
  scores = selection["kd_validation_accuracy"]
  if not scores:  # no weight scored: KL alone
    return "KL alone"
  weight = selection["chosen_kd_feature_weight"]
  loss = f"plus {weight:g} × APIC's feature loss" if weight else "alone"
  return (f"{loss}: the weight chosen on the validation split among "
          f"{', '.join(sorted(scores, key=float))} (0: KL alone)")


def readme(results_dir, variant, first_bpp, layer="", named=False):
  """(RESULTS/README.md from README_TEMPLATE, every number read from RESULTS/'s JSON files but
  the ratios of accuracy per bit, PER_BIT_FILE's record), or None until the classifier's run
  is evaluated; `first_bpp` is the first base's rate, whose first APIC run trained the
  classifier, `layer` the runs' --feature_layer, `named` whether --variant named the
  variant."""
  def load(name, kind):
    path = os.path.join(results_dir, name)
    return formats.read(kind, path, "run bin/reproduce again") if os.path.exists(path) else None

  results, selection = load("results.json", "results"), load(gsw_study.SELECTION_FILE, "selection")
  timings, kodak_record = load(layout.TIMINGS_FILE, "timings") or {}, load(KODAK_RESULTS, "kodak")
  blocks = {b["nominal_bpp"]: [(r["method"], r) for r in b["rows"]] for b in results["blocks"]}
  paired = {b["nominal_bpp"]: b["paired"] for b in results["blocks"]}
  paired_base = {b["nominal_bpp"]: b["paired_base"] for b in results["blocks"]}
  tau = selection["chosen_tau"][variant]
  main = _main_rows(blocks, tau, gsw_study.variant_layer(variant), layer)
  first = main.get(first_bpp, {})
  apic, original = first.get("apic"), first.get("original")
  if apic is None or original is None:
    return None
  run_config = _run_config(results_dir, apic)
  total = timings.get(formats.TOTAL, {})
  paired_lines = []
  for bpp in paired:
    comparisons = paired_base[bpp] + paired[bpp]
    if comparisons:
      paired_lines += [f"**{bpp:g} bpp**", ""] + statistics.markdown(
          [(c["a"], c["b"], c) for c in comparisons]) + [""]
  kodak_lines = ["Not measured (no Kodak folder given)."]
  if kodak_record:
    # Without the codecs' PSNR beside the learned points (formats.py): those points alone.
    beside = kodak_record["beside"]
    others = [name for name in next(iter(beside.values()))[0] if name != "bpp"]
    sources = "; ".join(f"{curve['short']}: `{curve['source']}`"
                        for curve in kodak_record.get("published", []))
    kodak_lines = [f"{kodak_record['images']} photos; real .saic files of every main-row run "
                   "(not the τ sweep's other τ), "
                   "JPEG/WebP/AVIF at fixed qualities and the published curves in "
                   "[kodak.json](kodak.json)" + (f" ({sources})" if sources else "") +
                   ". Beside each learned point, the PSNR (dB) each "
                   "codec and published curve reaches at the same real bpp (linear between "
                   "its points; — outside them).", "",
                   "| " + " | ".join(["method", "real bpp", "PSNR (dB)"] + others) + " |",
                   "|---" * (3 + len(others)) + "|"]
    for method, points in kodak_record["learned"].items():
      kodak_lines += ["| " + " | ".join(
          [method, f"{p['bpp']:.3f}", f"{p['psnr']:.2f}"
           + (f" ± {p['psnr_std']:.2f}" if p["runs"] > 1 else "")]
          + ["—" if there[name] is None else f"{there[name]:.2f}" for name in others]) + " |"
          for p, there in zip(points, beside[method])]
    kodak_lines += ["", f"![PSNR against real bpp on Kodak]({KODAK_FIGURE})"]
  per_bit = report.accuracy_per_bit_markdown(blocks, results["keep"]) if len(blocks) > 1 else []
  summary, ratios = summary_lines(main, paired, results["accuracy_per_bit"], results["keep"],
                                  paired_base)
  several = len(selection["chosen_tau"]) > 1
  values = dict(
      summary="\n".join(summary),
      data=run_config.get("data_dir") or run_config.get("dataset"),
      image_size=run_config.get("image_size"), holdout_every=run_config.get("holdout_every"),
      backbone=run_config.get("backbone"), finetune_steps=run_config.get("finetune_steps"),
      test_images=apic.get("num_images"),
      original_accuracy=f"{100 * original['accuracy']:.2f}",
      bases=", ".join(f"`{os.path.basename(_run_config(results_dir, rows['apic'])['init_from'])}`"
                      for rows in main.values() if "apic" in rows),
      variant=variant, tau=f"{tau:g}", variant_choice=_variant_choice(selection, variant, named),
      selection_counted=(
          "the selection of every GSW variant included" if several else
          "the validation runs that chose τ and KD's weight included" +
          (" (those that chose the variant `--variant` names are not)" if named else "")),
      kd_choice=_kd_choice(selection),
      seeds=", ".join(str(s) for s in (apic.get("seeds") or [apic.get("seed")])),
      cpu_hours=f"{total.get('cpu_hours', 0.0):.2f}",
      wall_hours=f"{total.get('wall_hours', 0.0):.2f}",
      runs=total.get("runs", 0),
      table2="\n".join(accuracy_si_lines(main)),
      paired="\n".join(paired_lines) or "No paired comparison yet.",
      per_bit="\n".join(per_bit) or "Needs more than one rate.",
      kodak="\n".join(kodak_lines))
  with open(README_TEMPLATE, encoding="utf-8") as f:
    return f.read().format_map(values), dict(keep=results["keep"], against_codecs=ratios)


def _run_config(results_dir, row):
  """The config.json kept in RESULTS/runs/ of a row's run (its first seed's)."""
  rate_dir, run_name = os.path.split(row["model_dir"])
  return formats.read("config", os.path.join(results_dir, "runs", os.path.basename(rate_dir),
                                            run_name, layout.CONFIG_FILE),
                      "run bin/reproduce --collect_only")


def collect(config, settings, rates, runs, chosen, command_line, flagfile, in_flagfile,
            study_first=""):
  """Writes RESULTS/ (module doc) from the plan's `runs` evaluated so far; returns its files."""
  results_dir = settings.results_dir
  variant = settings.study(config).variants[0]
  chosen_tau, saic_layer = chosen[variant], gsw_study.variant_layer(variant)
  done = [spec.config for spec in runs if spec.config and executor.is_evaluated(spec.run_dir)]
  extra = [spec.run_dir for spec in runs if not spec.config and executor.is_current(spec)]
  files = []
  # Kodak first: it writes each run's kodak.json, which RESULTS/runs/ keeps. Without the photos,
  # an earlier collect's Kodak files go, as the README says none was measured.
  kodak_files = [os.path.join(results_dir, name) for name in (KODAK_RESULTS, KODAK_FIGURE)]
  if done and settings.kodak_dir and os.path.isdir(settings.kodak_dir):
    record = kodak.measure(kodak_groups(done, rates, chosen_tau, saic_layer,
                                        config.feature_layer),
                           settings.kodak_dir, cache_dir=config.model_dir)
    files.append(write_json(kodak_files[0], record))
    files.append(kodak.figure(record, kodak_files[1]))
  else:
    for path in kodak_files:
      if os.path.exists(path):
        os.remove(path)
  # RESULTS/runs/ holds this plan's runs alone (none of an earlier plan's).
  shutil.rmtree(os.path.join(results_dir, "runs"), ignore_errors=True)
  for model_dir in [run.model_dir for run in done] + extra:
    for name in KEPT_FILES:
      source = os.path.join(model_dir, name)
      if os.path.exists(source):
        files.append(copy_file(source, os.path.join(
            results_dir, "runs", os.path.relpath(model_dir, config.model_dir), name)))
  source = os.path.join(config.model_dir, gsw_study.SELECTION_FILE)
  files.append(copy_file(source, os.path.join(results_dir, gsw_study.SELECTION_FILE)))
  study = settings.study(config)
  selection = gsw_study.read_selection(os.path.join(config.model_dir, gsw_study.SELECTION_FILE))
  # Every selection run (bin/gsw_study's too): the variant was chosen among them, so they count
  # in the time, and selection.md shows each variant's W'. This plan's times otherwise (the
  # root may hold bin/gsw_study's test runs of other variants too).
  timings = executor.timings_of(config.model_dir, [spec.run_dir for spec in runs] +
                                gsw_study.selection_dirs(config, study, rates, selection))
  if timings:
    files.append(write_json(os.path.join(results_dir, layout.TIMINGS_FILE), timings))
  files.append(gsw_study.write_selection_markdown(config, study, rates, selection, results_dir))
  files.append(write_bytes(os.path.join(results_dir, "COMMANDS.md"), commands_markdown(
      runs, results_dir, command_line, flagfile, in_flagfile, study_first).encode()))
  files.append(write_json(os.path.join(results_dir, "paper.json"), PAPER_ACCURACY))
  if not done:
    return files
  records = [read_json(layout.eval_path(d), "evaluate it again")
             for d in [run.model_dir for run in done] + extra]
  files += report.build_records(records, results_dir)
  blocks = report.gather(records)
  layer = config.feature_layer
  files.append(write_bytes(os.path.join(results_dir, "tables.md"),
                           paper_tables(blocks, chosen_tau, saic_layer, layer).encode()))
  files.append(write_bytes(os.path.join(results_dir, "comparison.md"),
                           comparison_markdown(blocks, chosen_tau, saic_layer, layer).encode()))
  written = readme(results_dir, variant, rates[0][0], layer, named=not study_first)
  if written is not None:
    text, per_bit = written
    files.append(write_json(os.path.join(results_dir, PER_BIT_FILE), per_bit))
    files.append(write_bytes(os.path.join(results_dir, "README.md"), text.encode()))
  return files


def run(config: TrainConfig, settings: ReproduceSettings, eval_settings: evaluate.EvalSettings,
        command_line, flagfile, in_flagfile: TrainConfig, collect_only=False):
  """Chooses τ on the validation split, trains and evaluates every run of the plan, and writes
  RESULTS/ after each; returns RESULTS/'s files. With `collect_only`, trains and evaluates
  nothing: only rewrites RESULTS/ from the runs evaluated so far. `flagfile` is the flagfile the
  runs share and `in_flagfile` what it sets (for COMMANDS.md)."""
  gsw_study.rates_of(settings.study(config))  # a bad --bases is the first thing said
  # Without --variant, bin/gsw_study's selection names it: COMMANDS.md says to run that first.
  study_first = "" if settings.variant else f"bin/gsw_study --model_dir={config.model_dir}"
  settings = with_variant(config, settings)
  study = settings.study(config)
  rates, select_rate = gsw_study.check(config, study, variants_flag="--variant")
  check_baseline_rates(rates, settings.baseline_rates)
  [variant] = study.variants
  if settings.kodak_dir and os.path.isdir(settings.kodak_dir):
    model_zoo.kodak_photos(settings.kodak_dir)  # a folder without photos: one line, now
  path = os.path.join(config.model_dir, gsw_study.SELECTION_FILE)
  if collect_only:
    record = gsw_study.read_selection(path) if os.path.exists(path) else {}
    if variant not in record.get("chosen_tau", {}):
      raise UserError(f"--collect_only: no τ chosen yet for {variant} in {path}: run "
                      "bin/reproduce without it first")
  else:
    record = gsw_study.select(config, study, rates, select_rate, eval_settings)
  chosen, kd_weight = gsw_study.chosen_of(record)
  runs = plan(config, settings, eval_settings, chosen, kd_weight)
  collect_results = lambda: collect(config, settings, rates, runs, chosen, command_line,
                                    flagfile, in_flagfile, study_first)
  return collect_results() if collect_only else executor.execute(
      runs, config.model_dir, collect_results, "reproduce: run")[0]
