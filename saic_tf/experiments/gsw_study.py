"""The GSW study: does any semantic weighting make SAIC beat APIC, with τ chosen honestly?
bin/gsw_study.

Every run fine-tunes a shipped TDIC codec (--bases, one per rate) for one classifier, which the
first run trains on the training split less its validation split (--holdout_every, every N-th
training image; never the test split):

  ROOT/bpp_<r>/apic/                        APIC (the first rate's also trains the classifier)
  ROOT/bpp_<r>/apic-<layer>/                APIC at the --feature_layer of a gsw@layer variant,
                                            its control
  ROOT/bpp_<r>/kd/                          the KD reference (--loss=kd), KL alone
  ROOT/bpp_<r>/kd_feature_weight_<w>/       KD plus w times APIC's feature loss
  ROOT/bpp_<r>/saic_<variant>_tau_<τ>/      SAIC with GSW variant <variant> at τ; a variant
                                            written gsw@layer (saic_<gsw>-<layer>_tau_<τ>)
                                            splits the classifier at that --feature_layer
  …_seed<s>                                 the same for every --seeds after the first

Phase 1, selection (at --select_rate, first seed): SAIC for every variant and every τ of
--select_taus, evaluated on the validation split (into <run>/validation/); each variant keeps the
τ of highest validation accuracy (ties: the smaller τ); likewise KD at every --kd_feature_weight
of --select_kd_weights (ties: the smaller weight). ROOT/selection.json records both.
Phase 2, test: at every rate, APIC, KD at its weight and each variant at its τ, for every seed,
evaluated on the test split. RESULTS/ gets bin/report's tables (mean ± std over seeds, each SAIC
variant and KD against APIC with the paired bootstrap CI and McNemar's p), selection.md and
summary.md.

Both phases are plans run by executor.execute: every run is trained, resumed or skipped, and
evaluated unless its evaluation matches its checkpoints, so the same command continues an
interrupted study; RESULTS/ is rewritten after every run of phase 2 that trained or
evaluated, and at its end.
"""
import dataclasses
import os

import numpy as np

from saic_tf.codec import zoo
from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.config import GSW_VARIANTS, TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_bytes, write_json
from saic_tf.common.run import Run
from saic_tf.evaluation import evaluate
from saic_tf.evaluation import report
from saic_tf.evaluation import statistics
from saic_tf.experiments import executor
from saic_tf.semantic import gsw

SELECTION_FILE = "selection.json"
VALIDATION_DIR = "validation"  # a selection run's validation evaluation, inside the run
GOAL_POINTS = 1.0  # SAIC ≥ APIC + 1 point of accuracy, with the CI above 0
PAPER_TAU = 400.0  # the paper's τ at 0.125 bpp (STL-10, ResNet18), on its raw W


@dataclasses.dataclass
class StudySettings:
  bases: tuple = ("tdic-0.125", "tdic-0.25")
  # paper@stage3: Eq. 2-3 where ResNet18's head is non-linear, against the last block's.
  variants: tuple = GSW_VARIANTS + ("paper@stage3",)
  select_taus: tuple = (0.5, 2.0, 8.0)
  # KD's --kd_feature_weight, tried like τ ("with the feature loss added if that helps"). At the
  # end of a fine-tune at 0.125 bpp the KL is ~0.4 and APIC's feature loss ~80, so the feature
  # term goes from none (0) through a fifth of the KL, twice it, to twenty times it.
  select_kd_weights: tuple = (0.0, 0.001, 0.01, 0.1)
  select_rate: float = 0.0  # 0: the first base's rate
  seeds: tuple = (0, 1, 2)
  results_dir: str = os.path.join("results", "gsw")


