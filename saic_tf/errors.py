"""The one exception type that bin/ commands turn into a single `error: ...` line."""


class UserError(Exception):
  """Bad input from the user (a flag, a file, a directory): the message says which and why."""
