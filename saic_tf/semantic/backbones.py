"""Downstream networks: a backbone split at a feature layer into F (features f_1..f_K) and a head.

Every classifier takes float images in [0, 1] of any square `image_size`; its own input
preprocessing is its first layer, so F, the head and the whole classifier all see the same
input as the codec produces. The classifier's output is logits y (softmax gives the
confidence scores).

Default feature layer (`--feature_layer`): the last convolutional block of each backbone, i.e.
the feature map right before global pooling, where the paper's Grad-CAM-like weights are most
directly tied to the decision:

| backbone        | default feature layer | channels K |
|-----------------|-----------------------|------------|
| resnet18        | stage4                | 512        |
| vgg16           | block5_conv3          | 512        |
| resnet50        | conv5_block3_out      | 2048       |
| mobilenet_v2    | out_relu              | 1280       |
| efficientnet_b0 | top_activation        | 1280       |

Any other layer name of the backbone (e.g. resnet18's `stage3`) works, as long as every path
from the input to the output passes through it (block outputs do).
"""
import os

from tensorflow import keras

from saic_tf.common.errors import first_line, UserError

layers = keras.layers

DEFAULT_FEATURE_LAYERS = {
    "resnet18": "stage4",
    "vgg16": "block5_conv3",
    "resnet50": "conv5_block3_out",
    "mobilenet_v2": "out_relu",
    "efficientnet_b0": "top_activation",
}
BACKBONES = tuple(DEFAULT_FEATURE_LAYERS)
# ImageNet statistics, for the backbone we build ourselves (resnet18).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_VARIANCE = (0.229**2, 0.224**2, 0.225**2)


class ApplicationPreprocess(layers.Layer):
  """[0, 1] images -> the input a keras.applications backbone was trained on (core TF ops)."""

  def __init__(self, backbone, **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone

  def call(self, images):
    pixels = images * 255.0
    if self.backbone == "vgg16":
      return keras.applications.vgg16.preprocess_input(pixels)  # BGR, ImageNet means
    if self.backbone == "resnet50":
      return keras.applications.resnet50.preprocess_input(pixels)
    if self.backbone == "mobilenet_v2":
      return keras.applications.mobilenet_v2.preprocess_input(pixels)  # to [-1, 1]
    return pixels  # efficientnet_b0 normalizes inside the model

  def get_config(self):
    return dict(super().get_config(), backbone=self.backbone)


def _basic_block(x, filters, stride, name):
  shortcut = x
  y = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
  y = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
  y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
  y = layers.BatchNormalization(name=f"{name}_bn2")(y)
  if stride != 1 or shortcut.shape[-1] != filters:
    shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_down")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_down_bn")(shortcut)
  return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet18_features(images):
  """ResNet-18 (He et al. 2016) without its top: 7x7/2 stem, max-pool, 4 stages of 2 blocks.

  Keras Applications has no ResNet-18; the stage outputs are named stage1..stage4.
  """
  x = layers.Normalization(mean=IMAGENET_MEAN, variance=IMAGENET_VARIANCE, name="normalize")(
      images)
  x = layers.Conv2D(64, 7, 2, padding="same", use_bias=False, name="stem_conv")(x)
  x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
  x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
  for stage, filters in enumerate((64, 128, 256, 512), start=1):
    for block in (1, 2):
      stride = 2 if stage > 1 and block == 1 else 1
      x = _basic_block(x, filters, stride, name=f"stage{stage}_block{block}")
    x = layers.Activation("linear", name=f"stage{stage}")(x)
  return x


_APPLICATIONS = {
    "vgg16": keras.applications.VGG16,
    "resnet50": keras.applications.ResNet50,
    "mobilenet_v2": keras.applications.MobileNetV2,
    "efficientnet_b0": keras.applications.EfficientNetB0,
}


def _application_features(backbone, images, weights):
  """A keras.applications backbone (include_top=False) on preprocessed [0, 1] images."""
  preprocessed = ApplicationPreprocess(backbone, name="preprocess")(images)
  try:
    model = _APPLICATIONS[backbone](include_top=False, weights=weights,
                                    input_tensor=preprocessed)
  except Exception as e:  # pylint: disable=broad-except
    if weights == "imagenet":
      raise UserError(
          f"--backbone_weights=imagenet: could not get Keras' ImageNet weights of {backbone} "
          f"({first_line(e, 160)}); offline, use --backbone_weights=none to train "
          "it from scratch or --backbone_weights=PATH for a local weights file") from None
    raise UserError(f"--backbone_weights={weights}: could not load it into {backbone}: "
                    f"{first_line(e, 200)}") from None
  return model.output


def build_classifier(backbone, image_size, num_classes, weights="none"):
  """The downstream classifier: [0, 1] images -> logits; backbone weights none|imagenet|PATH."""
  if backbone not in BACKBONES:
    raise UserError(f"--backbone={backbone}: unknown; choose one of {', '.join(BACKBONES)}")
  if weights not in ("none", "imagenet") and not os.path.isfile(weights):
    raise UserError(f"--backbone_weights={weights}: no such file (use none, imagenet or a "
                    "path to a weights file)")
  images = keras.Input((image_size, image_size, 3), name="image")
  if backbone == "resnet18":
    if weights == "imagenet":
      raise UserError("--backbone_weights=imagenet: Keras Applications has no ResNet-18 "
                      "weights; use --backbone_weights=none or a local weights file (PATH)")
    features = resnet18_features(images)
  else:
    features = _application_features(backbone, images, None if weights == "none" else weights)
  pooled = layers.GlobalAveragePooling2D(name="head_pool")(features)
  logits = layers.Dense(num_classes, name="head_logits", dtype="float32")(pooled)
  model = keras.Model(images, logits, name=f"{backbone}_classifier")
  if backbone == "resnet18" and weights not in ("none", "imagenet"):
    by_name = weights.endswith(".h5")  # h5: take the layers that match (e.g. not the head)
    try:
      model.load_weights(weights, by_name=by_name, skip_mismatch=by_name)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"--backbone_weights={weights}: could not load it into resnet18: "
                      f"{first_line(e, 200)}") from None
  return model


def split(classifier, feature_layer):
  """(F, head): F maps images to the feature layer's output, head maps those to the logits."""
  try:
    features = classifier.get_layer(feature_layer).output
  except ValueError:
    raise UserError(f"--feature_layer={feature_layer}: no such layer in "
                    f"{classifier.name}") from None
  try:
    head = keras.Model(features, classifier.output, name="head")
  except Exception:  # pylint: disable=broad-except
    raise UserError(f"--feature_layer={feature_layer}: the network cannot be split there "
                    "(a skip connection bypasses it); pick a block output") from None
  return keras.Model(classifier.input, features, name="features"), head


def freeze(model):
  """Never trained again: no trainable weights, and BatchNorm always in inference mode."""
  model.trainable = False
  for layer in model.layers:
    layer.trainable = False
  return model
