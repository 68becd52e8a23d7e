"""The benchmark registry: one small declarative YAML per benchmark (as lm-eval's task
YAMLs are), in this folder. A config names benchmarks by file stem."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

REGISTRY_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem for p in REGISTRY_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _load(name: str) -> dict:
    path = REGISTRY_DIR / f"{name}.yaml"
    if not path.exists():
        raise KeyError(f"unknown benchmark '{name}'; the registry has: {', '.join(available())}")
    spec = yaml.safe_load(path.read_text())
    spec["task"] = name
    return spec


def load(name: str) -> dict:
    return copy.deepcopy(_load(name))
