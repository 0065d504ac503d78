"""The real-data reproduction (paper Table 2 and Fig. 4, on 2 CPU cores): bin/reproduce.

  ROOT/bpp_<r>/apic/            downstream classifier (first rate only), TDIC, APIC at rate r
  ROOT/bpp_<r>/saic_tau_<τ>/    SAIC at the paper's τ for r, from that run's TDIC (--init_from)
  ROOT/bpp_<s>/saic_tau_<τ>/    the τ sweep at rate s (paper Fig. 4), last
  RESULTS/                      bin/report's tables and figures, each run's small JSON/Markdown
                                artifacts (runs/...), COMMANDS.md, timings.json

The classifier is trained once, by the first rate's APIC run; the other rates use it
(--downstream_from), so every row of every rate is judged by one network. Runs go in order of
importance (each rate's APIC and paper-τ SAIC, then the extra sweep τ), each trained, resumed
or skipped, then evaluated unless its eval.json matches its checkpoints (sweep.py); the results
are collected after every run, so an interrupted reproduction still leaves a consistent, partial
RESULTS/ and the same command continues it.
"""
import dataclasses
import os
import shlex

from absl import logging

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import copy_file, read_json, write_bytes, write_json
from saic_tf.evaluation import evaluate
from saic_tf.evaluation import report
from saic_tf.evaluation import tables
from saic_tf.experiments import sweep

# The paper's τ for STL-10 / ResNet18 at each rate (its Table 2).
PAPER_TAUS = ((0.125, 400.0), (0.25, 3100.0), (0.5, 2900.0))
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
              layout.downstream_info_path(""))


def parse_rates(items):
  """["0.125:400", ...] -> ((0.125, 400.0), ...), or a UserError naming --rates."""
  rates = []
  for item in items:
    try:
      bpp, tau = (float(v) for v in item.split(":"))
    except ValueError:
      raise UserError(f"--rates={','.join(items)}: {item!r} is not BPP:TAU "
                      "(e.g. 0.125:400)") from None
    if bpp <= 0 or tau <= 0:
      raise UserError(f"--rates: {item!r}: bpp and τ must be > 0")
    rates.append((bpp, tau))
  if not rates or len({bpp for bpp, _ in rates}) != len(rates):
    raise UserError(f"--rates={','.join(items)}: give each rate once")
  return tuple(rates)


def plan(config: TrainConfig, rates, sweep_rate, sweep_taus, settings: evaluate.EvalSettings,
         seeds=None):
  """[(config, eval settings)] of every run, in the order they run (module doc)."""
  if sweep_taus and sweep_rate not in [bpp for bpp, _ in rates]:
    raise UserError(f"--sweep_rate={sweep_rate:g}: not one of --rates "
                    f"({', '.join(f'{bpp:g}' for bpp, _ in rates)})")
  sweep.check_taus(list(sweep_taus) or [1.0], flag="--sweep_taus")
  seeds = sweep.check_seeds(seeds or [config.seed])
  runs, repeats, sweep_runs, classifier_run = [], [], [], ""
  for bpp, tau in rates:
    rate = dataclasses.replace(config, bpp=bpp, downstream_from=classifier_run,
                               model_dir=os.path.join(config.model_dir, f"bpp_{bpp:g}"))
    base, paper_saic, *rate_repeats = sweep.plan(rate, [tau], settings, seeds)
    runs += [base, paper_saic]
    repeats += rate_repeats
    classifier_run = classifier_run or base[0].model_dir
    if bpp == sweep_rate:
      sweep_runs = [sweep.saic_run(rate, base[0].model_dir, t, settings, seed, seeds[0])
                    for seed in seeds for t in sweep_taus if t != tau]
  return runs + repeats + sweep_runs


def train_command(run_config: TrainConfig, flagfile, in_flagfile: TrainConfig):
  """The bin/train command that trains `run_config`: the flagfile (whose settings are
  `in_flagfile`), then every setting in which the run differs from it."""
  args = [f"--flagfile={flagfile}"]
  for field in dataclasses.fields(TrainConfig):
    value = getattr(run_config, field.name)
    if field.name == "model_dir" or value == getattr(in_flagfile, field.name):
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
  return "bin/evaluate " + " ".join(shlex.quote(a) for a in args)


def commands_markdown(runs, results_dir, command_line, flagfile, in_flagfile: TrainConfig):
  """RESULTS/COMMANDS.md: the command that made RESULTS/, and what it runs, step by step;
  `in_flagfile` is what the flagfile sets (with bin/train's defaults for the rest)."""
  lines = ["# Commands behind these results", "",
           "Made by (from the repository root; the same command resumes an interrupted run):",
           "", "```sh", command_line, "```", "",
           "which runs, in this order, the equivalent of:", "", "```sh"]
  for run_config, settings in runs:
    pending = "" if _evaluated(run_config.model_dir) else "# not evaluated yet: "
    lines += [pending + train_command(run_config, flagfile, in_flagfile),
              pending + evaluate_command(run_config.model_dir, settings)]
  lines.append("bin/report " + " ".join(
      [f"--out={results_dir}"] + [c.model_dir for c, _ in runs if _evaluated(c.model_dir)]))
  lines += ["```", "", f"`{flagfile}` holds the settings every run shares.", ""]
  return "\n".join(lines)


