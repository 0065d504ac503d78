"""The downstream network F∘head of a run: its architecture split at the feature layer, and the
trained classifier loaded frozen (no trainable weights, BatchNorm in inference mode).

It is trained by Algorithm 1's step 1 (training/downstream.py) and saved in MODEL_DIR/downstream/
(checkpoints + downstream.json with its test accuracy), or it is the user's own model file
(--downstream_model, semantic/own_model.py), frozen as it is.
"""
import dataclasses
import os

import tensorflow as tf
from tensorflow import keras

from saic_tf.common import layout
from saic_tf.common.checkpoints import restore
from saic_tf.common.config import TrainConfig
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json
from saic_tf.semantic import backbones
from saic_tf.semantic import own_model


@dataclasses.dataclass
class DownstreamNetwork:
  """The frozen classifier and its split at the feature layer: logits = head(features(x))."""
  classifier: keras.Model
  features: keras.Model
  head: keras.Model
  backbone: str
  feature_layer: str
  info: dict


def build(config: TrainConfig, num_classes):
  """The classifier's architecture (random or --backbone_weights), split at the feature layer."""
  feature_layer = config.feature_layer or backbones.DEFAULT_FEATURE_LAYERS[config.backbone]
  classifier = backbones.build_classifier(config.backbone, config.image_size, num_classes,
                                          config.backbone_weights)
  features, head = backbones.split(classifier, feature_layer)
  return classifier, features, head, feature_layer


def restore_trained(classifier, base_dir):
  """Restores the trained weights of the run in `base_dir` into `classifier`; returns its
  downstream.json record."""
  info_path = layout.downstream_info_path(base_dir)
  info = read_json(info_path, f"delete the {layout.DOWNSTREAM_DIR}/ folder to train it again")
  restore(tf.train.Checkpoint(model=classifier),
          os.path.join(os.path.dirname(info_path), info["checkpoint"]), partial=True)
  return info


def load(config: TrainConfig, base_dir, num_classes):
  """The trained, frozen downstream network of the run in `base_dir` (for evaluation)."""
  if config.downstream_model:
    return own(config, num_classes)
  info_path = layout.downstream_info_path(base_dir)
  if not os.path.exists(info_path):
    raise UserError(f"{base_dir}: has no trained downstream network ({info_path}); train one "
                    "with --loss=apic or saic, or pass --downstream_dir=ANOTHER_RUN")
  classifier, features, head, feature_layer = build(config, num_classes)
  info = restore_trained(classifier, base_dir)
  backbones.freeze(classifier)
  return DownstreamNetwork(classifier, features, head, config.backbone, feature_layer, info)


def own(config: TrainConfig, num_classes=None):
  """The user's frozen model (--downstream_model) of `config`, split at its feature layer; a
  UserError if the file is not the one the run recorded (config.downstream_sha256)."""
  path = layout.downstream_model_path(config.downstream_model)
  own_model.check_path(path)
  if config.downstream_sha256 and own_model.sha256(path) != config.downstream_sha256:
    raise UserError(f"--downstream_model={config.downstream_model}: the file changed since "
                    f"{config.model_dir} was trained with it (SHA-256 "
                    f"{config.downstream_sha256[:12]}... recorded): put the original back")
  info = dict(model=os.path.abspath(path), sha256=config.downstream_sha256,
              input=config.downstream_input, test_accuracy=None)
  name = os.path.basename(os.path.normpath(path))
  if own_model.is_saved_model(path):  # --loss=kd: class scores only (config.validate)
    classifier = own_model.SavedModelClassifier(path, config.downstream_input, num_classes,
                                                config.image_size)
    identity = lambda x, training=False: x
    return DownstreamNetwork(classifier, classifier, identity, name,
                             own_model.SAVED_MODEL_FEATURES, info)
  model = own_model.load_keras(path)
  own_model.check_outputs(path, model.output_shape, num_classes)
  classifier, features, head, feature_layer = own_model.network_from_keras(
      model, path, config.feature_layer, config.downstream_input)
  return DownstreamNetwork(classifier, features, head, name, feature_layer, info)
