"""deltaflow as a built wheel (a non-editable install): everything it reads at run time ships
inside the package, and `make setup`'s tooling (tools/) stays out of it.

The wheel is built offline (no build isolation: setuptools from this venv) from a copy of the
package sources, so the build leaves nothing in the working tree. It goes into a scratch venv
whose dependencies are this venv's site-packages, added by a path line in a .pth file: a
directory added that way has its own .pth files left unprocessed, so the editable install's
path to scripts/ is not on the scratch venv's sys.path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_SRC = REPO / "scripts" / "deltaflow"

VALIDATE = """
import json, sys
import deltaflow
from deltaflow import config
cfg = config.load_config(sys.argv[1])
print(json.dumps({
    "file": deltaflow.__file__,
    "schema": str(config.SCHEMA_PATH),
    "sys_path": sys.path,
    "runs": sorted(cfg["runs"]),
    "max_reject_fraction": {name: ds.get("max_reject_fraction") for name, ds in cfg["datasets"].items()},
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")
    shutil.copytree(
        REPO / "scripts", src / "scripts", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
    )
    (whl,) = (tmp / "dist").glob("deltaflow-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The scratch venv's python, with the wheel installed and this venv's packages on its path."""
    venv = tmp_path_factory.mktemp("venv") / "scratch"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "deltaflow_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    return python


def test_the_wheel_holds_the_schema_and_registry_but_not_the_setup_tooling(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "deltaflow/schema.yaml" in names
    # the benchmark registry (and any other YAML the package reads), wherever it lives in the package
    yamls = {f"deltaflow/{p.relative_to(PACKAGE_SRC).as_posix()}" for p in PACKAGE_SRC.rglob("*.yaml")}
    assert any("/registry/" in n for n in yamls)
    assert yamls <= names, sorted(yamls - names)
    tooling = [
        n
        for n in names
        if n.startswith("tools/") or n.endswith(".c") or "setup_llamacpp" in n or "setup_sdists" in n
    ]
    assert tooling == []


def test_the_installed_package_validates_the_demo_config(installed):
    """The workflow's own loading and validation (config.load_config: the strict read and
    validate_config), run from the repository root as the workflow is, through the wheel."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(installed), "-c", VALIDATE, "config/config.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    venv = installed.parent.parent.resolve()
    assert Path(out["file"]).resolve().is_relative_to(venv), out["file"]
    schema = Path(out["schema"]).resolve()
    assert schema.is_relative_to(venv) and schema.is_file(), out["schema"]
    assert str(REPO / "scripts") not in out["sys_path"]
    assert out["runs"]
    # the schema's defaults were filled in (config.yaml sets none of these)
    assert out["max_reject_fraction"] and set(out["max_reject_fraction"].values()) == {0.2}