def rates_of(settings: StudySettings):
  """[(bpp, base)] of the shipped --bases, in the order given."""
  if not settings.bases:
    raise UserError("--bases: give one or more shipped codecs (bin/models lists them)")
  rates = []
  for base in settings.bases:
    run = Run.find(base)
    if run is None:
      raise UserError(f"--bases: {base} is neither a shipped codec (shipped: "
                      f"{', '.join(zoo.names()) or 'none yet'}) nor a run directory")
    config = run.config
    if config.semantic:
      raise UserError(f"--bases: {base} is not a codec alone (a shipped codec or a --loss=tdic "
                      "run)")
    rates.append((config.bpp, base))
  if len({bpp for bpp, _ in rates}) != len(rates):
    raise UserError(f"--bases={','.join(settings.bases)}: give one base per rate")
  return rates


def _variant(variant):
  """(--gsw, --feature_layer) of a study variant: gsw, or gsw@layer."""
  gsw, _, layer = variant.partition("@")
  return gsw, layer


def variant_layer(variant):
  """The --feature_layer of a study variant ("": the backbone's last block)."""
  return _variant(variant)[1]


def check(config: TrainConfig, settings: StudySettings, variants_flag="--variants"):
  """(rates_of's [(bpp, base)], the selection rate) of valid settings; else a UserError."""
  unknown = sorted(v for v in settings.variants if _variant(v)[0] not in GSW_VARIANTS)
  if unknown or not settings.variants:
    raise UserError(f"{variants_flag}={','.join(settings.variants)}: each is one of "
                    f"{', '.join(GSW_VARIANTS)}, or one of them @ a --feature_layer "
                    "(e.g. paper@stage3)")
  executor.check_taus(list(settings.select_taus), flag="--select_taus")
  weights = list(settings.select_kd_weights)
  if not weights or any(w < 0 for w in weights) or len(set(weights)) != len(weights):
    raise UserError(f"--select_kd_weights={','.join(f'{w:g}' for w in weights)}: give one or "
                    "more distinct weights >= 0")
  # τ and the weights name runs and selection.json's keys as {:g}: the value read back from a
  # name must be the one trained with.
  for flag, values in (("--select_taus", settings.select_taus),
                       ("--select_kd_weights", weights)):
    if any(float(f"{v:g}") != v for v in values):
      raise UserError(f"{flag}={','.join(str(v) for v in values)}: give each with at most 6 "
                      "significant digits")
  if config.kd_feature_weight:
    raise UserError(f"--kd_feature_weight={config.kd_feature_weight:g}: KD's weight is chosen "
                    "on the validation split here: give the weights to try as "
                    "--select_kd_weights instead")
  executor.check_seeds(list(settings.seeds))
  if not config.holdout_every:
    raise UserError("the study chooses τ on a validation split: give --holdout_every")
  rates = rates_of(settings)
  select_rate = settings.select_rate or rates[0][0]
  if select_rate not in [bpp for bpp, _ in rates]:
    raise UserError(f"--select_rate={select_rate:g}: not the rate of one of --bases")
  return rates, select_rate


def _fine_tune_run(config, settings, bpp, base, classifier, loss, seed, variant=None, tau=None,
                   layer=None, kd_weight=0.0):
  """A run of the study: `variant` (gsw or gsw@layer) at `tau` for SAIC, `layer` for an APIC
  control, `kd_weight` (--kd_feature_weight) for KD."""
  gsw, variant_layer = _variant(variant) if loss == "saic" else (config.gsw, "")
  layer = variant_layer or layer or config.feature_layer
  suffix = f"-{layer}" if layer != config.feature_layer else ""
  name = f"saic_{gsw}{suffix}_tau_{tau:g}" if loss == "saic" else loss + suffix
  kd_weight = kd_weight if loss == "kd" else 0.0
  if kd_weight:
    name += f"_feature_weight_{kd_weight:g}"
  if seed != settings.seeds[0]:
    name += f"_seed{seed}"
  return dataclasses.replace(
      config, model_dir=os.path.join(config.model_dir, f"bpp_{bpp:g}", name), loss=loss,
      init_from=base, downstream_from=classifier, seed=seed,
      tau=tau if loss == "saic" else None, r=config.r if loss == "saic" else None,
      gsw=gsw, feature_layer=layer, kd_feature_weight=kd_weight)


