"""Per-item records in an existing viewer (``viewer:``): Inspect AI's eval logs and its static
viewer site, written in an environment of their own by scripts/viewer/inspect_writer.py (rule
inspect_view). Here: the config check, before any job."""

from __future__ import annotations

import os
from pathlib import Path


def check_config(config: dict, *, check_files: bool):
    """viewer.inspect needs viewer.python: a Python with inspect_ai and its `inspect` CLI."""
    viewer = config["viewer"]
    if not viewer["inspect"] or not check_files:
        return
    python = Path(viewer["python"])
    if not (os.access(python, os.X_OK) and os.access(python.parent / "inspect", os.X_OK)):
        yield (
            f"config key 'viewer.python': {python} is not a Python with inspect_ai's `inspect` beside it; "
            "run `make inspect-env` (it builds .venv-inspect), or point viewer.python at one"
        )
