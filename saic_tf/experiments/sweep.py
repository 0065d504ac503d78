"""The τ sweep of paper Fig. 4: SAIC fine-tunes at several τ from one shared base, evaluated and
reported together.

  ROOT/apic/           downstream network, TDIC, and APIC (uniform weights): the shared base
  ROOT/saic_tau_<τ>/   one SAIC fine-tune per τ, --init_from=ROOT/apic
  ROOT/report/         bin/report over all of them

With several --seeds, the first seed's runs are the ones above, and every fine-tune is repeated
for each other seed s from the same base (the same classifier and TDIC stage, so the seed
changes only the fine-tune): ROOT/apic_seed<s>/ and ROOT/saic_tau_<τ>_seed<s>/, after the
first seed's runs. bin/report gives their mean ± std.

Every part skips what is already done, so the same command continues an interrupted sweep.
"""
import dataclasses
import os
import time

from absl import logging

from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_json
from saic_tf.evaluation import evaluate
from saic_tf.evaluation import report
from saic_tf.training import trainer


TOTAL = formats.TOTAL  # timings.json's entry that sums every run's


def check_taus(taus, flag="--taus"):
  if not taus or any(t <= 0 for t in taus):
    raise UserError(f"{flag}={','.join(f'{t:g}' for t in taus)}: give one or more values > 0")


def check_seeds(seeds):
  if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
    raise UserError(f"--seeds={','.join(str(s) for s in seeds)}: give one or more distinct "
                    "seeds >= 0")
  return list(seeds)


def fine_tune(config: TrainConfig, base_dir, loss, tau, settings: evaluate.EvalSettings,
              seed=None, first_seed=None):
  """A fine-tune (`loss`, at `tau` for SAIC) from the base run in `base_dir` (its downstream
  network and TDIC stage), as a (config, eval settings) pair, named by what it is and, for a seed
  other than the first, by its seed; JPEG/WebP/AVIF are left to the base run."""
  seed = config.seed if seed is None else seed
  name = f"saic_tau_{tau:g}" if loss == "saic" else loss
  if first_seed is not None and seed != first_seed:
    name += f"_seed{seed}"
  return (dataclasses.replace(
      config, model_dir=os.path.join(os.path.dirname(base_dir), name), loss=loss,
      tau=float(tau) if loss == "saic" else None, r=config.r if loss == "saic" else None,
      init_from=base_dir, downstream_from="", seed=seed),
          dataclasses.replace(settings, baselines=()))


def saic_run(config: TrainConfig, base_dir, tau, settings: evaluate.EvalSettings, seed=None,
             first_seed=None):
  """The SAIC fine-tune at `tau` from the base run in `base_dir` (fine_tune)."""
  return fine_tune(config, base_dir, "saic", tau, settings, seed, first_seed)


def plan(config: TrainConfig, taus, settings: evaluate.EvalSettings, seeds=None):
  """[(config, eval settings)]: the base ROOT/apic, one SAIC run per τ, then the repeats of
  every fine-tune for each further seed (module doc)."""
  check_taus(taus)
  seeds = check_seeds(seeds or [config.seed])
  base = dataclasses.replace(config, model_dir=os.path.join(config.model_dir, "apic"),
                             loss="apic", tau=None, r=None, init_from="", seed=seeds[0])
  runs = [(base, settings)]
  for seed in seeds:
    if seed != seeds[0]:
      runs.append(fine_tune(config, base.model_dir, "apic", None, settings, seed, seeds[0]))
    runs += [saic_run(config, base.model_dir, tau, settings, seed, seeds[0]) for tau in taus]
  return runs


def is_evaluated(model_dir, out_dir=None, settings=None):
  """True when eval.json (in `out_dir`, default the run's directory) exists and was made from
  the run's current codec checkpoints (and, given `settings`, with those evaluation settings)."""
  path = layout.eval_path(out_dir or model_dir)
  if not os.path.exists(path):
    return False
  record = read_json(path, "delete it to evaluate again")
  if settings is not None and record.get("evaluation") != evaluate.settings_record(settings):
    return False
  current = layout.codec_stages(TrainConfig.read(model_dir), model_dir)
  return ({k: os.path.basename(v) for k, v in record.get("stages", {}).items()} ==
          {k: os.path.basename(v) for k, v in current})


