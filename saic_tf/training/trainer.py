"""The resumable run of paper Algorithm 1 (bin/train).

  step 1   downstream classifier F∘head trained on the dataset, then frozen  MODEL_DIR/downstream/
  step 2   GSW on the frozen network: W, W' = r·softmax(τW)                 MODEL_DIR/gsw.json
  stage 1  TDIC: E → Q → D with pixel MSE (Eq. 5)                           MODEL_DIR/tdic/
  stage 2  APIC | SAIC fine-tune from TDIC: Σ_k w'_k ‖F_k(x') − F_k(x)‖²     MODEL_DIR/apic|saic/
           or the KD reference: KL(p(x) ‖ p(x'))                            MODEL_DIR/kd/

--loss=tdic runs stage 1 only. Each part is checkpointed (tf.train.CheckpointManager) and
skipped with a log line once complete, so running the same command again continues where it
stopped. Each codec stage ends with its entropy model (codec/stages.py), for .saic files and
their real bpp. The data pipeline is a function of (seed, step), so a resumed stage trains on
exactly the batches an uninterrupted one would have seen and stops at its step count.
TensorBoard logs go to MODEL_DIR/logs/<part>/.
"""
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow import keras

from saic_tf.codec import networks
from saic_tf.codec import stages
from saic_tf.common import distribute
from saic_tf.common import layout
from saic_tf.common.checkpoints import restore
from saic_tf.common.config import differences, TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.run import Run
from saic_tf.data import datasets
from saic_tf.semantic import gsw
from saic_tf.semantic import losses
from saic_tf.training import downstream
from saic_tf.training import schedules
from saic_tf.training.codec_trainer import CodecTrainer
from saic_tf.training.loop import current_step, fit_resumably, optimizer_for, TrainingMonitor


def train_codec_stage(config: TrainConfig, stage, objective, steps, strategy, sources,
                      init_checkpoint=None):
  """Trains (or resumes, or skips) one codec stage to `steps`; returns its test metrics."""
  checkpoint_dir, log_dir = layout.part_dirs(config.model_dir, stage)
  train_source, test_source = sources
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    codec = networks.build_codec(config)
    model = CodecTrainer(codec, objective, name=f"{stage}_trainer")
    peak = config.learning_rate
    if stage != "tdic" and config.finetune_learning_rate is not None:
      peak = config.finetune_learning_rate
    learning_rate = schedules.for_stage(config, peak, steps)
    model.compile(optimizer=optimizer_for(config, keras.optimizers.Adam(learning_rate)),
                  jit_compile=config.jit, steps_per_execution=config.steps_per_execution)
    model.optimizer.build(codec.trainable_variables)
    distribute.local_metrics(model, strategy)
  if init_checkpoint and not tf.train.latest_checkpoint(checkpoint_dir):
    logging.info("%s: starting from %s", stage, init_checkpoint)
    restore(tf.train.Checkpoint(codec=codec), init_checkpoint, partial=True)
  preview = next(iter(datasets.eval_dataset(test_source, config.image_size, 4)))[0]
  monitor = TrainingMonitor(stage, distribute.write_dir(log_dir, strategy), steps,
                            config.batch_size, config.log_every, config.image_every, preview)
  # Crops are for TDIC's pixel loss; the fine-tune's feature loss needs the downstream network's
  # whole input (on a 48-pixel crop ResNet18's last block is 2x2).
  crop_size = config.crop_size if stage == "tdic" else 0
  crops = (f", random {crop_size}x{crop_size} crops" +
           (f" at scales {config.crop_scale_min:g}..1" if config.crop_scale_min < 1 else "")
           if crop_size else "")
  logging.info("%s: %d steps on %s (%d images, %dx%d%s), batch %d, lr %g (%s, %d warm-up "
               "steps), %g bpp nominal", stage, steps, config.dataset,
               train_source.num_examples, config.image_size, config.image_size, crops,
               config.batch_size, peak, config.lr_schedule, config.warmup_steps,
               codec.nominal_bpp(config.image_size, config.image_size))
  make_dataset = lambda start: datasets.train_dataset(
      train_source, config.image_size, config.batch_size, config.seed, start_step=start,
      crop_size=crop_size, crop_scale_min=config.crop_scale_min)
  fit_resumably(model, tf.train.Checkpoint(codec=codec, optimizer=model.optimizer),
                checkpoint_dir, make_dataset, steps, config.checkpoint_every, monitor,
                save_dir=distribute.write_dir(checkpoint_dir, strategy),
                on_nonfinite=config.on_nonfinite)
  if distribute.is_chief(strategy):  # the stage ends with its entropy model (.saic files)
    stages.fit_stage_entropy_model(config, stage, tf.train.latest_checkpoint(checkpoint_dir))
  test_ds = datasets.eval_dataset(test_source, config.image_size, config.batch_size)
  metrics = model.evaluate(test_ds, return_dict=True, verbose=0)
  logging.info("%s: test split  loss %.5f  PSNR %.2f dB  MSE %.5f  %.4f bpp nominal", stage,
               metrics["loss"], metrics["psnr"], metrics["mse"], metrics["bpp"])
  return dict(stage=stage, step=current_step(model), checkpoint_dir=checkpoint_dir,
              log_dir=log_dir, test_metrics={k: float(v) for k, v in metrics.items()})


