"""The shipped task-aware codecs (saic-*) and the classifier they serve (bin/models).

A task-aware codec is a fine-tune (APIC/SAIC/KD) of a shipped tdic-* base for one frozen
classifier; both ship: the classifier as a plain Keras model file (layout.CLASSIFIER_FILE,
loadable by stock Keras, taking [0, 1] images), the codec as a run directory whose config.json
names the classifier (--downstream_model=<its name>) and whose TDIC stage is its base's
(--init_from=tdic-*). Weights are stored in float16 to fit the zoo's budget; `package_*` measure
what that costs (float32 against float16, on the same images).

`measure` scores a task-aware codec the way a user meets it: each Imagenette val image resized
to 96×96 goes through a real .saic file, and the classifier judges the decoded image; beside it,
the tdic base's .saic files, and JPEG, WebP and AVIF with each image encoded as the largest file
no larger than that image's .saic file (evaluation/baselines.py: so they never get more bytes;
an image whose lowest quality is still larger keeps it, and is counted). Paired 95 % CIs
(evaluation/statistics.py) compare the codec with each on the same images.
"""
import dataclasses
import io
import os
import shutil
import time
import zipfile

import h5py
import numpy as np
import tensorflow as tf

from saic_tf.codec import stages
from saic_tf.codec import zoo
from saic_tf.common import formats
from saic_tf.common import layout
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json, write_bytes, write_json
from saic_tf.common.run import Run
from saic_tf.data import datasets
from saic_tf.data.images import to_uint8
from saic_tf.deploy.file_codec import FileCodec
from saic_tf.evaluation import baselines
from saic_tf.evaluation import statistics
from saic_tf.experiments import model_zoo
from saic_tf.semantic import downstream
from saic_tf.semantic import own_model

BATCH = 64


def save_float16_keras(model, path):
  """Saves `model` as a .keras file whose float32 weights are stored as float16 (half the
  bytes), deflated. keras.models.load_model reads it as it is: the values go into the model's
  float32 variables."""
  buffer = io.BytesIO()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.keras"
  model.save(tmp)
  try:
    with zipfile.ZipFile(tmp) as archive:
      members = {name: archive.read(name) for name in archive.namelist()}
  finally:
    os.remove(tmp)
  weights = "model.weights.h5"
  source = h5py.File(io.BytesIO(members[weights]), "r")
  halved = io.BytesIO()
  with source, h5py.File(halved, "w") as target:
    def copy(group_in, group_out):
      for key, value in group_in.attrs.items():
        group_out.attrs[key] = value
      for key, item in group_in.items():
        if isinstance(item, h5py.Group):
          copy(item, group_out.create_group(key))
        else:
          data = item[()]
          group_out.create_dataset(
              key, data=data.astype(np.float16) if data.dtype == np.float32 else data)
    copy(source, target)
  members[weights] = halved.getvalue()
  with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
    for name, content in members.items():
      archive.writestr(name, content)
  return write_bytes(path, buffer.getvalue())


def labelled_split(dataset, split, data_dir, size, limit=0, holdout_every=0):
  """(uint8 images [N, size, size, 3], labels [N], class names) of a split, by the pipeline's
  resize path (the one the classifier was trained with)."""
  source = datasets.load(dataset, split, data_dir, holdout_every)
  images, labels = [], []
  for batch, batch_labels in datasets.eval_dataset(source, size, BATCH, limit=limit or None):
    images.append(to_uint8(batch).numpy())
    labels.append(batch_labels.numpy())
  return np.concatenate(images), np.concatenate(labels), source


def predictions(classifier, images):
  """Class indices of uint8 images [N, S, S, 3] (classifier: [0, 1] images -> scores)."""
  out = []
  for start in range(0, len(images), BATCH):
    batch = tf.image.convert_image_dtype(tf.constant(images[start:start + BATCH]), tf.float32)
    out.append(np.argmax(classifier(batch, training=False), axis=-1))
  return np.concatenate(out)