def comparison_markdown(runs, rates):
  """RESULTS/comparison.md: this reproduction's rows beside the paper's accuracy (Table 2),
  at each rate with the paper's τ; every number comes from eval.json or PAPER_ACCURACY."""
  lines = ["| bpp | method | paper ACC (%) | ACC (%) | F1 (%) | SI (nats) | PSNR (dB) | "
           "SSIM | bpp of the files |", "|---" * 9 + "|"]
  taus = dict(rates)
  for bpp, _ in rates:
    paper = PAPER_ACCURACY["rates"].get(f"{bpp:g}", {})
    records = {c.loss: read_json(layout.eval_path(c.model_dir), "")
               for c, _ in runs if c.bpp == bpp and _evaluated(c.model_dir)
               and c.tau in (None, taus[bpp])}
    if "apic" not in records:
      continue
    rows = dict(records["apic"]["rows"], saic=records.get("saic", {}).get("rows", {}).get("saic"))
    for method in ("original", "tdic", "apic", "saic"):
      row = rows.get(method)
      if row is None:
        continue
      paper_value = PAPER_ACCURACY["original"] if method == "original" else paper.get(method)
      label = tables.METHOD_NAMES[method] + (f" (τ={taus[bpp]:g})" if method == "saic" else "")
      cells = [f"{bpp:g}", label, "—" if paper_value is None else f"{paper_value:.2f}",
               f"{100 * row['accuracy']:.2f}", f"{100 * row['f1']:.2f}", f"{row['si']:.2f}",
               "—" if row["psnr"] is None else f"{row['psnr']:.2f}",
               "—" if row["ssim"] is None else f"{row['ssim']:.4f}",
               "—" if row["coded_bpp"] is None else f"{row['coded_bpp']:.3f}"]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _evaluated(model_dir):
  return os.path.exists(layout.eval_path(model_dir))


def collect(runs, rates, results_dir, command_line, flagfile, in_flagfile: TrainConfig):
  """Writes RESULTS/: the report of the evaluated runs, their small artifacts, COMMANDS.md,
  the paper's numbers (paper.json) and the side-by-side table (comparison.md)."""
  root = os.path.commonpath([c.model_dir for c, _ in runs])
  done = [c.model_dir for c, _ in runs if _evaluated(c.model_dir)]
  for model_dir in done:
    for name in KEPT_FILES:
      source = os.path.join(model_dir, name)
      if os.path.exists(source):
        target = os.path.join(results_dir, "runs", os.path.relpath(model_dir, root), name)
        copy_file(source, target)
  timings = os.path.join(root, layout.TIMINGS_FILE)
  if os.path.exists(timings):
    copy_file(timings, os.path.join(results_dir, layout.TIMINGS_FILE))
  write_bytes(os.path.join(results_dir, "COMMANDS.md"),
              commands_markdown(runs, results_dir, command_line, flagfile,
                                in_flagfile).encode())
  write_json(os.path.join(results_dir, "paper.json"), PAPER_ACCURACY)
  first_seed = [(c, s) for c, s in runs if c.seed == runs[0][0].seed]
  write_bytes(os.path.join(results_dir, "comparison.md"),
              comparison_markdown(first_seed, rates).encode())
  return report.build(done, results_dir) if done else []


def run(config: TrainConfig, rates, sweep_rate, sweep_taus, settings: evaluate.EvalSettings,
        results_dir, command_line, flagfile, in_flagfile: TrainConfig, collect_only=False,
        seeds=None):
  """Trains, evaluates and collects every run of the plan; returns the report's files. With
  `collect_only`, only writes RESULTS/ from the runs evaluated so far. `flagfile` is the
  flagfile the runs share and `in_flagfile` what it sets (for COMMANDS.md)."""
  runs = plan(config, rates, sweep_rate, sweep_taus, settings, seeds)
  if collect_only:
    return collect(runs, rates, results_dir, command_line, flagfile, in_flagfile)
  logging.info("reproduce: %d runs under %s, results to %s", len(runs), config.model_dir,
               results_dir)
  files = []
  for index, single in enumerate(runs, 1):
    run_config = single[0]
    logging.info("reproduce: run %d/%d: %s", index, len(runs), run_config.model_dir)
    [spent] = sweep.train_and_evaluate([single])
    if spent.chief:  # multi_worker: the chief alone writes timings and results
      sweep.record_time(config.model_dir, spent)
      files = collect(runs, rates, results_dir, command_line, flagfile, in_flagfile)
  return files