def semantic_weights(config: TrainConfig, network, train_source, strategy):
  """Per-channel weights of the feature loss: GSW's W' for SAIC (gsw.json), all 1 for APIC,
  None for KD (its optional feature term weighs every channel 1 itself, and a SavedModel
  classifier has no feature channels)."""
  if config.resolved_loss != "saic":
    return None if config.resolved_loss == "kd" else np.ones(network.features.output.shape[-1])
  num_channels = network.features.output.shape[-1]
  settings = dict(backbone=network.backbone, feature_layer=network.feature_layer,
                  **({"downstream_sha256": config.downstream_sha256}
                     if config.downstream_model else {}),
                  dataset=config.dataset, image_size=config.image_size,
                  holdout_every=config.holdout_every, gsw=config.gsw, gsw_scale=config.gsw_scale,
                  gsw_output=config.gsw_output, gsw_batches=config.gsw_batches,
                  gsw_images=gsw.IMAGES,
                  tau=config.tau, r=float(num_channels if config.r is None else config.r))
  record = gsw.load(config.model_dir, settings)
  if record is not None:
    logging.info("gsw: reusing %s", layout.gsw_path(config.model_dir))
    w_prime = np.asarray(record["W_prime"])
  else:
    w_prime = _computed_weights(config, network, train_source, strategy, settings)
  warning = gsw.concentration(w_prime, config.tau, config.gsw_scale)
  if warning:  # said on resume too: the run is still training on it
    logging.warning(warning)
  return w_prime


def _computed_weights(config, network, train_source, strategy, settings):
  """GSW's W' computed on the frozen network, logged, and saved (gsw.json) with `settings`."""
  # A random subset of the training split (files come by class), the same for every fine-tune
  # of this network whatever its seed.
  batches = datasets.eval_dataset(train_source, config.image_size, config.batch_size,
                                  limit=config.gsw_batches * config.batch_size,
                                  subset_seed=gsw.SUBSET_SEED)
  w, spread = gsw.compute(network.features, network.head, batches, config.gsw_batches,
                          config.gsw)
  w_prime, _ = gsw.semantic_weights(gsw.normalized(w, config.gsw_scale), config.tau,
                                    settings["r"])
  warning = gsw.describe(w, spread, config.gsw)
  if warning:
    logging.warning(warning)
  if distribute.is_chief(strategy):
    gsw.save(config.model_dir, w, w_prime, dict(
        settings, class_mean_cancels=gsw.cancels(w), image_spread=spread,
        effective_channels=gsw.effective_channels(w_prime)))
  log_dir = distribute.write_dir(layout.part_dirs(config.model_dir, "gsw")[1], strategy)
  with tf.summary.create_file_writer(log_dir).as_default(step=0):
    tf.summary.histogram("W", w)
    tf.summary.histogram("W_prime", w_prime)
  gsw.log_summary(w_prime, config.tau, settings["r"], layout.gsw_path(config.model_dir))
  return w_prime