def _classifier_run(config, settings, rates):
  """The first rate's APIC run: it trains the classifier every other run uses."""
  bpp, base = rates[0]
  return _fine_tune_run(config, settings, bpp, base, "", "apic", settings.seeds[0])


def _selection_runs(config, settings, rates, select_rate, seed=None):
  """[(variant, run)]: SAIC with each variant at each --select_taus, then [("kd", run)]: KD at
  each --select_kd_weights, at the rate where both are chosen (and the first seed)."""
  classifier = _classifier_run(config, settings, rates).model_dir
  run = lambda loss, **kwargs: _fine_tune_run(config, settings, select_rate, dict(rates)[
      select_rate], classifier, loss, settings.seeds[0] if seed is None else seed, **kwargs)
  return ([(v, run("saic", variant=v, tau=float(tau)))
           for v in settings.variants for tau in settings.select_taus] +
          [("kd", run("kd", kd_weight=float(weight))) for weight in settings.select_kd_weights])


def plan(config, settings, rates, select_rate, eval_settings, chosen, kd_weight=0.0,
         sweep=False):
  """Phase 2 as a plan ([executor.RunSpec]), the first seed's runs first: at every rate APIC,
  KD at `kd_weight` (its chosen --kd_feature_weight) and each variant at its τ in `chosen`
  ({variant: τ}). A variant at another feature layer gets an APIC control at that layer (the
  paired comparison's reference). With `sweep`, then SAIC at every other --select_taus at the
  selection rate, on the test split: the selection's SAIC runs, at every seed (bin/reproduce's
  τ sweep, paper Fig. 4)."""
  missing = [v for v in settings.variants if v not in chosen]
  if missing:
    raise UserError(f"--variants: {', '.join(missing)} not in the selection already made "
                    f"({', '.join(chosen)}); delete {SELECTION_FILE} to select again")
  first = _classifier_run(config, settings, rates)
  layers = sorted({_variant(v)[1] for v in settings.variants} - {"", config.feature_layer})
  runs = []
  for seed in settings.seeds:
    for bpp, base in rates:
      for loss, layer in [("apic", None), ("kd", None)] + [("apic", l) for l in layers]:
        runs.append(_fine_tune_run(config, settings, bpp, base, first.model_dir, loss, seed,
                                   layer=layer, kd_weight=kd_weight))
      runs += [_fine_tune_run(config, settings, bpp, base, first.model_dir, "saic", seed,
                              variant, float(chosen[variant])) for variant in settings.variants]
  runs[0] = first  # the same run, which trains the classifier (no --downstream_from)
  saic = dataclasses.replace(settings, select_kd_weights=())  # the sweep: SAIC's runs alone
  runs += [run for seed in (settings.seeds if sweep else ()) for variant, run in
           _selection_runs(config, saic, rates, select_rate, seed) if run.tau != chosen[variant]]
  # TDIC's row and JPEG/WebP/AVIF once per rate, with the first seed's APIC run; every other
  # run evaluates its own rows alone (report.gather shares rows across runs).
  shared = lambda run: (run.loss == "apic" and run.seed == settings.seeds[0] and
                        run.feature_layer == config.feature_layer)
  return [executor.RunSpec(run, dataclasses.replace(
      eval_settings, baselines=eval_settings.baselines if shared(run) else (),
      base_row=shared(run))) for run in runs]


def _recorded_runs(config, settings, rates, record):
  """_selection_runs of what a selection.json `record` scored: each variant at the τ it was
  scored at (another command's selection may have tried other τ), and KD at each weight."""
  ones = [dataclasses.replace(settings, variants=(variant,), select_kd_weights=(),
                              select_taus=tuple(float(t) for t in scores))
          for variant, scores in record["validation_accuracy"].items()]
  ones.append(dataclasses.replace(settings, variants=(), select_kd_weights=tuple(
      float(w) for w in record["kd_validation_accuracy"])))
  return [pair for one in ones for pair in _selection_runs(config, one, rates, record["rate"])]


