"""bin/bench: speed and memory of training and of the codec, measured in one run on one machine,
written to BENCHMARKS.md. Figures are measured, never asserted; ratios compare numbers taken in
the same run.

FLOPs: the forward pass of each network is counted by TensorFlow's profiler on its graph; a
training step is estimated from it the usual way: the codec (trained) costs 3× its forward pass
(forward, input gradients, weight gradients); the frozen downstream network of APIC/SAIC runs
forward on x and on x' and back to x' only (input gradients, no weight gradients): 3× its
forward pass.
"""
import dataclasses
import datetime
import multiprocessing
import os
import platform
import resource
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow import keras

from saic_tf.codec import bitstream
from saic_tf.codec import networks
from saic_tf.common.files import write_bytes, write_json
from saic_tf.data import datasets
from saic_tf.data.images import to_uint8
from saic_tf.deploy import serving
from saic_tf.deploy import tflite
from saic_tf.evaluation import baselines
from saic_tf.semantic import backbones
from saic_tf.semantic import losses
from saic_tf.training.codec_trainer import CodecTrainer


@dataclasses.dataclass
class BenchSettings:
  dataset: str = "sample"
  data_dir: str = ""
  image_size: int = 96
  batch_size: int = 32
  bpp: float = 0.25  # the shipped codecs' architecture (flags/zoo.cfg), the one users run
  stride: int = 8
  filters: int = 64
  backbones: tuple = ("resnet18", "vgg16", "resnet50", "mobilenet_v2", "efficientnet_b0")
  steps: int = 10  # timed train steps (after two warm-up steps)
  large_size: tuple = (512, 768)  # height, width of the "large" latency image
  images: int = 8  # real images per latency measurement
  input_batches: int = 30  # batches timed for tf.data alone


def _timed(function, repeats):
  function()  # warm-up: tracing, allocation
  start = time.perf_counter()
  for _ in range(repeats):
    function()
  return (time.perf_counter() - start) / repeats


def machine_info():
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  gpus = tf.config.list_physical_devices("GPU")
  return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu,
          "cores": os.cpu_count(), "memory_gib": round(memory, 1),
          "gpus": len(gpus), "python": platform.python_version(), "tensorflow": tf.__version__}


def matmul_gflops(n=2048, repeats=5):
  """Achieved GFLOP/s of a float32 n×n matmul: the machine's reference for the train steps."""
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  multiply = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  return 2 * n**3 / _timed(lambda: multiply().numpy(), repeats) / 1e9


def forward_flops(model, input_shape):
  """FLOPs of one forward pass of a Keras model (TF profiler on its graph)."""
  function = tf.function(lambda x: model(x, training=False))
  graph = function.get_concrete_function(tf.TensorSpec(input_shape, tf.float32)).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def _train_step_seconds(model, images, settings, **compile_args):
  model.compile(optimizer=keras.optimizers.Adam(1e-5), **compile_args)
  model.train_on_batch(images)
  model.train_on_batch(images)  # warm-up (tracing, first allocations)
  start = time.perf_counter()
  for _ in range(settings.steps):
    model.train_on_batch(images)
  return (time.perf_counter() - start) / settings.steps


def training(settings: BenchSettings, images, reference_gflops, log):
  """Rows of train-step throughput per backbone and objective, with FLOP estimates."""
  size = settings.image_size
  shape = [settings.batch_size, size, size, 3]
  codec = networks.build_codec(settings)
  codec_flops = forward_flops(codec, shape)
  rows = []
  tdic = CodecTrainer(codec, networks.pixel_mse)
  seconds = _train_step_seconds(tdic, images, settings)
  rows.append(dict(objective="TDIC", backbone="–", seconds=seconds, flops=3 * codec_flops))
  log(f"train TDIC: {settings.batch_size / seconds:.1f} img/s")
  for name in settings.backbones:
    classifier = backbones.freeze(backbones.build_classifier(name, size, num_classes=10))
    features, _ = backbones.split(classifier, backbones.DEFAULT_FEATURE_LAYERS[name])
    flops = 3 * codec_flops + 3 * forward_flops(features, shape)
    channels = features.output_shape[-1]
    for objective, weights in (("APIC", np.ones(channels)),
                               ("SAIC", np.random.default_rng(0).dirichlet(
                                   np.ones(channels)) * channels)):
      model = CodecTrainer(networks.build_codec(settings),
                           losses.feature_distortion(features, weights))
      seconds = _train_step_seconds(model, images, settings)
      rows.append(dict(objective=objective, backbone=name, seconds=seconds, flops=flops))
      log(f"train {objective} {name}: {settings.batch_size / seconds:.1f} img/s")
  for row in rows:
    row["images_per_second"] = settings.batch_size / row["seconds"]
    row["gflops_per_second"] = row["flops"] / row["seconds"] / 1e9
    row["of_matmul"] = row["gflops_per_second"] / reference_gflops
    row["vs_tdic"] = row["seconds"] / rows[0]["seconds"]
  return rows