@dataclasses.dataclass
class Spent:
  """What train_and_evaluate spent on a run: wall-clock and this process's CPU seconds
  (every thread), and whether this process writes the run's files (the chief)."""
  model_dir: str
  train_seconds: float
  evaluate_seconds: float
  train_cpu_seconds: float
  evaluate_cpu_seconds: float
  chief: bool


def timed(model_dir, train, evaluate_run):
  """Runs train() (which returns whether this process is the chief), then evaluate_run(chief);
  returns the Spent."""
  start, start_cpu = time.time(), time.process_time()
  chief = train()
  trained, trained_cpu = time.time(), time.process_time()
  evaluate_run(chief)
  return Spent(model_dir, trained - start, time.time() - trained, trained_cpu - start_cpu,
               time.process_time() - trained_cpu, chief)


def train_run(run_config):
  """Trains or resumes a run of an experiment (a finished one is passed over at once); returns
  whether this process is the chief."""
  return trainer.train(run_config, skip_complete=True)["chief"]


def train_and_evaluate(runs):
  """Trains (or resumes, or skips) and evaluates each (config, settings) in order; returns a
  Spent for each. Under --strategy=multi_worker only the chief evaluates (the others would read
  files the chief is still writing)."""
  def evaluate_run(run_config, run_settings, chief):
    if not chief:
      logging.info("%s: evaluation is left to the chief worker", run_config.model_dir)
    elif is_evaluated(run_config.model_dir, settings=run_settings):
      logging.info("%s: already evaluated, skipping", run_config.model_dir)
    else:
      evaluate.evaluate(run_config.model_dir, run_settings)

  return [timed(run_config.model_dir, lambda c=run_config: train_run(c),
                lambda chief, c=run_config, s=run_settings: evaluate_run(c, s, chief))
          for run_config, run_settings in runs]


PARTS = ("train_seconds", "evaluate_seconds", "train_cpu_seconds", "evaluate_cpu_seconds")


def _with_total(record):
  """The record with its TOTAL: every part summed, in hours too, and the number of runs (what
  the experiments' summaries state, so that each of their figures is one of this file's)."""
  runs = {k: e for k, e in record.items() if k != TOTAL}
  total = {part: round(sum(e.get(part, 0.0) for e in runs.values()), 1) for part in PARTS}
  hours = lambda *parts: round(sum(total[part] for part in parts) / 3600, 2)
  total.update(cpu_hours=hours("train_cpu_seconds", "evaluate_cpu_seconds"),
               train_cpu_hours=hours("train_cpu_seconds"),
               evaluate_cpu_hours=hours("evaluate_cpu_seconds"),
               wall_hours=hours("train_seconds", "evaluate_seconds"), runs=len(runs))
  return dict(runs, **{TOTAL: total})


def timings_of(root, model_dirs):
  """ROOT/timings.json's entries of `model_dirs` alone, with their total; None without any."""
  path = os.path.join(root, layout.TIMINGS_FILE)
  if not os.path.exists(path):
    return None
  record = formats.read("timings", path, "delete it")
  names = {os.path.relpath(d, root) for d in model_dirs}
  kept = {k: v for k, v in record.items() if k in names}
  return _with_total(kept) if kept else None


def record_time(root, spent: Spent):
  """Adds to ROOT/timings.json[run] the wall-clock and CPU seconds spent on a run, over every
  invocation of the experiment (a resumed run adds the rest), and their total."""
  path = os.path.join(root, layout.TIMINGS_FILE)
  record = formats.read("timings", path, "delete it") if os.path.exists(path) else {}
  record.pop(TOTAL, None)
  entry = record.setdefault(os.path.relpath(spent.model_dir, root), {})
  for part in PARTS:
    entry[part] = round(entry.get(part, 0.0) + getattr(spent, part), 1)
  record = _with_total(record)
  write_json(path, record)


def run(config: TrainConfig, taus, settings: evaluate.EvalSettings, seeds=None):
  """Trains and evaluates the base and one SAIC run per τ (and seed); returns the report's
  files."""
  runs = plan(config, taus, settings, seeds)
  if not all(spent.chief for spent in train_and_evaluate(runs)):
    return []  # multi_worker: the chief writes the report
  return report.build([c.model_dir for c, _ in runs],
                      os.path.join(config.model_dir, layout.REPORT_DIR))