def _run_classifier(run):
  """(the Run, the classifier as it ships, what is known of it) of a fine-tune run: its trained
  downstream network ([0, 1] images), or the model file it was given (its own input)."""
  fine_tune = Run.at(run)
  config = fine_tune.config
  if not config.semantic:
    raise UserError(f"{run}: not a fine-tune run (--loss=apic|saic|kd): it has no classifier")
  if config.downstream_model:
    path = layout.downstream_model_path(config.downstream_model)
    model = own_model.load_keras(path)
    source = datasets.load(config.dataset, "train", config.data_dir, config.holdout_every)
    return fine_tune, model, dict(backbone=os.path.basename(path), image_size=config.image_size,
                                  class_names=source.class_names,
                                  feature_layer=config.feature_layer, epochs=None,
                                  test_accuracy=None, input=config.downstream_input)
  base = fine_tune.downstream_dir
  info = read_json(layout.downstream_info_path(base), "train its downstream network first")
  network = downstream.load(fine_tune.downstream.config, base, len(info["class_names"]))
  return fine_tune, network.classifier, dict(info, input="unit")


def package_classifier(run, name, command, settings=model_zoo.MeasureSettings(),
                       log=print):
  """Ships the downstream classifier of the fine-tune run `run` as `name`:
  <zoo>/<name>/classifier.keras (float16 weights) and record.json, with the test accuracy of
  the float32 and of the shipped float16 network on the same images."""
  zoo.check_new_name(name)
  fine_tune, classifier, info = _run_classifier(run)
  config = fine_tune.config
  target = layout.zoo_dir(name)
  tmp = target + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  path = save_float16_keras(classifier, os.path.join(tmp, layout.CLASSIFIER_FILE))
  shipped = own_model.load_keras(path)
  record = dict(
      name=name, kind="classifier", command=command, backbone=info["backbone"],
      input=info["input"], image_size=info["image_size"],
      classes=len(info["class_names"]), class_names=info["class_names"],
      display_names=_display_names(config),
      feature_layer=info["feature_layer"], parameters=int(classifier.count_params()),
      trained_on=dict(dataset=config.dataset, data_dir=config.data_dir, split="train",
                      holdout_every=config.holdout_every, epochs=info["epochs"]),
      weights="float16", bytes=os.path.getsize(path), sha256=own_model.sha256(path),
      test_accuracy_float32_as_trained=info["test_accuracy"], **_training_time(
          layout.part_dirs(fine_tune.downstream_dir, layout.DOWNSTREAM_DIR)[0]))
  if os.path.isdir(settings.imagenette_dir) and info["input"] == "unit":
    images, labels, _ = labelled_split("imagefolder", "test", settings.imagenette_dir,
                                       info["image_size"], settings.imagenette_images)
    record["float16_cost"] = dict(
        images=int(len(labels)), split="val",
        accuracy_float32=float(np.mean(predictions(classifier, images) == labels)),
        accuracy_float16=float(np.mean(predictions(shipped, images) == labels)))
    log(f"{name}: float16 cost {record['float16_cost']}")
  write_json(os.path.join(tmp, zoo.RECORD_FILE), formats.stamped(record))
  shutil.rmtree(target, ignore_errors=True)
  os.replace(tmp, target)
  return target


def _training_time(directory):
  """The CPU and wall seconds training spent, as recorded beside a part's checkpoints."""
  path = os.path.join(directory, layout.TRAINING_TIME_FILE)
  spent = read_json(path, "train the run again") if os.path.exists(path) else {}
  return dict(cpu_seconds=spent.get("cpu_seconds"), wall_seconds=spent.get("wall_seconds"))


def _display_names(config):
  source = datasets.load(config.dataset, "train", config.data_dir, config.holdout_every)
  return source.display_names or source.class_names


