"""bin/_bootstrap.py: the venv set-up that bin/demo, bin/test and bin/train share."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bin"))
import _bootstrap  # noqa: E402


def test_supported_pythons():
  assert _bootstrap.supported((3, 11, 7)) and _bootstrap.supported((3, 9))
  assert not _bootstrap.supported((3, 12)) and not _bootstrap.supported((3, 8, 1))


def test_another_python_fails_with_one_clear_line(monkeypatch, capsys):
  monkeypatch.setattr(_bootstrap, "SUPPORTED", ((3, 7),))  # as if this Python were unsupported
  monkeypatch.setenv("PATH", "/nonexistent")
  monkeypatch.delenv("SAIC_PYTHON", raising=False)
  with pytest.raises(SystemExit) as exit_info:
    _bootstrap.find_base_python()
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "needs Python 3.7" in err and "SAIC_PYTHON" in err


def test_a_ready_venv_is_not_reinstalled(monkeypatch):
  if not os.path.exists(_bootstrap.STAMP):
    pytest.skip("not running inside the bootstrapped .venv")
  calls = []
  real_run = subprocess.run

  def recording_run(cmd, *args, **kwargs):
    calls.append(cmd)
    return real_run(cmd, *args, **kwargs)

  monkeypatch.setattr(_bootstrap.subprocess, "run", recording_run)
  _bootstrap.ensure_venv()
  assert not any("pip" in part for cmd in calls for part in cmd), calls
