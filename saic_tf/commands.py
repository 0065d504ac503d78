"""The user's commands by name: what the installed `saic <command>` and a checkout's
`bin/<command>` run (the bin/ scripts first make sure .venv exists, then call `run`).

Part of the CLI, like cli.py (which defines every flag): the library never imports it. The
checkout's experiment commands (bin/demo, bin/reproduce, bin/gsw_study, bin/ablate, bin/bench,
bin/test) need the repository (flagfiles, ../shared/data) and are not installed.
"""
import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probes) before it is imported, as bin/_bootstrap.py
# hides it; a TF_CPP_MIN_LOG_LEVEL of the user's own stays.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from saic_tf import cli  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

PROGRAM = "saic"


def _train(_):
  # pylint: disable=g-import-not-at-top
  from saic_tf.common import layout
  from saic_tf.training import trainer
  summary = trainer.train(cli.train_config_from_flags())
  metrics = summary["test_metrics"]
  print(f"\n{summary['stage']} finished at step {summary['step']}: test split PSNR "
        f"{metrics['psnr']:.2f} dB at {metrics['bpp']:g} bpp (nominal)")
  if cli.FLAGS.export and summary["chief"]:  # under multi_worker, the chief exports
    cli.export_from_flags(cli.FLAGS.model_dir)
  for what, path in layout.outputs(cli.FLAGS.model_dir):
    print(f"  {what + ':':20s} {path}")
  logs = os.path.join(cli.FLAGS.model_dir, layout.LOGS_DIR)
  print(f"  view the logs with:  tensorboard --logdir {logs}")


def _define_train():
  cli.define_train_flags()
  cli.define_export_flags(after_training=True)


def _evaluate(_):
  # pylint: disable=g-import-not-at-top
  from saic_tf.common import layout
  from saic_tf.evaluation import evaluate
  settings = cli.eval_settings_from_flags()
  evaluate.evaluate(cli.FLAGS.model_dir, settings)
  out_dir = settings.out_dir or cli.FLAGS.model_dir
  for name in (layout.EVAL_MARKDOWN, layout.EVAL_FILE, layout.GALLERY_FILE):
    print(layout.eval_path(out_dir, name))
  with open(layout.eval_path(out_dir, layout.EVAL_MARKDOWN)) as f:
    print("\n" + f.read())


def _report(argv):
  from saic_tf.evaluation import report  # pylint: disable=g-import-not-at-top
  for path in report.build(argv[1:], cli.FLAGS.out):
    print(path)


def _sweep_tau(_):
  from saic_tf.experiments import sweep  # pylint: disable=g-import-not-at-top
  taus = cli.numbers_from_flag("taus")
  settings = cli.quick_eval_settings_from_flags()
  seeds = cli.numbers_from_flag("seeds", kind=int) or None
  for path in sweep.run(cli.train_config_from_flags(), taus, settings, seeds):
    print(path)


def _define_sweep_tau():
  cli.define_train_flags()
  cli.define_quick_eval_flags()
  cli.define_sweep_flags()


def _file_codec():
  from saic_tf.deploy import file_codec  # pylint: disable=g-import-not-at-top
  return file_codec


def _compress(argv):
  file_codec = _file_codec()
  codec = file_codec.FileCodec(cli.FLAGS.model, cli.FLAGS.stage,
                               max_pixels=cli.FLAGS.max_pixels)
  failures, summary = file_codec.compress_files(codec, argv[1:], cli.FLAGS.o)
  if summary:
    print(summary)
  cli.exit_on_failures(failures)


def _decompress(argv):
  file_codec = _file_codec()
  codec = cli.FLAGS.model and file_codec.FileCodec(cli.FLAGS.model, cli.FLAGS.stage,
                                                   max_pixels=cli.FLAGS.max_pixels)
  cli.exit_on_failures(file_codec.decompress_files(codec or None, argv[1:], cli.FLAGS.o,
                                                   cli.FLAGS.max_pixels))


def _measure(argv):
  # pylint: disable=g-import-not-at-top
  from saic_tf.common.files import write_json
  from saic_tf.deploy import measure
  codec = _file_codec().FileCodec(cli.FLAGS.model, cli.FLAGS.stage,
                                  max_pixels=cli.FLAGS.max_pixels)
  record, failures = measure.measure(codec, argv[1:], model=cli.FLAGS.model)
  print(measure.summary(record))
  print(f"wrote {write_json(cli.FLAGS.out, record)}")
  cli.exit_on_failures(failures)


def _export(_):
  cli.export_from_flags(cli.export_model_from_flags(), stage=cli.FLAGS.stage)


def _models(_):
  print("\n".join(cli.models_from_flags()))