def package_codec(run, name, classifier, command, settings=model_zoo.MeasureSettings(),
                  log=print):
  """Ships the fine-tuned stage of `run` (from a shipped tdic-* base) as `name`, for the shipped
  classifier `classifier`: float16 weights, the stage's entropy model, record.json (the
  command, the fine-tune's CPU time, what float16 costs in PSNR and bits) and config.json
  (written last: a directory without it is no shipped codec)."""
  zoo.check_new_name(name)
  fine_tune = Run.at(run)
  config = fine_tune.config
  if not config.semantic or not zoo.check_name(config.init_from):
    raise UserError(f"{run}: a task-aware codec is a fine-tune (--loss=apic|saic|kd) of a "
                    "shipped codec (--init_from=tdic-...)")
  clf_path = layout.zoo_classifier_path(classifier)
  if not os.path.exists(clf_path):
    raise UserError(f"--classifier={classifier}: not a shipped classifier "
                    f"({', '.join(zoo.classifier_names()) or 'none'})")
  clf_record = zoo.record(classifier)
  stage = config.loss
  checkpoint = layout.latest_complete_checkpoint(layout.stage_dir(run, stage),
                                                 config.finetune_steps, stage.upper())
  trained = stages.load_stage(fine_tune, stage)
  target = layout.zoo_dir(name)
  tmp = target + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  step = layout.checkpoint_step(checkpoint)
  stages.save_float16(trained.codec, config, layout.stage_dir(tmp, stage), step)
  shutil.copyfile(layout.entropy_model_path(os.path.dirname(checkpoint)),
                  layout.entropy_model_path(layout.stage_dir(tmp, stage)))
  shipped_config = dataclasses.replace(
      config, model_dir=name, dataset="sample", data_dir="", cache=False, holdout_every=0,
      downstream_from="", downstream_model=classifier, downstream_sha256=clf_record["sha256"],
      downstream_input=clf_record["input"],
      feature_layer=clf_record["feature_layer"] if not config.feature_layer else
      config.feature_layer)
  shipped_config.write(tmp)
  half = stages.load_stage(Run.at(tmp, shipped_config), stage)
  record = dict(
      name=name, kind="task-aware codec", command=command, method=stage,
      gsw=dict(variant=config.gsw, scale=config.gsw_scale, tau=config.tau)
      if stage == "saic" else None,
      base=config.init_from, classifier=classifier, bpp=config.bpp, filters=config.filters,
      stride=config.stride, steps=config.finetune_steps,
      learning_rate=config.finetune_learning_rate or config.learning_rate,
      trained_on=dict(dataset=config.dataset, data_dir=config.data_dir, split="train",
                      holdout_every=config.holdout_every, image_size=config.image_size),
      **_training_time(os.path.dirname(checkpoint)), weights="float16",
      fingerprint=half.fingerprint.hex())
  if os.path.isdir(settings.imagenette_dir):
    images, _, _ = labelled_split("imagefolder", "test", settings.imagenette_dir,
                                  config.image_size, settings.imagenette_images)
    record["float16_cost"] = dict(float16_cost(trained.codec, half.codec, images),
                                  split="val")
    log(f"{name}: float16 cost {record['float16_cost']}")
  write_json(os.path.join(tmp, zoo.RECORD_FILE), formats.stamped(record))
  shutil.rmtree(target, ignore_errors=True)
  os.replace(tmp, target)
  return target


def float16_cost(codec32, codec16, images):
  """What float16 weights change, on uint8 images (the network alone: bits and PSNR): the
  mean PSNR of each, and the fraction of latent bits the two codecs agree on."""
  psnr, equal, total = {"float32": [], "float16": []}, 0, 0
  for start in range(0, len(images), BATCH):
    batch = tf.constant(images[start:start + BATCH])
    floats = tf.image.convert_image_dtype(batch, tf.float32)
    bits = {}
    for kind, codec in (("float32", codec32), ("float16", codec16)):
      bits[kind] = codec.encode(floats)
      decoded = to_uint8(codec.decode(bits[kind], batch.shape[1], batch.shape[2]))
      psnr[kind].extend(tf.image.psnr(batch, decoded, max_val=255).numpy().tolist())
    equal += int(tf.reduce_sum(tf.cast(bits["float32"] == bits["float16"], tf.int64)))
    total += int(tf.size(bits["float32"]))
  return dict(images=int(len(images)), psnr_float32=float(np.mean(psnr["float32"])),
              psnr_float16=float(np.mean(psnr["float16"])), latent_bits_equal=equal / total)