def selection_dirs(config, settings, rates, record):
  """The directory of every selection run a selection.json `record` scored, another command's
  too: the choices were made among them, so their time counts."""
  return [run.model_dir for _, run in _recorded_runs(config, settings, rates, record)]


def write_selection_markdown(config, settings, rates, record, results_dir):
  """Writes RESULTS/selection.md of a selection.json `record` (selection_markdown), with the
  number of validation images and each variant's W read from its selection runs; returns its
  path."""
  images, weights = None, {}
  for variant, run in _recorded_runs(config, settings, rates, record):
    if variant == "kd":  # SAIC's runs alone
      continue
    path = layout.eval_path(os.path.join(run.model_dir, VALIDATION_DIR))
    if images is None and os.path.exists(path):
      images = read_json(path, "delete it to evaluate again")["num_images"]
    if variant not in weights and os.path.exists(layout.gsw_path(run.model_dir)):
      weights[variant] = gsw.read(layout.gsw_path(run.model_dir))["W"]
  return write_bytes(os.path.join(results_dir, "selection.md"),
                     selection_markdown(record, images, weights).encode())


def _kept_scores(config, settings, select_rate):
  """(selection.json's header, the record already there, {} if none): another command's
  selection in this root (bin/reproduce's, bin/gsw_study's) counts when made the same way."""
  record = dict(rate=select_rate, seed=settings.seeds[0], split="validation",
                holdout_every=config.holdout_every)
  path = os.path.join(config.model_dir, SELECTION_FILE)
  if not os.path.exists(path):
    return record, {}
  kept = read_selection(path)
  if {k: kept.get(k) for k in record} != record:
    raise UserError(f"{path}: τ was chosen there at {kept.get('rate')} bpp, seed "
                    f"{kept.get('seed')}, holdout_every {kept.get('holdout_every')}; this "
                    f"command chooses at {select_rate:g} bpp, seed {settings.seeds[0]}, "
                    f"holdout_every {config.holdout_every}: use another --model_dir, or "
                    "delete it to select again")
  return record, kept


def _validation_accuracy(run):
  """A selection run's accuracy on the validation split (its VALIDATION_DIR's eval.json)."""
  record = read_json(layout.eval_path(os.path.join(run.model_dir, VALIDATION_DIR)),
                     "delete it to evaluate again")
  return record["rows"][run.loss]["accuracy"]


def select(config, settings, rates, select_rate, eval_settings):
  """Phase 1: trains and scores the selection runs; writes and returns selection.json's record
  (with the variants another command selected in this root)."""
  record, kept = _kept_scores(config, settings, select_rate)
  # This command's variants are scored again, in the places they had (best_variant's ties go
  # to the variant selected first, whichever command rewrites the file); so are its KD weights,
  # beside those another command scored.
  scores = {v: ({} if v in settings.variants else taus)
            for v, taus in kept.get("validation_accuracy", {}).items()}
  kd_scores = {w: score for w, score in kept.get("kd_validation_accuracy", {}).items()
               if float(w) not in settings.select_kd_weights}
  runs = _selection_runs(config, settings, rates, select_rate)
  # The classifier run is evaluated in phase 2; every worker scores the others, to choose.
  validation = lambda run: dataclasses.replace(
      eval_settings, split="validation", baselines=(), base_row=False,
      out_dir=os.path.join(run.model_dir, VALIDATION_DIR))
  executor.execute([executor.RunSpec(_classifier_run(config, settings, rates))] + [
      executor.RunSpec(run, validation(run), every_worker=True) for _, run in runs],
                   config.model_dir, command="gsw_study: selection")
  for variant, run in runs:
    if variant == "kd":
      kd_scores[f"{run.kd_feature_weight:g}"] = _validation_accuracy(run)
    else:
      scores.setdefault(variant, {})[f"{run.tau:g}"] = _validation_accuracy(run)
  scores = {v: taus for v, taus in scores.items() if taus}
  record.update(validation_accuracy=scores,
                chosen_tau={variant: _most_accurate(taus) for variant, taus in scores.items()},
                kd_validation_accuracy=kd_scores,
                chosen_kd_feature_weight=_most_accurate(kd_scores))
  write_json(os.path.join(config.model_dir, SELECTION_FILE), record)
  return record


