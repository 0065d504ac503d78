"""The one way a checkpoint is restored: every saved object matched, or one line that names the
checkpoint and why (training, the downstream network, compress and export all come here)."""
import tensorflow as tf

from saic_tf.common.errors import first_line, UserError


def restore(checkpoint, path, partial=False):
  """checkpoint.restore(path), every saved object matched; a damaged checkpoint, or one of
  another configuration (other bpp, backbone, ...), is a UserError naming it and the cause."""
  try:
    status = checkpoint.restore(path).assert_existing_objects_matched()
  except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as e:
    raise UserError(f"{path}: cannot restore ({first_line(e)}); the checkpoint is damaged or "
                    "was written by another configuration: move it away to retrain that "
                    "part") from None
  if partial:  # e.g. a codec alone from a checkpoint that also holds its optimizer
    status.expect_partial()
  return status
