"""The formats of the project's own JSON files, and the one place that reads older ones.

config.json (config.py), gsw.json (semantic/gsw.py) and a shipped model's record.json
(codec/zoo.py) say which format they are written in: `format_version`, an integer, VERSION as
this code writes them (`stamped`), 1 for a file without it. Every reader passes what it read
through `upgrade` (`read` does both), which returns the record in today's format, or refuses a
version newer than this code knows in one line naming the file. So the rest of the code knows
one format of each file, and what older files meant is said here alone:

  version 1 -> 2   what a file meant by a setting it does not carry is the value the setting
                   had before it existed (V1_MEANINGS): config.json --gsw=paper,
                   --gsw_scale=raw, --holdout_every=0; gsw.json the same, and W averaged over
                   the split's first batches (gsw_images); record.json nothing.

Version-1 config.json files were also written while the defaults of --gsw and --gsw_scale were
the paper's (V1_DEFAULTS): a run made with them resumes only with them given as flags, which
the refusal says (`earlier_defaults`, TrainConfig.write_or_check). A version-1 config.json of a
run that is not SAIC may say --gsw_output=probs, since refused: GSW settings are not compared
for such a run.

The experiments' files carry no version, since `--collect_only` rewrites results/ byte for
byte; `upgrade` fills in what their earlier writers left out (FILLS): a root's selection.json
without KD's weight (KD trained on KL alone), a RESULTS/kodak.json without the codecs' PSNR
beside the learned points (none), a timings.json total without its number of runs (the other
entries), a RESULTS/results.json without APIC paired with its base (none).
"""
from saic_tf.common.errors import UserError
from saic_tf.common.files import read_json

KEY = "format_version"
VERSION = 2  # of config.json, gsw.json and record.json as this code writes them
_V1_SETTINGS = dict(gsw="paper", gsw_scale="raw", holdout_every=0)
V1_MEANINGS = dict(config=_V1_SETTINGS,
                   gsw=dict(_V1_SETTINGS, gsw_images="the first batches of the split"),
                   record={})
V1_DEFAULTS = dict(gsw="paper", gsw_scale="raw")  # until GSW was chosen on validation
TOTAL = "total"  # timings.json's entry that sums the others (experiments/executor.py)


def _missing(record, **values):
  """`record` with `values` added for the keys it lacks (its own keys keep their order)."""
  return dict(record, **{k: v for k, v in values.items() if k not in record})


def _timings(record):
  total = record.get(TOTAL)
  if total is None or "runs" in total:
    return record
  return dict(record, **{TOTAL: dict(total, runs=len(record) - 1)})


FILLS = dict(
    selection=lambda record: _missing(record, kd_validation_accuracy={},
                                      chosen_kd_feature_weight=0.0),
    kodak=lambda record: _missing(record, beside={
        method: [{} for _ in points] for method, points in record["learned"].items()}),
    timings=_timings,
    results=lambda record: dict(record, blocks=[_missing(block, paired_base=[])
                                                for block in record["blocks"]]))


def version(record, path):
  """The format version of `record` (read from `path`): 1 without the key; a UserError naming
  the file for anything but a JSON object of a version this code reads."""
  if not isinstance(record, dict):
    raise UserError(f"{path}: not a JSON object")
  found = record.get(KEY, 1)
  if isinstance(found, bool) or not isinstance(found, int) or found < 1:
    raise UserError(f"{path}: {KEY} {found!r} is not a version (an integer from 1)")
  if found > VERSION:
    raise UserError(f"{path}: {KEY} {found} is newer than this saic-tf reads (up to "
                    f"{VERSION}); use the saic-tf that wrote it, or a newer one")
  return found


def stamped(record):
  """`record` as written today: `format_version` first, then its own keys."""
  return dict({KEY: VERSION}, **{k: v for k, v in record.items() if k != KEY})


def upgrade(kind, record, path):
  """`record`, read from `path`, in today's format of its `kind` (module doc): config, gsw and
  record come back stamped with VERSION; selection, kodak, timings and results unstamped."""
  found = version(record, path)
  if kind in V1_MEANINGS:
    return stamped(_missing(record, **V1_MEANINGS[kind]) if found == 1 else record)
  return FILLS[kind](record) if record else record  # an empty one holds nothing to fill


def read(kind, path, remedy):
  """The record in `path` in today's format (`upgrade`); one-line errors as read_json's."""
  return upgrade(kind, read_json(path, remedy), path)


def earlier_defaults(record, path):
  """{setting: value} of the defaults that were others while config.json files of `record`'s
  version were written (V1_DEFAULTS for version 1), with their values then."""
  return dict(V1_DEFAULTS) if version(record, path) == 1 else {}