def _through(codec: FileCodec, images):
  """(decoded uint8 images, real bpp of each .saic file)."""
  decoded, bpp = [], []
  for image in images:
    content = codec.compress(image)
    decoded.append(codec.decompress(content))
    bpp.append(8 * len(content) / (image.shape[0] * image.shape[1]))
  return np.stack(decoded), np.array(bpp)


def _at_bytes(images, codec_name, bpp_per_image):
  """Each image as the largest `codec_name` file within its given bpp: (decoded, bpp, over)."""
  decoded, bpp, over = [], [], 0
  for image, target in zip(images, bpp_per_image):
    encoded = baselines.encode_at_bpp(image, codec_name, target)
    decoded.append(baselines.decode(encoded.data))
    bpp.append(encoded.bpp)
    over += not encoded.within_target
  return np.stack(decoded), np.array(bpp), over


def task_codec(name):
  """(config, codec, its tdic base, its classifier) of the shipped task-aware codec `name`."""
  directory = zoo.check_name(name)
  if zoo.record(name).get("kind") != "task-aware codec":
    raise UserError(f"{name}: not a task-aware codec (bin/models lists them)")
  run = Run.at(directory)
  config = run.config
  return (config, FileCodec(run), FileCodec(zoo.check_name(config.init_from)),
          downstream.own(config).classifier)


def accuracy_on(name, dataset="sample", split="test", data_dir="", limit=0, log=print,
                parts=None):
  """accuracy_at_same_bytes of the shipped task-aware codec `name` on a split at its size
  (`parts`: task_codec(name), when the caller has it loaded already)."""
  config, codec, base, classifier = parts or task_codec(name)
  images, labels, _ = labelled_split(dataset, split, data_dir, config.image_size, limit)
  return accuracy_at_same_bytes(codec, base, classifier, images, labels, config.init_from,
                                log=log)


def measure(name, settings=model_zoo.MeasureSettings(), log=print):
  """The figures of the task-aware codec `name` (module doc), written into its record.json:
  accuracy through real files on the sample's val images (Imagenette val, which no shipped
  network trained on) and on Imagenette-96 val, beside its tdic base and JPEG/WebP/AVIF at the
  same bytes; Kodak PSNR and real bpp."""
  parts = task_codec(name)  # loaded once for every split measured
  record = zoo.record(name)
  start = time.time()
  figures = dict(record.get("figures", {}))
  figures["sample96"] = accuracy_on(name, log=log, parts=parts)
  if os.path.isdir(settings.imagenette_dir):
    figures["imagenette96"] = accuracy_on(name, "imagefolder", "test", settings.imagenette_dir,
                                          settings.imagenette_images, log=log, parts=parts)
  else:
    log(f"{name}: --imagenette_dir={settings.imagenette_dir} not found: its figures "
        f"{'kept as recorded' if 'imagenette96' in figures else 'not measured'}")
  if os.path.isdir(settings.kodak_dir):
    photos = model_zoo.kodak_photos(settings.kodak_dir)
    figures["kodak"] = model_zoo.measure_images(parts[1], photos)
    log(f"{name}: kodak {figures['kodak']}")
  figures["seconds"] = round(time.time() - start, 1)
  write_json(os.path.join(layout.zoo_dir(name), zoo.RECORD_FILE), dict(record, figures=figures))
  return figures