def _most_accurate(scores):
  """The setting (τ, a KD weight) of highest validation accuracy in {f"{setting:g}": accuracy};
  ties go to the smaller setting."""
  return float(min(scores, key=lambda setting: (-scores[setting], float(setting))))


def read_selection(path):
  """A selection.json's record, in today's format (formats.py)."""
  return formats.read("selection", path, "delete it to select again")


def chosen_of(record):
  """({variant: τ}, KD's --kd_feature_weight) chosen in a selection.json record (read_selection's;
  0: KL alone)."""
  return record["chosen_tau"], record["chosen_kd_feature_weight"]


def best_variant(record):
  """(variant, τ) of highest validation accuracy in a selection.json record, each variant at its
  chosen τ (ties: the variant selected first); None if nothing is selected yet."""
  scored = [(record["validation_accuracy"][v][f"{tau:g}"], -i, v, tau)
            for i, (v, tau) in enumerate(record.get("chosen_tau", {}).items())]
  return max(scored)[2:] if scored else None


def selection_markdown(record, images=None, weights=None):
  """selection.md; with the number of validation `images`, the standard error of one accuracy
  beside the differences between the variants' chosen τ; with each variant's W (`weights`),
  how many channels W' effectively weighs at each τ."""
  taus = sorted({float(t) for scores in record["validation_accuracy"].values() for t in scores})
  lines = ["# τ chosen on the validation split", "",
           f"SAIC at {record['rate']:g} bpp (seed {record['seed']}), validation accuracy (%) on "
           f"one training image in {record['holdout_every']}, held out of the classifier's "
           "and every fine-tune's training (the shipped codecs the fine-tunes start from were "
           "trained on the whole training split; bin/gsw_study, "
           "saic_tf/experiments/gsw_study.py). The chosen τ (bold) is the highest; ties go to "
           "the smaller τ.", "",
           "| variant | " + " | ".join(f"τ={t:g}" for t in taus) + " |",
           "|---" * (len(taus) + 1) + "|"]
  for variant, scores in record["validation_accuracy"].items():
    cells = []
    for tau in taus:
      value = scores.get(f"{tau:g}")
      cell = "—" if value is None else f"{100 * value:.2f}"
      cells.append(f"**{cell}**" if tau == record["chosen_tau"][variant] else cell)
    lines.append(f"| {variant} | " + " | ".join(cells) + " |")
  edge = [v for v, t in record["chosen_tau"].items() if len(taus) > 1 and t in (taus[0], taus[-1])
          and len(record["validation_accuracy"][v]) == len(taus)]
  if edge:
    lines += ["", f"At an end of the grid ({', '.join(f'`{v}`' for v in edge)}): a τ beyond it "
              "was not tried, so it may do better still."]
  if len(record["chosen_tau"]) > 1:
    variant, tau = best_variant(record)
    default = (", and bin/train's default --gsw" if variant == TrainConfig.gsw else "")
    lines += ["", f"Of highest validation accuracy: `{variant}` at τ = {tau:g} (bin/reproduce's "
              f"default --variant{default})."]
    if images:
      best = record["validation_accuracy"][variant][f"{tau:g}"]
      gaps = [100 * (best - record["validation_accuracy"][v][f"{t:g}"])
              for v, t in record["chosen_tau"].items() if v != variant]
      lines += ["", f"With {images} validation images, one accuracy's standard error is "
                f"√(p(1−p)/n) = {100 * (best * (1 - best) / images) ** 0.5:.1f} points at "
                f"p = {100 * best:.1f} %; the other variants are {min(gaps):.1f} to "
                f"{max(gaps):.1f} points below at their chosen τ. A single seed on this many "
                "images picks a default; it does not show one variant better than another (the "
                "test runs, over seeds with paired CIs, are summary.md's)."]
  kd_scores = record.get("kd_validation_accuracy")
  if kd_scores:
    chosen = record["chosen_kd_feature_weight"]
    kd_weights = sorted(kd_scores, key=float)
    cells = [f"{100 * kd_scores[w]:.2f}" for w in kd_weights]
    cells = [f"**{c}**" if float(w) == chosen else c for w, c in zip(kd_weights, cells)]
    lines += ["", "## KD's feature weight", "",
              "KD (--loss=kd) trained on KL(p(x) ‖ p(x')) plus w times APIC's feature loss "
              "(--kd_feature_weight), on the same images and seed; the chosen w (bold) is the "
              "highest, ties going to the smaller w (0: KL alone).", "",
              "| w | " + " | ".join(kd_weights) + " |", "|---" * (len(kd_weights) + 1) + "|",
              "| validation accuracy (%) | " + " | ".join(cells) + " |"]
  if weights:
    def spread(w, tau, scale="mean_abs"):
      return gsw.effective_channels(gsw.semantic_weights(gsw.normalized(w, scale), tau)[0])
    at_paper_tau = [spread(w, PAPER_TAU) for w in weights.values()]
    lines += ["", "## How spread W' is", "",
              "exp(H(W'/r)), the effective number of channels of W' = r·softmax(τŴ) (K: "
              "uniform, 1: one channel takes all), with each variant's W, on W / mean |W| unless "
              "said. "
              f"The paper's τ = {PAPER_TAU:g} (0.125 bpp) was for its raw W; on W / mean |W| it "
              f"leaves {min(at_paper_tau):.1f} to {max(at_paper_tau):.1f} effective channels.", "",
              "| variant | K | mean \\|W\\| | " + " | ".join(f"τ={t:g}" for t in taus) +
              f" | τ={PAPER_TAU:g} | τ={PAPER_TAU:g} on raw W |",
              "|---" * (len(taus) + 5) + "|"]
    for variant, w in weights.items():
      cells = [spread(w, t) for t in taus + [PAPER_TAU]] + [spread(w, PAPER_TAU, "raw")]
      lines.append(f"| {variant} | {len(w)} | {np.mean(np.abs(w)):.3g} | " +
                   " | ".join(f"{c:.1f}" for c in cells) + " |")
  return "\n".join(lines + [""])


