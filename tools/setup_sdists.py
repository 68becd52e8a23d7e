"""Unpack the source distributions listed in envs/sdists.txt (their data/ folders are
real SFT and preference data, e.g. llamafactory's alpaca_en_demo.json).

The sdist is fetched from the package index (PyPI, the only registry this platform reaches; or
PIP_INDEX_URL) through its JSON simple API (PEP 691) and checked against the sha256 the index
gives; we unpack it under .venv/sdists/NAME-VERSION/ where deltaflow.sources looks for it.

Not ``pip download``: to say which file it fetched, pip unpacks the sdist and builds its
metadata. For BIG-bench's 358 MB archive that was most of a cold ``make setup`` (221 s of
250 s, bench/README.md); a fetch needs the file and its hash only. An index that does not speak
PEP 691 (a plain mirror) gets ``pip download`` as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

PYPI_SIMPLE = "https://pypi.org/simple"
PEP691 = "application/vnd.pypi.simple.v1+json"


class Unavailable(SystemExit):
    """The index does not list the sdist (a release can be removed from PyPI)."""


def _context() -> ssl.SSLContext:
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=cafile if cafile and Path(cafile).exists() else None)


def urlopen(url: str, accept: str | None = None, timeout: float = 120):
    """``urllib``'s urlopen with pip's certificate bundle (PIP_CERT) where one is set."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(request, timeout=timeout, context=_context())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sdist_file(name: str, version: str, index: str = PYPI_SIMPLE) -> dict | None:
    """The index's entry ({filename, url, hashes}) for ``name==version``'s .tar.gz sdist, or
    None when the index does not answer in PEP 691 JSON."""
    with urlopen(f"{index.rstrip('/')}/{canonical(name)}/", accept=PEP691) as resp:
        if PEP691 not in resp.headers.get("Content-Type", ""):
            return None
        files = json.load(resp)["files"]
    for entry in files:
        stem = entry["filename"].removesuffix(".tar.gz")
        if stem != entry["filename"] and "-" in stem:
            fname, fversion = stem.rsplit("-", 1)
            if canonical(fname) == canonical(name) and fversion == version:
                return entry
    raise Unavailable(f"{name}=={version}: the index {index} lists no .tar.gz sdist of it")


def download(url: str, dest: Path, sha256: str | None) -> None:
    """Stream ``url`` to ``dest``, checking its sha256 (the index's) on the way."""
    digest = hashlib.sha256()
    t0 = time.time()
    with urlopen(url) as resp, open(dest, "wb") as out:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if sha256 and digest.hexdigest() != sha256:
        dest.unlink()
        raise SystemExit(
            f"{url}: sha256 {digest.hexdigest()} is not the index's {sha256}; "
            "the download is damaged, run make setup again"
        )
    print(
        f"  fetched {url.rsplit('/', 1)[-1]} ({dest.stat().st_size / 1e6:.1f} MB, {time.time() - t0:.1f} s)",
        flush=True,
    )


def fetch(requirement: str, tmp: Path) -> Path:
    name, version = requirement.split("==")
    index = os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE
    entry = sdist_file(name, version, index)
    if entry is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                requirement,
                "-d",
                str(tmp),
            ],
            check=True,
        )
        archives = list(tmp.glob("*.tar.gz"))
        if len(archives) != 1:
            raise SystemExit(f"expected one sdist for {requirement}, got {archives}")
        return archives[0]
    archive = tmp / entry["filename"]
    download(entry["url"], archive, entry.get("hashes", {}).get("sha256"))
    return archive


def unpack(requirement: str, dest: Path, only: str | None = None) -> Path:
    """Fetch ``requirement``'s sdist and unpack it (with ``only``: just the members under that
    path inside the sdist, e.g. one task folder of a 358 MB archive)."""
    name, version = requirement.split("==")
    target = dest / f"{name}-{version}"
    marker = f"{requirement} {only or ''}".strip() + "\n"
    if (target / ".complete").exists() and (target / ".complete").read_text() == marker:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        archive = fetch(requirement, Path(tmp))
        top = archive.name[: -len(".tar.gz")]
        prefix = f"{top}/{only.rstrip('/')}" if only else None
        found = 0
        # one pass over the compressed stream ("r|gz"): a member list first would read the
        # whole archive twice
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                if prefix is None or member.name == prefix or member.name.startswith(prefix + "/"):
                    tar.extract(member, dest, filter="data")
                    found += 1
        if prefix and not found:
            raise SystemExit(f"{requirement}: nothing under '{only}' in the sdist")
    unpacked = dest / top
    if unpacked != target:
        unpacked.rename(target)
    (target / ".complete").write_text(marker)
    return target


def parse_line(line: str) -> tuple[str, str | None, bool] | None:
    """``NAME==VERSION [PATH] [optional]`` -> (requirement, path, optional); None for a comment."""
    fields = line.split("#", 1)[0].split()
    if not fields:
        return None
    optional = fields[-1] == "optional"
    requirement, *only = fields[:-1] if optional else fields
    if len(only) > 1:
        raise SystemExit(f"envs/sdists.txt: '{line.strip()}' is not NAME==VERSION [PATH] [optional]")
    return requirement, (only[0] if only else None), optional


def main(argv: list[str]) -> None:
    listing, dest = Path(argv[0]), Path(argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    for line in listing.read_text().splitlines():
        parsed = parse_line(line)
        if parsed is None:
            continue
        requirement, only, optional = parsed
        try:
            print(f"sdist {requirement} -> {unpack(requirement, dest, only)}", flush=True)
        except Unavailable as err:
            if not optional:
                raise
            # an optional data sdist gone from the index: the benchmarks that read it refuse
            # with deltaflow.sources' error when a config uses them; nothing else needs it
            print(
                f"sdist {requirement}: skipped, optional ({err}); benchmarks reading it need a local "
                f"copy under {dest}/{requirement.replace('==', '-')}/ or another source",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