# holdout_every: a base trained on this run's validation images would leak them.
# Not the feature layer: it only says where the same trained classifier splits into F and the
# head, so runs may share one classifier and compare layers.
DOWNSTREAM_SETTINGS = ("dataset", "image_size", "holdout_every", "backbone", "backbone_weights")
CODEC_SETTINGS = ("bpp", "stride", "filters", "steps")


def with_base_codec(config: TrainConfig, base=None):
  """A fine-tune from a base without a downstream network (a shipped codec such as tdic-0.25,
  or a --loss=tdic run) takes the base's codec settings (--bpp, --stride, --filters, --steps):
  the base is a codec, whatever the data it is fine-tuned on. `base`: the --init_from Run, when
  the caller has resolved it."""
  if not config.init_from:
    return config
  base = (base or Run.resolve(config.init_from)).config
  if base.semantic:
    return config
  default = TrainConfig()
  adopted = {k: getattr(base, k) for k in CODEC_SETTINGS
             if getattr(base, k) != getattr(config, k)}
  conflicts = [f"--{k}={getattr(config, k)!r} given, {v!r} there" for k, v in adopted.items()
               if getattr(config, k) != getattr(default, k)]
  if conflicts:
    raise UserError(f"--init_from={config.init_from}: the base codec's settings are fixed "
                    f"({'; '.join(conflicts)}): leave them out")
  if adopted:
    logging.info("--init_from=%s: the base codec's settings %s", config.init_from,
                 ", ".join(f"--{k}={v}" for k, v in adopted.items()))
  return dataclasses.replace(config, **adopted).validate()


def check_base_run(config: TrainConfig, base=None):
  """--init_from=DIR must be a run with the same codec and downstream settings (a base without
  a downstream network: the same codec settings, see with_base_codec); --downstream_from=DIR
  one with the same downstream settings. Both together only when the --init_from base is a
  codec alone (e.g. a shipped codec: one classifier for several rates); a run brings its own.
  `base`: the --init_from Run, when the caller has resolved it."""
  if config.init_from:
    base = (base or Run.resolve(config.init_from)).config
    if base.semantic and (config.downstream_from or config.downstream_model):
      flag = "--downstream_from" if config.downstream_from else "--downstream_model"
      raise UserError(f"{flag} with --init_from={config.init_from}: that run "
                      "already brings its downstream network; give one of them")
    # Not the seed: it seeds this run's own fine-tune (bin/sweep_tau --seeds repeats one).
    shared = DOWNSTREAM_SETTINGS + CODEC_SETTINGS if base.semantic else CODEC_SETTINGS
    changed = differences(base.to_dict(), config.to_dict(), shared)
    if changed:
      raise UserError(f"--init_from={config.init_from}: that run differs ({changed})")
  if config.downstream_from:
    base = Run.resolve(config.downstream_from).config
    changed = differences(base.to_dict(), config.to_dict(), DOWNSTREAM_SETTINGS)
    if changed:
      raise UserError(f"--downstream_from={config.downstream_from}: that run differs "
                      f"({changed})")


def _complete(config: TrainConfig):
  """(stage, checkpoint) of the run's last codec stage if it has reached its steps, else None."""
  stage = config.loss if config.semantic else "tdic"
  checkpoint_dir = layout.part_dirs(config.model_dir, stage)[0]
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  steps = config.finetune_steps if config.semantic else config.steps
  return (stage, latest) if latest and layout.checkpoint_step(latest) >= steps else None


