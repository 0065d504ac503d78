"""Runs a bin/ command inside the project's virtual environment, creating it on first use.

Standard library only: this runs under whatever `python3` the user has, before TensorFlow exists.
The venv is (re)installed only when requirements.txt, setup.cfg or pyproject.toml change (their
hash is stamped into the venv), so running a command twice never reinstalls anything.
"""
import hashlib
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("SAIC_VENV", os.path.join(ROOT, ".venv"))
VENV_PYTHON = os.path.join(VENV, "bin", "python")
STAMP = os.path.join(VENV, ".saic-install-stamp")
INSTALL_LOG = os.path.join(VENV, "saic-install.log")
# tensorflow-compression 2.14.1 is the newest release; it needs TF 2.14, built for 3.9-3.11.
SUPPORTED = ((3, 9), (3, 10), (3, 11))


def _die(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _version_of(python):
  out = subprocess.run(
      [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
      capture_output=True, text=True, check=False)
  if out.returncode != 0:
    return None
  return tuple(int(v) for v in out.stdout.strip().split("."))


def supported(version):
  return tuple(version[:2]) in SUPPORTED


def find_base_python():
  """The interpreter to build the venv with: $SAIC_PYTHON, this one, or python3.11/3.10/3.9."""
  candidates = [os.environ.get("SAIC_PYTHON"), sys.executable]
  candidates += [shutil.which(f"python{a}.{b}") for a, b in reversed(SUPPORTED)]
  for python in filter(None, candidates):
    version = _version_of(python)
    if version and supported(version):
      return python
  names = ", ".join("%d.%d" % v for v in SUPPORTED)
  _die(f"saic-tf needs Python {names} (TensorFlow 2.14 / tensorflow-compression 2.14.1); "
       f"this is Python {sys.version.split()[0]} and no python3.9-3.11 is on PATH: install one "
       "or set SAIC_PYTHON=/path/to/python3.11")


def _stamp_text():
  digest = hashlib.sha256()
  for name in ("requirements.txt", "setup.cfg", "pyproject.toml"):
    with open(os.path.join(ROOT, name), "rb") as f:
      digest.update(name.encode() + b"\0" + f.read())
  return digest.hexdigest()


def _run_logged(cmd, log):
  log.write("$ " + " ".join(cmd) + "\n")
  log.flush()
  if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode != 0:
    _die(f"'{' '.join(cmd[2:5])} ...' failed while installing saic-tf; see {INSTALL_LOG}")


def ensure_venv():
  """Creates .venv and installs the pinned requirements and the package, if not done yet."""
  if not os.path.exists(VENV_PYTHON):
    base = find_base_python()
    print(f"saic-tf: creating {VENV} with {base}", file=sys.stderr)
    if subprocess.run([base, "-m", "venv", VENV], check=False).returncode != 0:
      _die(f"could not create the virtual environment {VENV}")
  version = _version_of(VENV_PYTHON)
  if not version or not supported(version):
    _die(f"{VENV} uses an unsupported Python {version}: remove it (rm -rf {VENV}) and run again")
  wanted = _stamp_text()
  if os.path.exists(STAMP) and open(STAMP).read() == wanted:
    return
  print("saic-tf: installing the pinned requirements into .venv (once; a few minutes) "
        f"- log: {INSTALL_LOG}", file=sys.stderr)
  pip = [VENV_PYTHON, "-m", "pip", "--disable-pip-version-check"]
  with open(INSTALL_LOG, "a") as log:
    _run_logged(pip + ["install", "-r", os.path.join(ROOT, "requirements.txt")], log)
    _run_logged(pip + ["install", "--no-deps", "--no-build-isolation",
                        "--config-settings", "editable_mode=compat", "-e", ROOT], log)
  with open(STAMP, "w") as f:
    f.write(wanted)
  print("saic-tf: .venv ready", file=sys.stderr)


def in_venv():
  return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def run_in_venv(script):
  """Makes sure .venv is ready, then continues `script` under its interpreter."""
  ensure_venv()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TF C++ start-up chatter (CUDA probes)
  if not in_venv():
    os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(script)] + sys.argv[1:])