def meets_goal(comparison):
  """SAIC ≥ APIC + GOAL_POINTS points of accuracy with the CI of the paired difference above 0."""
  return 100 * comparison["difference"] >= GOAL_POINTS and comparison["ci95"][0] > 0


def summary_markdown(blocks, timings=None, rates=()):
  """What holds: each SAIC variant (and KD) against APIC at each rate, and the goal; with
  timings.json's record, the time the study took; `rates`: the study's, to name those not
  measured yet."""
  lines = ["# Summary", "",
           f"The goal: SAIC ≥ APIC + {GOAL_POINTS:g} point of accuracy with the 95 % CI of the "
           "paired difference above 0, at every rate. Written by bin/gsw_study from the runs "
           "(results.md has every column).", ""]
  met = {}
  for bpp, entries in blocks.items():
    paired = report.paired_against_apic(entries)
    for name_a, _, c in paired:
      if name_a.startswith("SAIC"):
        met.setdefault(name_a.split(" (")[0], []).append(meets_goal(c))
    lines += [f"## {bpp:g} bpp (nominal)", ""] + statistics.markdown(
        paired, extra=[("goal", lambda row: "met" if meets_goal(row[2]) else "not met")]) + [""]
  winners = [name for name, goals in met.items() if all(goals) and len(goals) == len(blocks)]
  missing = [f"{bpp:g} bpp" for bpp in rates if bpp not in blocks]
  lines += [("Met at every rate measured by: " + ", ".join(winners)) if winners else
            "No SAIC variant meets the goal at every rate measured.", ""]
  if missing:
    lines += [f"Not measured yet: {', '.join(missing)} (the study is not finished).", ""]
  if len(met) > 1:
    # Several variants, each with its own 95 % interval: by chance alone about one interval in
    # 20 of a variant no better than APIC lies above 0.
    lines += [f"{len(met)} variants were tested, each against APIC with its own 95 % interval "
              "and no correction for testing several: a variant that meets the goal is a "
              "candidate, to be confirmed on new seeds.", ""]
  if timings and formats.TOTAL in timings:
    total = timings[formats.TOTAL]
    lines += [f"The study took {total['cpu_hours']:.2f} CPU hours (training "
              f"{total['train_cpu_hours']:.2f}, evaluation "
              f"{total['evaluate_cpu_hours']:.2f}) over {total['runs']} runs, "
              f"{total['wall_hours']:.2f} hours of wall time (timings.json).", ""]
  return "\n".join(lines)