def train(config: TrainConfig, strategy=None, skip_complete=False):
  """Algorithm 1 (see module doc). Returns a summary of the last codec stage. With
  `skip_complete`, a run whose last stage has reached its steps loads no data and is not scored
  on the test split again (its summary's test_metrics is None): the experiment commands pass
  over their finished runs in seconds."""
  config = dataclasses.replace(config.validate(), loss=config.resolved_loss)
  try:  # refuse a bad --bpp/--stride before anything is written
    networks.channels_for_bpp(config.bpp, config.stride)
  except ValueError as e:
    raise UserError(str(e)) from None
  # The --init_from base, read once for the checks, its TDIC stage and its downstream network.
  base = Run.resolve(config.init_from) if config.init_from else None
  if config.init_from or config.downstream_from:
    config = with_base_codec(config, base)
    check_base_run(config, base)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  strategy = strategy or distribute.make_strategy(config.strategy)
  own_classes = None
  if config.downstream_model:  # after the strategy: multi_worker must start before any op
    config, own_classes = downstream.with_own_model(config)
  run = Run.at(config.model_dir, config, base)  # its config.json is not written yet
  # Checked now, written once the data has loaded: a first start that fails there (a dataset
  # offline, a wrong --data_dir) leaves no config.json to refuse the corrected command.
  config.write_or_check(write=False)
  keras.mixed_precision.set_global_policy(
      "float32" if config.mixed_precision == "none" else config.mixed_precision)
  if config.batch_size % strategy.num_replicas_in_sync:
    raise UserError(f"--batch_size={config.batch_size} is not divisible by the "
                    f"{strategy.num_replicas_in_sync} replicas")
  complete = _complete(config) if skip_complete else None
  if complete:
    stage, checkpoint = complete
    logging.info("%s: %s is complete (step %d): nothing to train", stage, config.model_dir,
                 layout.checkpoint_step(checkpoint))
    keras.mixed_precision.set_global_policy("float32")
    if distribute.is_chief(strategy):
      stages.fit_missing_entropy_models(run)
    return dict(stage=stage, step=layout.checkpoint_step(checkpoint),
                checkpoint_dir=os.path.dirname(checkpoint),
                log_dir=layout.part_dirs(config.model_dir, stage)[1], test_metrics=None,
                chief=distribute.is_chief(strategy))
  sources = (datasets.load(config.dataset, "train", config.data_dir, config.holdout_every),
             datasets.load(config.dataset, "test", config.data_dir))
  if own_classes is not None and own_classes != sources[0].num_classes:
    raise UserError(f"--downstream_model={config.downstream_model}: it has {own_classes} "
                    f"classes, the dataset {sources[0].num_classes}")
  config.write_or_check(write=distribute.is_chief(strategy))
  try:
    if config.cache:
      sources = (datasets.cached(sources[0], config.image_size), sources[1])
    summary = _train_parts(run, strategy, sources)
  except tf.errors.OpError as e:  # e.g. a damaged file in an image folder
    datasets.check_decode_error(e, *sources)
  finally:  # what comes next (evaluation, export) runs in float32
    keras.mixed_precision.set_global_policy("float32")
  if distribute.is_chief(strategy):  # a stage skipped as complete may lack its entropy model
    stages.fit_missing_entropy_models(run)
  return dict(summary, chief=distribute.is_chief(strategy))


def _train_parts(run: Run, strategy, sources):
  config = run.config
  base_dir = run.base.directory if run.base is not None else config.model_dir
  if config.semantic:  # steps 1 and 2, before the long codec stages
    network = downstream.train_or_load(config, run.downstream_dir, strategy, sources)
    weights = semantic_weights(config, network, sources[0], strategy)
  if config.init_from:
    logging.info("tdic: reusing %s", layout.stage_dir(base_dir, "tdic"))
  else:
    summary = train_codec_stage(config, "tdic", networks.pixel_mse, config.steps, strategy,
                                sources)
  if not config.semantic:
    return summary
  tdic = layout.latest_complete_checkpoint(layout.stage_dir(base_dir, "tdic"), config.steps,
                                           "TDIC")
  with strategy.scope():
    if config.loss == "kd":
      objective = losses.output_divergence(network.classifier, network.features,
                                           config.kd_feature_weight)
    else:
      objective = losses.feature_distortion(network.features, weights)
  return train_codec_stage(config, config.loss, objective, config.finetune_steps, strategy,
                           sources, init_checkpoint=tdic)
