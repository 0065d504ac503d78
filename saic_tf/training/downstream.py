"""Algorithm 1, step 1: the downstream classifier, trained on the dataset and then frozen, or
the user's own model (--downstream_model), frozen as it is (with_own_model).

Trained from scratch by default (pre-trained weights cannot be downloaded everywhere), with the
same augmented tf.data stream as the codec, AdamW and a cosine-decayed learning rate. Saved in
MODEL_DIR/downstream/ (checkpoints + downstream.json with its test accuracy); once
downstream.json exists the network is only ever loaded, frozen (semantic/downstream.py).
"""
import contextlib
import dataclasses
import os

from absl import logging
import tensorflow as tf
from tensorflow import keras

from saic_tf.common import distribute
from saic_tf.common import layout
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import write_json
from saic_tf.data import datasets
from saic_tf.semantic import backbones
from saic_tf.semantic import downstream
from saic_tf.semantic import own_model
from saic_tf.training.loop import fit_resumably, optimizer_for, TrainingMonitor


def _train(config: TrainConfig, classifier, directory, log_dir, strategy, sources):
  train_source, test_source = sources
  steps_per_epoch = max(1, train_source.num_examples // config.batch_size)
  total_steps = config.downstream_epochs * steps_per_epoch
  with strategy.scope():
    schedule = keras.optimizers.schedules.CosineDecay(config.downstream_learning_rate,
                                                      total_steps)
    optimizer = optimizer_for(config, keras.optimizers.AdamW(
        schedule, weight_decay=config.downstream_weight_decay))
    classifier.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit, steps_per_execution=config.steps_per_execution)
    optimizer.build(classifier.trainable_variables)
    distribute.local_metrics(classifier, strategy)
  logging.info("downstream: training %s from %s weights for %d epochs (%d steps) on %s",
               config.backbone, config.backbone_weights, config.downstream_epochs, total_steps,
               config.dataset)
  monitor = TrainingMonitor("downstream", distribute.write_dir(log_dir, strategy), total_steps,
                            config.batch_size, config.log_every)
  make_dataset = lambda start: datasets.train_dataset(
      train_source, config.image_size, config.batch_size, config.seed, start_step=start)
  fit_resumably(classifier, tf.train.Checkpoint(model=classifier, optimizer=optimizer),
                directory, make_dataset, total_steps, steps_per_epoch, monitor,
                save_dir=distribute.write_dir(directory, strategy),
                on_nonfinite=config.on_nonfinite)
  test = classifier.evaluate(datasets.eval_dataset(test_source, config.image_size,
                                               config.batch_size), return_dict=True, verbose=0)
  return dict(test_accuracy=float(test["accuracy"]), test_loss=float(test["loss"]),
              epochs=config.downstream_epochs, steps=total_steps,
              test_examples=test_source.num_examples)


def with_own_model(config: TrainConfig):
  """(config, classes): the run's settings completed from --downstream_model's file (its
  SHA-256, the feature layer it is split at and the image size it fixes: config.json records
  all three, so that a resumed run checks them) and the model's number of classes. Refuses a
  SavedModel for the feature loss."""
  path = layout.downstream_model_path(config.downstream_model)
  own_model.check_path(path)
  changes = dict(downstream_sha256=own_model.sha256(path))
  if own_model.is_saved_model(path):
    if config.loss != "kd" or config.kd_feature_weight:
      what = ("--kd_feature_weight" if config.loss == "kd" else f"--loss={config.loss}")
      raise UserError(f"--downstream_model={config.downstream_model}: a SavedModel gives class "
                      f"scores only; {what} needs the feature split of a Keras model file "
                      "(.keras or .h5)")
    if config.feature_layer:
      raise UserError(f"--feature_layer={config.feature_layer}: a SavedModel has no layers to "
                      "split at")
    saved = own_model.SavedModelClassifier(path, config.downstream_input,
                                           image_size=config.image_size)
    size, classes = saved.image_size, saved.num_classes
  else:
    model = own_model.load_keras(path)
    own_model.check_outputs(path, model.output_shape, None)
    changes["feature_layer"] = own_model.split_point(model, config.feature_layer, path)[1]
    size, classes = own_model.fixed_image_size(model), model.output_shape[-1]
  if size and size != config.image_size:
    logging.info("--downstream_model=%s takes %dx%d images: --image_size=%d", path, size, size,
                 size)
    changes["image_size"] = size
  return dataclasses.replace(config, **changes).validate(), classes


def train_or_load(config: TrainConfig, base_dir, strategy, sources):
  """The frozen downstream network of `base_dir` (this run, --init_from or --downstream_from),
  training it first if
  this run has none yet."""
  if config.downstream_model:
    # A SavedModel's variables are loaded outside the strategy's scope: mirrored, its
    # signature would no longer run outside a replica (the objective's first call, evaluation).
    saved = own_model.is_saved_model(layout.downstream_model_path(config.downstream_model))
    with contextlib.nullcontext() if saved else strategy.scope():
      network = downstream.own(config, sources[0].num_classes)
    logging.info("downstream: %s, frozen as it is, split at %s", network.info["model"],
                 network.feature_layer)
    return network
  directory, log_dir = layout.part_dirs(base_dir, layout.DOWNSTREAM_DIR)
  info_path = layout.downstream_info_path(base_dir)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    classifier, features, head, feature_layer = downstream.build(config,
                                                                 sources[0].num_classes)
  if os.path.exists(info_path):
    info = downstream.restore_trained(classifier, base_dir)
    logging.info("downstream: complete (test accuracy %.4f, %s), skipping",
                 info["test_accuracy"], directory)
  elif base_dir != config.model_dir:
    flag = "--downstream_from" if config.downstream_from else "--init_from"
    raise UserError(f"{flag}={base_dir}: has no trained downstream network ({info_path})")
  else:
    info = _train(config, classifier, directory, log_dir, strategy, sources)
    info.update(backbone=config.backbone, backbone_weights=config.backbone_weights,
                feature_layer=feature_layer, image_size=config.image_size,
                dataset=config.dataset, class_names=sources[0].class_names,
                checkpoint=os.path.basename(tf.train.latest_checkpoint(
                    distribute.write_dir(directory, strategy))))
    if distribute.is_chief(strategy):
      write_json(info_path, info)
    logging.info("downstream: test accuracy %.4f on %d images -> %s", info["test_accuracy"],
                 info["test_examples"], info_path)
  backbones.freeze(classifier)
  return downstream.DownstreamNetwork(classifier, features, head, config.backbone,
                                      feature_layer, info)
