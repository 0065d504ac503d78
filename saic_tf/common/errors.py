"""The one exception type that bin/ commands turn into a single `error: ...` line."""


class UserError(Exception):
  """Bad input from the user (a flag, a file, a directory): the message says which and why."""


def first_line(error, limit=300, default="unreadable"):
  """The first line of an exception's text, at most `limit` characters: what a one-line
  UserError quotes of a library's error (for a TensorFlow error, the first line of its
  message)."""
  return (str(error).strip().splitlines() or [default])[0][:limit]


def user_error_inside(error):
  """The message of a UserError that a TensorFlow op raised from Python (tf.numpy_function in
  a tf.data pipeline: the image reader), or None: TensorFlow reports it as "...UserError: <the
  message>" followed by a traceback."""
  marker = "UserError: "
  text = str(error)
  if marker not in text:
    return None
  return text.split(marker, 1)[1].splitlines()[0].strip() or None