def _collect(specs, config, settings, rates, select_rate):
  """RESULTS/: the report of the evaluated test runs, selection.md and summary.md."""
  results_dir = settings.results_dir
  done = [spec.run_dir for spec in specs if executor.is_evaluated(spec.run_dir)]
  files = report.build(done, results_dir) if done else []
  selection_path = os.path.join(config.model_dir, SELECTION_FILE)
  written = (read_json(selection_path, "delete it to select again")
             if os.path.exists(selection_path) else None)
  # RESULTS/ gets the record as written (--collect_only rewrites results/ byte for byte); the
  # rest reads it in today's format.
  selection = formats.upgrade("selection", written, selection_path) if written else None
  # The study's own runs' times (the root may hold bin/reproduce's too), every KD weight scored.
  timings = executor.timings_of(config.model_dir, [spec.run_dir for spec in specs] + [
      run.model_dir for v, run in _selection_runs(config, settings, rates, select_rate)
      if v != "kd"] + [run.model_dir for v, run in (
          _recorded_runs(config, settings, rates, selection) if selection else []) if v == "kd"])
  if timings:
    files.append(write_json(os.path.join(results_dir, layout.TIMINGS_FILE), timings))
  if selection:
    files.append(write_json(os.path.join(results_dir, SELECTION_FILE), written))
    files.append(write_selection_markdown(config, settings, rates, selection, results_dir))
  if done:
    records = [read_json(layout.eval_path(d), "evaluate it again") for d in done]
    files.append(write_bytes(os.path.join(results_dir, "summary.md"),
                             summary_markdown(report.gather(records), timings,
                                              [bpp for bpp, _ in rates]).encode()))
  return files


def run(config: TrainConfig, settings: StudySettings, eval_settings: evaluate.EvalSettings,
        collect_only=False):
  """Both phases (module doc), phase 2 a plan run by executor.execute; returns the files
  written to RESULTS/."""
  rates, select_rate = check(config, settings)
  selection_path = os.path.join(config.model_dir, SELECTION_FILE)
  if collect_only:
    record = read_selection(selection_path) if os.path.exists(selection_path) else None
  else:
    record = select(config, settings, rates, select_rate, eval_settings)
  specs = plan(config, settings, rates, select_rate, eval_settings,
               *chosen_of(record)) if record else []
  collect = lambda: _collect(specs, config, settings, rates, select_rate)
  return collect() if collect_only else executor.execute(specs, config.model_dir, collect,
                                                         "gsw_study: run")[0]
