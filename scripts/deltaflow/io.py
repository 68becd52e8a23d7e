"""Atomic writes, JSONL reading with line numbers, hashing.

Every artifact is written to a temporary sibling and renamed into place, so a
killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _remove_stale(path: Path) -> None:
    """Temporaries a killed job (SIGKILL) left next to ``path``."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def decode_utf8(data: bytes, path: str | os.PathLike) -> str:
    """``data`` (the bytes of ``path``) as UTF-8 text; invalid bytes raise a DataError naming the
    file, the line and the byte offset, and the fix."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte {data[exc.start : exc.end]!r} at byte offset {exc.start}, "
            f"column {column}: {exc.reason}); save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8` "
            "for a Latin-1 file, or fix that line"
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file (gzipped too); invalid UTF-8 raises naming the file and line."""
    with opener(path)(path, "rb") as fh:
        return decode_utf8(fh.read(), path)


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); fix or regenerate the file") from exc


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a malformed line raises naming the file and line number."""
    rows = []
    # universal newlines, as a file opened in text mode reads them
    with io.StringIO(read_text(path), newline=None) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: malformed JSON line ({exc.msg}); fix or remove that line"
                ) from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def opener(path):
    if str(path).endswith(".gz"):
        import gzip

        return gzip.open
    return open


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | os.PathLike, exclude: tuple[str, ...] = ()) -> str:
    """Hash a file, or a directory as the hash of its (relative name, file hash) list (hidden
    files and the relative names in ``exclude`` left out)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(
        q
        for q in path.rglob("*")
        if q.is_file() and not q.name.startswith(".") and str(q.relative_to(path)) not in exclude
    ):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def safetensors_sha256(folder: str | os.PathLike) -> str:
    """A full model folder's weights: the hash of its *.safetensors files' hashes, in name order
    (what a merged model's manifest records as weights_sha256)."""
    return sha256_text("".join(sha256_file(f) for f in sorted(Path(folder).glob("*.safetensors"))))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _strict_yaml_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
                        continue
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        twice = key in seen
                    except TypeError:  # an unhashable key: PyYAML's own error follows
                        continue
                    if twice:
                        raise DuplicateKeyError(key, seen[key], line)
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


class DuplicateKeyError(ValueError):
    def __init__(self, key, first: int, second: int):
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


def load_yaml(path: str | os.PathLike, *, what: str = "YAML file") -> Any:
    """A YAML file read strictly: a key given twice in one mapping, invalid YAML or invalid
    UTF-8 raises an error naming the file, the key and both lines (a ConfigError)."""
    import yaml

    from .errors import ConfigError

    try:
        text = read_text(path)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return yaml.load(text, Loader=_strict_yaml_loader())
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{what} {path}:{exc.second}: key '{exc.key}' is given twice in one mapping (lines {exc.first} "
            f"and {exc.second}); YAML would keep only the last. Remove one, or merge them"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML: {exc}") from None


def read_config_file(path: str | os.PathLike) -> dict:
    """A workflow config file (YAML, or JSON as Snakemake also reads it), strictly: a key given
    twice, an empty file or one whose top level is not a mapping raises a ConfigError naming the
    file."""
    from .errors import ConfigError

    try:
        text = read_text(path)
    except DataError as exc:
        raise ConfigError(str(exc)) from None

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        for k in keys:
            if keys.count(k) > 1:
                raise ConfigError(
                    f"config file {path}: key '{k}' is given twice in one object; "
                    "JSON would keep only the last. Remove one, or merge them"
                )
        return dict(pairs)

    try:
        config = json.loads(text, object_pairs_hook=no_duplicates)
    except ValueError:
        config = load_yaml(path, what="config file")
    if config is None:
        raise ConfigError(
            f"config file {path} is empty: give the workflow's settings in it "
            "(config/config.yaml is a complete example) or leave it out"
        )
    if not isinstance(config, dict):
        raise ConfigError(
            f"config file {path}: the top level must be a mapping of keys (datasets:, "
            f"mixtures:, ...), not a {type(config).__name__}"
        )
    return config
