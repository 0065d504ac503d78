"""One executor for studies: a study is a plan, a list of RunSpec (what each run trains,
evaluates and starts from, as plain data) that bin/sweep_tau (sweep.py), bin/gsw_study
(gsw_study.py) and bin/reproduce (reproduce.py) build and `execute` runs. For each spec in
order it trains the run, resumes it or passes over a finished one, evaluates it unless its
evaluation is current, and adds the time spent to ROOT/timings.json. It rewrites the study's
results after each run that trained or evaluated, and at the end: the same command continues
an interrupted study.
"""
import dataclasses
import os
import time
from typing import Optional

from absl import logging

from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_json
from saic_tf.common.run import Run
from saic_tf.evaluation import evaluate
from saic_tf.training import trainer

PARTS = ("train_seconds", "evaluate_seconds", "train_cpu_seconds", "evaluate_cpu_seconds")


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of a plan. `config`: bin/train's settings, whose model_dir is the run's directory
  (None: nothing is trained, and `evaluated` names the run whose classifier is evaluated, as for
  JPEG/WebP/AVIF alone). `evaluation`: what is evaluated (split, baselines, out_dir where
  eval.json goes, default the run's directory; None: nothing). `every_worker`: under
  multi_worker every worker evaluates it, not the chief alone (each reads its selection scores
  back to know the runs after them)."""
  config: Optional[TrainConfig] = None
  evaluation: Optional[evaluate.EvalSettings] = None
  evaluated: str = ""
  every_worker: bool = False

  @property
  def run_dir(self):
    """The run's directory under the study's root: its entry in timings.json."""
    return self.config.model_dir if self.config else self.evaluation.out_dir

  @property
  def needs(self):
    """The runs it starts from, which must run before it: its --init_from and --downstream_from
    (a shipped codec's name among them is no run of the plan), or the run it evaluates."""
    return {self.config.init_from, self.config.downstream_from} - {""} if self.config else (
        {self.evaluated} - {""})


def check_taus(taus, flag="--taus"):
  if not taus or any(t <= 0 for t in taus):
    raise UserError(f"{flag}={','.join(f'{t:g}' for t in taus)}: give one or more values > 0")


def check_seeds(seeds):
  if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
    raise UserError(f"--seeds={','.join(str(s) for s in seeds)}: give one or more distinct "
                    "seeds >= 0")
  return list(seeds)


def is_evaluated(model_dir, out_dir=None, settings=None):
  """True when eval.json (in `out_dir`, default the run's directory) exists and was made from
  the run's current codec checkpoints (and, given `settings`, with those evaluation settings)."""
  path = layout.eval_path(out_dir or model_dir)
  if not os.path.exists(path):
    return False
  record = read_json(path, "delete it to evaluate again")
  if settings is not None and record.get("evaluation") != evaluate.settings_record(settings):
    return False
  current = Run.at(model_dir).stages
  return ({k: os.path.basename(v) for k, v in record.get("stages", {}).items()} ==
          {k: os.path.basename(v) for k, v in current})


def is_current(spec: RunSpec):
  """Whether a spec's evaluation stands. Its own run's: is_evaluated with its settings. Another
  run's classifier (JPEG/WebP/AVIF alone): that run's own evaluation saw the same images, and
  the classifier gave the same answers there (Original's per-image correctness, SI)."""
  settings = spec.evaluation
  if spec.config:
    return is_evaluated(spec.run_dir, settings.out_dir, settings)
  path, own = layout.eval_path(settings.out_dir), layout.eval_path(spec.evaluated)
  if not (os.path.exists(path) and os.path.exists(own)):
    return False
  alone, run = read_json(path, "delete it"), read_json(own, "evaluate it again")
  return (alone.get("images_digest") == run.get("images_digest") and
          alone["correct"].get("original") == run["correct"].get("original") and
          alone["si"] == run["si"])


def evaluate_run(spec: RunSpec, chief):
  """Evaluates a spec unless there is nothing to evaluate or it is current; returns whether it
  did. Under --strategy=multi_worker the chief alone evaluates (the others would read files the
  chief is still writing), but for a spec of `every_worker`."""
  if spec.evaluation is None:
    return False
  if not (chief or spec.every_worker):
    logging.info("%s: evaluation is left to the chief worker", spec.run_dir)
  elif is_current(spec):
    logging.info("%s: already evaluated, skipping", spec.run_dir)
  else:
    evaluate.evaluate(spec.evaluated or spec.run_dir, spec.evaluation)
    return True
  return False


def execute(plan, root=None, collect=None, command="study: run"):
  """Runs each RunSpec of `plan` in order (module doc). The chief then adds the run's wall-clock
  and CPU seconds (every thread of this process) to ROOT/timings.json, and calls `collect`,
  which writes the results and returns their files, after each run trained or evaluated and at
  the end; without `root` (bin/sweep_tau), neither. A spec that trains nothing is passed over
  when its evaluation is current, and on other workers. Returns (the last collect's files,
  whether this process is the chief)."""
  files, chief, pending = [], True, False
  for index, spec in enumerate(plan):
    later = spec.needs & {s.run_dir for s in plan[index:]}
    if later:
      raise ValueError(f"{spec.run_dir} starts from {', '.join(sorted(later))}, not run before it")
    if not spec.config and (not chief or is_current(spec)):
      continue
    logging.info("%s %d/%d: %s", command, index + 1, len(plan), spec.run_dir)
    start, start_cpu = time.time(), time.process_time()
    changed = False
    if spec.config:  # a finished run is passed over at once, without loading its data
      summary = trainer.train(spec.config, skip_complete=True)
      chief, changed = summary["chief"], summary["test_metrics"] is not None
    trained, trained_cpu = time.time(), time.process_time()
    changed = evaluate_run(spec, chief) or changed
    end, end_cpu = time.time(), time.process_time()
    if chief and root:
      record_time(root, spec.run_dir, dict(zip(PARTS, (
          trained - start, end - trained, trained_cpu - start_cpu, end_cpu - trained_cpu))))
      # A run passed over changes only the seconds in timings.json: the results are written
      # again at the end, not after each of a resumed study's finished runs (each collect
      # reads every run's results again).
      pending = True
      if collect and changed:
        files, pending = collect(), False
  if collect and pending:
    files = collect()
  return files, chief


def _with_total(record):
  """The record with its TOTAL: every part summed, in hours too, and the number of runs (what
  the experiments' summaries state, so that each of their figures is one of this file's)."""
  runs = {k: e for k, e in record.items() if k != formats.TOTAL}
  total = {part: round(sum(e.get(part, 0.0) for e in runs.values()), 1) for part in PARTS}
  hours = lambda *parts: round(sum(total[part] for part in parts) / 3600, 2)
  total.update(cpu_hours=hours("train_cpu_seconds", "evaluate_cpu_seconds"),
               train_cpu_hours=hours("train_cpu_seconds"),
               evaluate_cpu_hours=hours("evaluate_cpu_seconds"),
               wall_hours=hours("train_seconds", "evaluate_seconds"), runs=len(runs))
  return dict(runs, **{formats.TOTAL: total})


def timings_of(root, model_dirs):
  """ROOT/timings.json's entries of `model_dirs` alone, with their total; None without any."""
  path = os.path.join(root, layout.TIMINGS_FILE)
  if not os.path.exists(path):
    return None
  record = formats.read("timings", path, "delete it")
  names = {os.path.relpath(d, root) for d in model_dirs}
  kept = {k: v for k, v in record.items() if k in names}
  return _with_total(kept) if kept else None


def record_time(root, run_dir, spent):
  """Adds to ROOT/timings.json[run] the seconds `spent` ({part: seconds} of PARTS) on a run,
  over every invocation of the experiment (a resumed run adds the rest), and their total."""
  path = os.path.join(root, layout.TIMINGS_FILE)
  record = formats.read("timings", path, "delete it") if os.path.exists(path) else {}
  record.pop(formats.TOTAL, None)
  entry = record.setdefault(os.path.relpath(run_dir, root), {})
  for part in PARTS:
    entry[part] = round(entry.get(part, 0.0) + spent[part], 1)
  write_json(path, _with_total(record))
