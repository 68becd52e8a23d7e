import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def tiny_config() -> dict:
    """The tiny test config with repo-relative paths made absolute."""
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg["base_model"]["source"]["corpus"] = str(REPO / cfg["base_model"]["source"]["corpus"])
    for ds in cfg["datasets"].values():
        if ds["type"] == "file":
            ds["path"] = str(REPO / ds["path"])
    return cfg


@pytest.fixture
def tiny_cfg() -> dict:
    return copy.deepcopy(tiny_config())


def write_config(workdir: Path, cfg: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True,
                  timeout: int = 900, snakefile: Path | None = None,
                  env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(snakefile or REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", "--show-failed-logs", *args]
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-8000:]}")
    return proc
