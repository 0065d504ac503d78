"""The τ sweep of paper Fig. 4: SAIC fine-tunes at several τ from one shared base, evaluated and
reported together.

  ROOT/apic/           downstream network, TDIC, and APIC (uniform weights): the shared base
  ROOT/saic_tau_<τ>/   one SAIC fine-tune per τ, --init_from=ROOT/apic
  ROOT/report/         bin/report over all of them

With several --seeds, the first seed's runs are the ones above, and every fine-tune is repeated
for each other seed s from the same base (the same classifier and TDIC stage, so the seed
changes only the fine-tune): ROOT/apic_seed<s>/ and ROOT/saic_tau_<τ>_seed<s>/, after the
first seed's runs. bin/report gives their mean ± std.

A plan run by executor.execute: every part skips what is already done, so the same command
continues an interrupted sweep.
"""
import dataclasses
import os

from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.evaluation import evaluate
from saic_tf.evaluation import report
from saic_tf.experiments import executor


def fine_tune(config: TrainConfig, base_dir, loss, tau, settings: evaluate.EvalSettings, seed,
              first_seed):
  """A fine-tune (`loss`, at `tau` for SAIC) from the base run in `base_dir` (its downstream
  network and TDIC stage), as a RunSpec, named by what it is and, for a seed other than the
  first, by its seed; JPEG/WebP/AVIF are left to the base run."""
  name = f"saic_tau_{tau:g}" if loss == "saic" else loss
  if seed != first_seed:
    name += f"_seed{seed}"
  return executor.RunSpec(dataclasses.replace(
      config, model_dir=os.path.join(os.path.dirname(base_dir), name), loss=loss,
      tau=float(tau) if loss == "saic" else None, r=config.r if loss == "saic" else None,
      init_from=base_dir, downstream_from="", seed=seed),
                          dataclasses.replace(settings, baselines=()))


def plan(config: TrainConfig, taus, settings: evaluate.EvalSettings, seeds=None):
  """[RunSpec]: the base ROOT/apic, one SAIC run per τ, then the repeats of every fine-tune for
  each further seed (module doc)."""
  executor.check_taus(taus)
  seeds = executor.check_seeds(seeds or [config.seed])
  base = dataclasses.replace(config, model_dir=os.path.join(config.model_dir, "apic"),
                             loss="apic", tau=None, r=None, init_from="", seed=seeds[0])
  runs = [executor.RunSpec(base, settings)]
  for seed in seeds:
    if seed != seeds[0]:
      runs.append(fine_tune(config, base.model_dir, "apic", None, settings, seed, seeds[0]))
    runs += [fine_tune(config, base.model_dir, "saic", tau, settings, seed, seeds[0])
             for tau in taus]
  return runs


def run(config: TrainConfig, taus, settings: evaluate.EvalSettings, seeds=None):
  """Trains and evaluates the base and one SAIC run per τ (and seed); returns the report's
  files. No timings.json: the sweep has none (executor.execute without a root)."""
  runs = plan(config, taus, settings, seeds)
  if not executor.execute(runs, command="sweep_tau: run")[1]:
    return []  # multi_worker: the chief writes the report
  return report.build([spec.run_dir for spec in runs],
                      os.path.join(config.model_dir, layout.REPORT_DIR))