def accuracy_at_same_bytes(codec, base, classifier, images, labels, base_name="tdic",
                           codecs=tuple(baselines.CODECS), log=print):
  """The classifier's accuracy on `images` (uint8) and through each method (module doc), with
  each method's mean real bpp and the paired comparison of the codec against each."""
  correct, rows = {}, {}
  correct["original"] = predictions(classifier, images) == labels
  rows["original"] = dict(accuracy=float(np.mean(correct["original"])))
  decoded, bpp = _through(codec, images)
  correct["codec"] = predictions(classifier, decoded) == labels
  rows["codec"] = dict(accuracy=float(np.mean(correct["codec"])), bpp=float(np.mean(bpp)))
  log(f"  codec: accuracy {rows['codec']['accuracy']:.4f} at {rows['codec']['bpp']:.4f} bpp")
  base_decoded, base_bpp = _through(base, images)
  correct[base_name] = predictions(classifier, base_decoded) == labels
  rows[base_name] = dict(accuracy=float(np.mean(correct[base_name])),
                         bpp=float(np.mean(base_bpp)))
  for name in codecs:
    other, other_bpp, over = _at_bytes(images, name, bpp)
    correct[name] = predictions(classifier, other) == labels
    rows[name] = dict(accuracy=float(np.mean(correct[name])), bpp=float(np.mean(other_bpp)),
                      images_over_budget=int(over))
    log(f"  {name}: accuracy {rows[name]['accuracy']:.4f} at {rows[name]['bpp']:.4f} bpp "
        f"({over} images over the .saic file's bytes)")
  paired = {other: statistics.compare(correct["codec"], correct[other])
            for other in correct if other != "codec"}
  return dict(images=int(len(labels)), size=int(images.shape[1]), rows=rows,
              codec_minus={k: dict(difference=v["difference"], ci95=v["ci95"],
                                   mcnemar_p=v["mcnemar_p"]) for k, v in paired.items()})


def table():
  """bin/models' lines for the shipped classifiers and the task-aware codecs."""
  lines = []
  for name in zoo.classifier_names():
    record = zoo.record(name)
    cost = record.get("float16_cost")
    accuracy = (f"val accuracy {100 * cost['accuracy_float16']:.2f} % (float32 "
                f"{100 * cost['accuracy_float32']:.2f} %, {cost['images']} images)" if cost
                else "not measured")
    lines.append(f"{name:12s} classifier: {record['backbone']} at {record['image_size']}x"
                 f"{record['image_size']}, {record['classes']} classes, {accuracy}")
  for name in zoo.names():
    record = zoo.record(name)
    if record.get("kind") != "task-aware codec":
      continue
    figures = record.get("figures", {})
    key = "imagenette96" if "imagenette96" in figures else "sample96"
    lines.append(f"{name:12s} {record['method']} of {record['base']} for {record['classifier']}"
                 f": {accuracy_cell(figures.get(key), SPLIT_NAMES[key])}")
  return lines


SPLIT_NAMES = dict(imagenette96="Imagenette-96 val", sample96="the sample's val images at 96x96")


def accuracy_cell(figures, split):
  """Accuracy through the codec and the others at the same bytes, in one line."""
  if not figures:
    return "not measured"
  rows = figures["rows"]
  parts = [f"{k} {100 * v['accuracy']:.1f} % @ {v['bpp']:.3f} bpp" for k, v in rows.items()
           if k not in ("original", "codec")]
  return (f"{split} ({figures['images']} images): original "
          f"{100 * rows['original']['accuracy']:.1f} %, this codec "
          f"{100 * rows['codec']['accuracy']:.1f} % @ {rows['codec']['bpp']:.3f} bpp; "
          + ", ".join(parts))


def gain_lines(name, figures):
  """What accuracy_on measured, as the lines bin/demo prints."""
  rows, minus = figures["rows"], figures["codec_minus"]
  lines = [f"{figures['images']} images at {figures['size']}x{figures['size']}, the shipped "
           f"classifier's accuracy:",
           f"  {'original images':34s} {100 * rows['original']['accuracy']:5.1f} %"]
  for key, row in rows.items():
    if key == "original":
      continue
    label = name if key == "codec" else (f"{key} (its base)" if key.startswith("tdic") else
                                         f"{key.upper()} at the same bytes")
    over = row.get("images_over_budget")
    note = f", {over} images over: its smallest file is larger" if over else ""
    diff = "" if key == "codec" else (
        f"   {name} − this: {100 * minus[key]['difference']:+.1f} points "
        f"[{100 * minus[key]['ci95'][0]:+.1f}, {100 * minus[key]['ci95'][1]:+.1f}]")
    lines.append(f"  {label:34s} {100 * row['accuracy']:5.1f} % at {row['bpp']:.3f} bpp"
                 f"{note}{diff}")
  return lines