def has_float16_arithmetic(cpuinfo_path="/proc/cpuinfo"):
  """Whether mixed_float16 runs natively here: a GPU, or a CPU with float16 arithmetic
  (AVX512-FP16 or AMX-FP16). Elsewhere TensorFlow emulates it, some 100x slower than float32."""
  if tf.config.list_physical_devices("GPU"):
    return True
  try:
    with open(cpuinfo_path) as f:
      flags = f.read().split()
  except OSError:
    return False
  return "avx512_fp16" in flags or "amx_fp16" in flags


def speed_features(settings: BenchSettings, images, log):
  """TDIC step time with each speed feature against plain float32 (this machine);
  mixed_float16 only where it runs natively (has_float16_arithmetic: minutes for nothing
  elsewhere)."""
  variants = [("float32 (baseline)", None, {}), ("--jit (XLA)", None, dict(jit_compile=True)),
              ("--steps_per_execution=8", None, dict(steps_per_execution=8)),
              ("--mixed_precision=mixed_bfloat16", "mixed_bfloat16", {}),
              ("--mixed_precision=mixed_float16", "mixed_float16", {})]
  if not has_float16_arithmetic():
    log("speed feature --mixed_precision=mixed_float16: not timed (no float16 arithmetic on "
        "this CPU: TensorFlow emulates it)")
    variants = [v for v in variants if v[1] != "mixed_float16"]
  rows = []
  for name, policy, compile_args in variants:
    keras.mixed_precision.set_global_policy(policy or "float32")
    try:
      model = CodecTrainer(networks.build_codec(settings),
                           networks.pixel_mse)
      optimizer = keras.optimizers.Adam(1e-5)
      if policy == "mixed_float16":
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
      per_call = compile_args.get("steps_per_execution", 1)
      steps = per_call * -(-settings.steps // per_call)  # whole executions
      if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        steps = min(steps, 2)  # a CPU's float16 flags do not promise the wheel uses them
      model.compile(optimizer=optimizer, **compile_args)
      # One batch repeated: nothing for tf.data's autotuner to tune. With it on, a run on this
      # 2-core machine timed these rows at about half the rate of the same steps by
      # train_on_batch above, and a one-off probe saw ~2 s per fit call outside its steps.
      options = tf.data.Options()
      options.autotune.enabled = False
      dataset = tf.data.Dataset.from_tensors(images).repeat().with_options(options)
      model.fit(dataset, steps_per_epoch=per_call, verbose=0)  # warm-up (tracing)
      start = time.perf_counter()
      model.fit(dataset, steps_per_epoch=steps, verbose=0)
      seconds = (time.perf_counter() - start) / steps
    finally:
      keras.mixed_precision.set_global_policy("float32")
    rows.append(dict(feature=name, seconds=seconds, steps=steps))
    log(f"speed feature {name}: {settings.batch_size / seconds:.1f} img/s")
  for row in rows:
    row["images_per_second"] = settings.batch_size / row["seconds"]
    row["speedup"] = rows[0]["seconds"] / row["seconds"]
  return rows


def input_pipeline(settings: BenchSettings, source):
  """Images per second of the tf.data training pipeline alone."""
  batches = iter(datasets.train_dataset(source, settings.image_size, settings.batch_size, seed=0))
  next(batches)
  start = time.perf_counter()
  for _ in range(settings.input_batches):
    next(batches)
  return settings.input_batches * settings.batch_size / (time.perf_counter() - start)


def saved_model_signatures(codec, directory):
  """(encode, decode): the codec's serving signatures, saved into `directory` and loaded back
  (their shapes are free: one SavedModel serves every size timed)."""
  module = serving.ServingCodec(codec)
  tf.saved_model.save(module, directory, signatures={"encode": module.encode,
                                                     "decode": module.decode})
  loaded = tf.saved_model.load(directory)
  return loaded.signatures["encode"], loaded.signatures["decode"]


def codec_latency(settings: BenchSettings, images_uint8, codec, signatures, log):
  """Per-image latency of each way to code the images, at the codec's nominal bpp
  (`signatures`: saved_model_signatures of the codec)."""
  height, width = images_uint8[0].shape[:2]
  encode, decode = signatures
  with tempfile.TemporaryDirectory() as tmp:
    tflite_path = os.path.join(tmp, tflite.TFLITE_FLOAT)
    with open(tflite_path, "wb") as f:
      f.write(tflite.tflite_decoder(codec.decoder))
    floats = [tf.image.convert_image_dtype(image[None], tf.float32) for image in images_uint8]
    latents = [codec.encode(x).numpy().astype(np.int32)[0] for x in floats]
    int8_path = os.path.join(tmp, tflite.TFLITE_INT8)
    with open(int8_path, "wb") as f:
      f.write(tflite.tflite_decoder(codec.decoder, np.stack(latents).astype(np.float32)))
    tflite_float, tflite_int8 = tflite.TFLiteDecoder(tflite_path), tflite.TFLiteDecoder(int8_path)
    model = bitstream.fit_entropy_model(np.stack(latents), steps=200)
    payloads = [bitstream.encode_bits(bits, model) for bits in latents]
    encoded = [encode(image=tf.constant(image)) for image in images_uint8]
    timed = tflite.seconds_per_call
    rows = [
        ("SavedModel encode", timed(lambda i: encode(image=tf.constant(i)), images_uint8, 2)),
        ("SavedModel decode", timed(lambda e: decode(**e), encoded, 2)),
        (f"TFLite decode (float32, {os.cpu_count()} threads)",
         timed(lambda b: tflite_float(b[None]), latents, 2)),
        (f"TFLite decode (int8, {os.cpu_count()} threads)",
         timed(lambda b: tflite_int8(b[None]), latents, 2)),
        (".saic entropy encode", timed(lambda b: bitstream.encode_bits(b, model), latents, 2)),
        (".saic entropy decode", timed(lambda p: bitstream.decode_bits(p[0], p[1].shape, model),
                                       list(zip(payloads, latents)), 2))]
  bpp = float(codec.nominal_bpp(height, width))
  for name in baselines.CODECS:
    files = [baselines.encode_at_bpp(image, name, bpp) for image in images_uint8]
    rows.append((f"{name.upper()} encode", timed(
        lambda p: baselines.encode(p[0], name, p[1].quality), list(zip(images_uint8, files)),
        2)))
    rows.append((f"{name.upper()} decode", timed(lambda f: baselines.decode(f.data), files, 2)))
  log(f"latency {height}x{width}: done")
  reference = dict(rows)["SavedModel decode"]
  return [dict(what=what, ms=1e3 * seconds, vs_savedmodel_decode=seconds / reference)
          for what, seconds in rows]


def _peak_memory_child(kind, settings, queue):
  """Runs in a fresh process: one workload, then reports the process's peak RSS (MiB)."""
  codec = networks.build_codec(settings)
  if kind == "train":
    images = tf.random.uniform([settings.batch_size, settings.image_size,
                                settings.image_size, 3])
    model = CodecTrainer(codec, networks.pixel_mse)
    model.compile(optimizer=keras.optimizers.Adam(1e-5))
    for _ in range(3):
      model.train_on_batch(images)
  else:
    height, width = settings.large_size
    bits = tf.cast(tf.random.uniform([1, height // settings.stride, width // settings.stride,
                                      codec.channels]) > 0.5,
                   tf.float32)
    codec.decode(bits, height, width)
  queue.put(_peak_rss_mib())


def _peak_rss_mib():
  """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
  fork and exec, so a spawned child would report its parent's peak."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(settings: BenchSettings):
  """Peak resident memory of a TDIC training step and of decoding one large image, each in a
  fresh process (MiB, including TensorFlow itself)."""
  context = multiprocessing.get_context("spawn")
  result = {}
  for kind in ("train", "decode"):
    queue = context.Queue()
    process = context.Process(target=_peak_memory_child, args=(kind, settings, queue))
    process.start()
    result[kind] = queue.get(timeout=900)
    process.join()
  return result


def run(settings: BenchSettings, log=print):
  """Every measurement; returns the record that `markdown` renders."""
  record = dict(settings=dataclasses.asdict(settings), machine=machine_info())
  record["matmul_gflops"] = matmul_gflops()
  log(f"matmul: {record['matmul_gflops']:.1f} GFLOP/s")
  source = datasets.load(settings.dataset, "train", settings.data_dir)
  images = next(iter(datasets.train_dataset(source, settings.image_size, settings.batch_size,
                                        seed=0)))[0]
  record["training"] = training(settings, images, record["matmul_gflops"], log)
  record["speed_features"] = speed_features(settings, images, log)
  record["input_images_per_second"] = input_pipeline(settings, source)
  record["cached_input_images_per_second"] = input_pipeline(
      settings, datasets.cached(source, settings.image_size))
  record["input_vs_train"] = record["input_images_per_second"] / max(
      r["images_per_second"] for r in record["training"])
  log(f"tf.data alone: {record['input_images_per_second']:.1f} img/s")
  test = datasets.load(settings.dataset, "test", settings.data_dir)
  codec = networks.build_codec(settings)
  record["latency"] = {}
  with tempfile.TemporaryDirectory() as tmp:
    signatures = saved_model_signatures(codec, tmp)
    for size in ((settings.image_size, settings.image_size), tuple(settings.large_size)):
      real = datasets.eval_dataset(test, size, settings.images, limit=settings.images)
      images_uint8 = [to_uint8(x).numpy() for x in next(iter(real))[0]]
      record["latency"]["x".join(map(str, size))] = codec_latency(
          settings, images_uint8, codec, signatures, log)
  record["peak_memory_mib"] = peak_memory(settings)
  return record


def markdown(record):
  """BENCHMARKS.md from a `run` record."""
  s, m = record["settings"], record["machine"]
  lines = ["# Benchmarks", "",
           "Written by `bin/bench` (saic_tf/experiments/bench.py); every figure below was measured in the "
           "same run on the same machine. Re-run it to refresh them; numbers vary with the "
           "machine and its load.", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['gpus']} GPU; "
           f"Python {m['python']}, TensorFlow {m['tensorflow']}; {m['date']}.", "",
           f"Settings: {s['dataset']} images at {s['image_size']}×{s['image_size']}, batch "
           f"{s['batch_size']}, codec {s['bpp']} bpp with {s['filters']} filters, "
           f"{s['steps']} timed steps after 2 warm-up steps. Reference: a float32 2048×2048 "
           f"matmul ran at **{record['matmul_gflops']:.1f} GFLOP/s**.", "",
           "## Training throughput", "",
           "| objective | downstream network | img/s | ms/step | step / TDIC step | GFLOP/step "
           "(est.) | GFLOP/s | of matmul |", "|---|---|---|---|---|---|---|---|"]
  for r in record["training"]:
    lines.append(f"| {r['objective']} | {r['backbone']} | {r['images_per_second']:.1f} | "
                 f"{1e3 * r['seconds']:.0f} | {r['vs_tdic']:.2f} | {r['flops'] / 1e9:.1f} | "
                 f"{r['gflops_per_second']:.1f} | {100 * r['of_matmul']:.0f} % |")
  lines += ["", "FLOPs per step are estimates (module doc of saic_tf/experiments/bench.py): 3× the codec's "
            "forward pass, plus 3× the frozen network's for APIC/SAIC. APIC and SAIC steps cost "
            "the same: W' is a constant computed once.", "",
            "## Speed features (TDIC step)", "",
            "| setting | img/s | speed-up | timed steps |", "|---|---|---|---|"]
  for r in record["speed_features"]:
    lines.append(f"| {r['feature']} | {r['images_per_second']:.1f} | "
                 f"{r['speedup']:.2f}× | {r['steps']} |")
  if not any("float16" in r["feature"] and "bfloat16" not in r["feature"]
             for r in record["speed_features"]):
    lines += ["", "`--mixed_precision=mixed_float16` is not timed: this machine has no float16 "
              "arithmetic (no GPU, no AVX512-FP16 or AMX-FP16), and TensorFlow emulates it."]
  lines += ["", "## Input pipeline", "",
            f"tf.data alone (decode, resize, augment, batch): "
            f"**{record['input_images_per_second']:.0f} img/s**, "
            f"{record['input_vs_train']:.1f}× the fastest train step above "
            f"({'not ' if record['input_vs_train'] < 3 else ''}at least the 3× that keeps the "
            "input from being the bottleneck). With `--cache` (images decoded and resized "
            f"once): **{record['cached_input_images_per_second']:.0f} img/s**.", "",
            "## Codec latency per image", ""]
  for size, rows in record["latency"].items():
    lines += [f"**{size}** (real test images resized to this size; JPEG/WebP/AVIF at the "
              "codec's nominal bpp, each image's best quality within it):", "",
              "| what | ms/image | × SavedModel decode |", "|---|---|---|"]
    lines += [f"| {r['what']} | {r['ms']:.2f} | {r['vs_savedmodel_decode']:.2f} |"
              for r in rows]
    lines.append("")
  memory = record["peak_memory_mib"]
  lines += ["## Peak memory", "",
            f"Peak resident memory of a fresh process (TensorFlow included): TDIC training at "
            f"batch {s['batch_size']}, {s['image_size']}×{s['image_size']}: "
            f"**{memory['train']:.0f} MiB**; decoding one "
            f"{s['large_size'][0]}×{s['large_size'][1]} image: **{memory['decode']:.0f} MiB**.",
            ""]
  return "\n".join(lines)


def write(record, out):
  """Writes the Markdown report `out` and the JSON record beside it; returns both paths."""
  json_path = os.path.splitext(out)[0] + ".json"
  return [write_bytes(out, markdown(record).encode()), write_json(json_path, record)]
