"""Unpack the source distributions listed in envs/sdists.txt (their data/ folders are
real SFT and preference data, e.g. llamafactory's alpaca_en_demo.json).

pip fetches the sdist from PyPI (the only registry this platform reaches); we unpack
it under .venv/sdists/NAME-VERSION/ where deltaflow.sources looks for it.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def unpack(requirement: str, dest: Path, only: str | None = None) -> Path:
    """Fetch ``requirement``'s sdist and unpack it (with ``only``: just the members under that
    path inside the sdist, e.g. one task folder of a 358 MB archive)."""
    name, version = requirement.split("==")
    target = dest / f"{name}-{version}"
    marker = f"{requirement} {only or ''}".strip() + "\n"
    if (target / ".complete").exists() and (target / ".complete").read_text() == marker:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "--disable-pip-version-check",
                        requirement, "-d", tmp], check=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if len(archives) != 1:
            raise SystemExit(f"expected one sdist for {requirement}, got {archives}")
        top = archives[0].name[: -len(".tar.gz")]
        with tarfile.open(archives[0]) as tar:
            members = None
            if only:
                members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/{only.rstrip('/')}")]
                if not members:
                    raise SystemExit(f"{requirement}: nothing under '{only}' in the sdist")
            tar.extractall(dest, members=members, filter="data")
    unpacked = dest / top
    if unpacked != target:
        unpacked.rename(target)
    (target / ".complete").write_text(marker)
    return target


def main(argv: list[str]) -> None:
    listing, dest = Path(argv[0]), Path(argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    for line in listing.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement, *only = line.split()
            print(f"sdist {line} -> {unpack(requirement, dest, only[0] if only else None)}")


if __name__ == "__main__":
    main(sys.argv[1:])