# name: (documentation, flag definitions, main, takes positional arguments)
COMMANDS = {
    "compress": ("""Images -> .saic files: `compress IN... --model=MODEL [-o OUT]`.

MODEL: a shipped codec's name (`models` lists them), a training run's MODEL_DIR or a `export`
directory. IN: image files or directories (any format Pillow reads: JPEG, PNG, WebP, AVIF,
TIFF, ...). OUT: a .saic file for one input, else a directory, where the tree under each input
directory is mirrored (photos/cat/x.png -> OUT/cat/x.saic); without -o, each file is written
beside its input (photo.jpg -> photo.saic), never over an existing one. Prints each file's
actual bpp beside the nominal C/s².
""", cli.define_file_codec_flags, _compress, True),
    "decompress": (""".saic files -> PNG images: `decompress IN.saic... [--model=MODEL] [-o OUT]`.

With -o DIR, the tree under each input directory is mirrored in DIR (IN/cat/x.saic ->
DIR/cat/x.png); without -o, each image is written beside its file (photo.saic -> photo.png),
never over an existing one.

--model may be left out for files made with a shipped codec (`models`): the file's
fingerprint names it.

A file made with another model, truncated, with a wrong magic or a flipped bit gives one clear
error line; no partial output file is left behind, and the exit code is not 0.
""", lambda: cli.define_file_codec_flags(decompress=True), _decompress, True),
    "measure": ("""A codec alone on any images: `measure IMAGE|DIR... --model=MODEL [--out=FILE.json]`.

Each image goes through a real .saic file and back; prints a line per image and a summary line
(mean PSNR, MS-SSIM, real and nominal bpp), and writes every figure, per image and mean, to
--out (default: measure.json in the current directory). MS-SSIM of an image too small for its
five scales uses as many as it holds (docs/saic-format.md#binmeasure).
""", lambda: cli.define_file_codec_flags(measure=True), _measure, True),
    "models": ("""The shipped models with their measured figures: `models` (as tfci.py models).

The tdic-* codecs (pixel MSE), the task-aware codecs fine-tuned for a shipped classifier, and
that classifier. `compress IMAGE --model=NAME` uses one with no training; `decompress FILE.saic`
finds it by the file's fingerprint; `train --init_from=NAME --loss=saic --tau=...` fine-tunes
one for your own classifier (--downstream_model). Maintainers: `--measure=all` measures them
again (Kodak, Imagenette-96 val, the shipped sample; real .saic files), `--package` ships a run.
""", cli.define_models_flags, _models, False),
    "train": ("""Trains a SAIC codec (paper Algorithm 1): `train --init_from=tdic-0.125 --loss=saic
--tau=0.5 --downstream_model=my_classifier.keras --dataset=imagefolder --data_dir=ROOT
--model_dir=DIR`.

Stages: downstream classifier (trained, or your own frozen model: --downstream_model), GSW,
TDIC (or a shipped base: --init_from), then APIC, SAIC or KD (--loss=tdic: TDIC only).
Re-running the same command resumes where it stopped. `--helpfull` lists every flag.
""", _define_train, _train, False),
    "evaluate": ("""Evaluates a trained run: `evaluate --model_dir=DIR` -> DIR/eval.json, eval.md.

Rows: the original images, each codec stage of the run, JPEG/WebP/AVIF at the same bpp;
columns: ACC, F1, PSNR, SSIM, MSE, feature MSE, bpp, SI (CLUB). Progress lines with an ETA go
to stderr. `--helpfull` lists every flag.
""", cli.define_eval_flags, _evaluate, False),
    "report": ("""Tables and figures from evaluated runs: `report DIR [DIR ...] --out=OUT`.

Writes OUT/results.md, OUT/results.csv, OUT/results.json and PNG figures (accuracy and PSNR
against the real bpp of the files, the τ sweep, the distribution of W', a gallery of
reconstructions with predicted labels).
""", cli.define_report_flags, _report, True),
    "export": ("""A trained run -> SavedModel for stock TF Serving and TFLite files:
`export --model_dir=DIR [--export_dir=OUT]` (or --model=DIR, or --model=NAME for a shipped
codec) writes OUT/<model_name>/<version>/ with the SavedModel, the TFLite encoders and decoders
(float32 and int8), and their parity with the Keras codec.
""", cli.define_export_flags, _export, False),
    "sweep_tau": ("""τ sweep (paper Fig. 4): `sweep_tau --taus=0.5,1,2,4,8,16,32 --model_dir=ROOT`.

Trains one base (downstream network, TDIC, APIC) in ROOT/apic, then a SAIC fine-tune per τ from
it (ROOT/saic_tau_<τ>), evaluates each and writes the report to ROOT/report. Takes every
train flag; re-running continues where it stopped.
""", _define_sweep_tau, _sweep_tau, False),
}


def run(name):
  """Runs command `name` with sys.argv's flags (absl; one `error:` line for bad input)."""
  doc, define, main, positional = COMMANDS[name]
  sys.modules["__main__"].__doc__ = doc  # absl's --help prints the main module's doc
  define()
  cli.run(main, positional=positional)


def usage():
  width = max(len(name) for name in COMMANDS)
  lines = [f"usage: {PROGRAM} <command> [flags]   ({PROGRAM} <command> --help for its flags)",
           "", "commands:"]
  lines += [f"  {name:{width}s}  {doc.splitlines()[0].split(':')[0]}"
            for name, (doc, _, _, _) in COMMANDS.items()]
  return "\n".join(lines)


def main():
  """The console script `saic` (setup.cfg): `saic <command> [flags]`."""
  if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help", "help"):
    print(usage())
    return 0 if len(sys.argv) >= 2 else 2
  name = sys.argv[1]
  if name not in COMMANDS:
    print(f"error: {PROGRAM} {name}: no such command; one of {', '.join(COMMANDS)}",
          file=sys.stderr)
    return 2
  sys.argv = [f"{PROGRAM} {name}"] + sys.argv[2:]
  run(name)
  return 0
