"""`pip install <checkout>`: the wheel carries the zoo and gives the `saic` command, which works
from any directory. Built and installed without network into a temporary venv that reuses the
pinned packages already installed (a .pth file points at this interpreter's site-packages)."""
import os
import shutil
import subprocess
import sys
import sysconfig

from PIL import Image
import pytest

from conftest import IMAGES, ROOT

SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "saic_tf")


def _run(command, cwd, timeout=600):
  result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env=dict(os.environ, PIP_NO_INDEX="1",
                                                PIP_DISABLE_PIP_VERSION_CHECK="1"))
  assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
  return result


@pytest.mark.slow
def test_the_wheel_installs_the_saic_command_and_the_zoo(tmp_path):
  source = tmp_path / "source"  # what the wheel is built from: the files git would have
  source.mkdir()
  for name in SOURCES:
    path = os.path.join(ROOT, name)
    if os.path.isdir(path):
      shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy(path, source / name)
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
        str(tmp_path / "dist"), str(source)], tmp_path)
  wheel, = os.listdir(tmp_path / "dist")
  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
  python = str(venv / "bin" / "python")
  site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
              tmp_path).stdout.strip()
  with open(os.path.join(site, "saic_pinned_packages.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  _run([python, "-m", "pip", "install", "--no-deps", str(tmp_path / "dist" / wheel)], tmp_path)

  work = tmp_path / "elsewhere"  # outside the checkout and the venv
  work.mkdir()
  Image.open(os.path.join(IMAGES, sorted(os.listdir(IMAGES))[0])).save(work / "photo.jpg")
  saic = str(venv / "bin" / "saic")
  listing = _run([saic, "--help"], work).stdout
  assert "compress" in listing and "train" in listing
  compressed = _run([saic, "compress", "photo.jpg", "--model=tdic-0.25"], work)
  assert "bpp" in compressed.stdout and (work / "photo.saic").exists()
  _run([saic, "decompress", "photo.saic"], work)  # the fingerprint names the shipped codec
  assert Image.open(work / "photo.png").size == (224, 224)
  where = _run([python, "-c", "import saic_tf, os; print(os.path.dirname(saic_tf.__file__)); "
                "print(sorted(saic_tf.models()))"], work).stdout.splitlines()
  assert where[0].startswith(str(venv)), where  # the installed package, not the checkout
  assert "tdic-0.25" in where[1]
  bad = subprocess.run([saic, "nope"], cwd=work, capture_output=True, text=True, check=False)
  assert bad.returncode == 2 and bad.stderr.startswith("error: saic nope: no such command")
