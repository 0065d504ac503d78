"""The τ sweep of paper Fig. 4: SAIC fine-tunes at several τ from one shared base, evaluated and
reported together.

  ROOT/apic/           downstream network, TDIC, and APIC (uniform weights): the shared base
  ROOT/saic_tau_<τ>/   one SAIC fine-tune per τ, --init_from=ROOT/apic
  ROOT/report/         bin/report over all of them

Every part skips what is already done, so the same command continues an interrupted sweep.
"""
import dataclasses
import os

from absl import logging

from saic_tf import evaluate
from saic_tf import report
from saic_tf import trainer
from saic_tf.config import TrainConfig
from saic_tf.errors import UserError


def run(config: TrainConfig, taus, settings: evaluate.EvalSettings):
  """Trains and evaluates the base and one SAIC run per τ; returns the report's files."""
  if not taus or any(t <= 0 for t in taus):
    raise UserError(f"--taus={','.join(map(str, taus))}: give one or more values > 0")
  root = config.model_dir
  base = os.path.join(root, "apic")
  runs = [(dataclasses.replace(config, model_dir=base, loss="apic", tau=None, r=None,
                               init_from=""), settings)]
  no_baselines = dataclasses.replace(settings, baselines=())  # the base run has them
  for tau in taus:
    runs.append((dataclasses.replace(config, model_dir=os.path.join(root, f"saic_tau_{tau:g}"),
                                     loss="saic", tau=float(tau), init_from=base),
                 no_baselines))
  for run_config, run_settings in runs:
    trainer.train(run_config)
    if os.path.exists(os.path.join(run_config.model_dir, evaluate.EVAL_FILE)):
      logging.info("sweep: %s already evaluated, skipping", run_config.model_dir)
    else:
      evaluate.evaluate(run_config.model_dir, run_settings)
  return report.build([c.model_dir for c, _ in runs], os.path.join(root, "report"))
