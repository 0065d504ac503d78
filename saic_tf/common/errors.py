"""The one exception type that bin/ commands turn into a single `error: ...` line."""


class UserError(Exception):
  """Bad input from the user (a flag, a file, a directory): the message says which and why."""


def first_line(error, limit=300, default="unreadable"):
  """The first line of an exception's text, at most `limit` characters: what a one-line
  UserError quotes of a library's error (for a TensorFlow error, the first line of its
  message)."""
  return (str(error).strip().splitlines() or [default])[0][:limit]
