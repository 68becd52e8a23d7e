"""`make setup`'s llama.cpp: llama-cpp-python's bindings over prebuilt llama.cpp libraries
(tools/setup_llamacpp.py), and the source build where those don't fit."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from deltaflow import provenance
from tools import setup_llamacpp as sl

REPO = Path(__file__).resolve().parents[1]


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_the_pinned_listing_reads_and_a_malformed_line_is_named(tmp_path):
    listing = sl.read_listing(REPO / "envs" / "llamacpp-prebuilt.txt")
    assert [p.platform for p in listing] == ["linux-x86_64"]
    assert listing[0].url() == ("https://registry.npmjs.org/@node-llama-cpp/linux-x64/-/linux-x64-3.22.1.tgz")
    assert sl.read_requirement(REPO / "envs" / "gguf.txt") == "llama-cpp-python==0.3.36"
    bad = tmp_path / "prebuilt.txt"
    bad.write_text("# comment\nlinux-x86_64 @x/y 1.0 md5-abc v1\n")
    with pytest.raises(SystemExit, match=r"prebuilt.txt:2: expected 'platform npm-package version sha512-"):
        sl.read_listing(bad)
    with pytest.raises(sl.Unfit, match=r"no prebuilt llama.cpp for darwin-arm64 .*there: linux-x86_64"):
        sl.choose(listing, "darwin-arm64")


def test_a_tarball_whose_hash_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    """Fetched through a file:// registry (npm_config_registry, as npm honours it): the real
    download code, no network."""
    data = _tarball({"package/bins/linux-x64/libllama.v1.so": b"x"})
    (tmp_path / "@x" / "y" / "-").mkdir(parents=True)
    (tmp_path / "@x" / "y" / "-" / "y-1.0.tgz").write_bytes(data)
    monkeypatch.setenv("npm_config_registry", tmp_path.as_uri())
    good = sl.Prebuilt("linux-x86_64", "@x/y", "1.0", _integrity(data), "v1")
    assert sl.fetch(good) == data
    tampered = sl.Prebuilt("linux-x86_64", "@x/y", "1.0", _integrity(data + b"!"), "v1")
    with pytest.raises(
        sl.Unfit, match=r"y-1.0.tgz: sha512 .* is not the pinned .* damaged or the package changed"
    ):
        sl.fetch(tampered)
    missing = sl.Prebuilt("linux-x86_64", "@x/z", "1.0", _integrity(data), "v1")
    with pytest.raises(sl.Unfit, match=r"could not fetch .*z-1.0.tgz"):
        sl.fetch(missing)


def test_only_the_llama_cpp_libraries_are_taken_from_the_tarball(tmp_path):
    tgz = tmp_path / "p.tgz"
    tgz.write_bytes(
        _tarball(
            {
                "package/bins/linux-x64/libllama.v0.5.0.so": b"1",
                "package/bins/linux-x64/libggml.v0.5.0.so": b"2",
                "package/bins/linux-x64/libggml-cpu-haswell.so": b"3",
                "package/bins/linux-x64/libllama-common.so": b"4",
                "package/bins/linux-x64/llama-addon.node": b"5",
                "package/dist/index.js": b"6",
            }
        )
    )
    (tmp_path / "lib").mkdir()
    names = sl.extract_libraries(tgz, tmp_path / "lib")
    assert names == ["libggml-cpu-haswell.so", "libggml.v0.5.0.so", "libllama.v0.5.0.so"]
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == names
    assert sl.versioned(names, "llama") == "libllama.v0.5.0.so"
    with pytest.raises(sl.Unfit, match="no single versioned libllama"):
        sl.versioned(["libllama.so", "libggml.v1.so"], "llama")


def test_the_bound_functions_are_read_from_the_bindings_source():
    src = (
        '@ctypes_function("llama_backend_init", [], None)\n'
        '@ctypes_function(\n    "llama_batch_ext_init", [llama_context_p_ctypes], c_void_p\n)\n'
        "ctypes_function = ctypes_function_for_shared_library(_lib)\n"
    )
    assert sl.bound_functions(src) == ["llama_backend_init", "llama_batch_ext_init"]


def test_a_prebuilt_that_does_not_fit_falls_back_to_the_source_build(tmp_path, monkeypatch, capsys):
    listing = tmp_path / "prebuilt.txt"
    listing.write_text("plan9-mips @x/y 1.0 sha512-AA== v1\n")
    built = []
    monkeypatch.setattr(sl, "install_source", built.append)
    assert sl.main([str(REPO / "envs" / "gguf.txt"), str(listing)]) == 0
    assert built == ["llama-cpp-python==0.3.36"]
    assert (
        f"llama.cpp prebuilt not used: no prebuilt llama.cpp for {sl.this_platform()}"
        in capsys.readouterr().out
    )
    assert sl.main([str(REPO / "envs" / "gguf.txt"), str(listing), "--source"]) == 0
    assert built == ["llama-cpp-python==0.3.36"] * 2


def test_provenance_names_the_prebuilt_llama_cpp_under_the_bindings(monkeypatch):
    monkeypatch.setattr(provenance, "llama_cpp_prebuilt", lambda: "llama.cpp v9 prebuilt (@x/y 1.0)")
    version = provenance.output_versions(("llama_cpp_python",))["llama_cpp_python"]
    assert version.endswith(" over llama.cpp v9 prebuilt (@x/y 1.0)")
    assert version.split(" ")[0] == sl.read_requirement(REPO / "envs" / "gguf.txt").split("==")[1]


INSTALLED = sl.installed_marker()
prebuilt_only = pytest.mark.skipif(
    INSTALLED is None,
    reason="llama-cpp-python is a source build here "
    "(make setup LLAMA_CPP=source, or no prebuilt for this platform)",
)


@prebuilt_only
def test_the_installed_prebuilt_loads_its_cpu_backend_and_is_named_in_provenance():
    info = sl.verify()
    assert info["backends"] >= 1 and "CPU" in info["system"]
    assert provenance.llama_cpp_prebuilt() == INSTALLED["label"]
    assert INSTALLED["requirement"] == sl.read_requirement(REPO / "envs" / "gguf.txt")


@prebuilt_only
def test_a_function_the_prebuilt_lacks_stops_with_a_message_when_called():
    assert INSTALLED["stubbed"], "the pinned prebuilt lacks 14 functions the bindings bind"
    name = INSTALLED["stubbed"][0]
    # a handle of its own: the bindings' function objects carry argument types
    call = f"import ctypes, llama_cpp; ctypes.CDLL(llama_cpp.llama_cpp._lib._name).{name}()"
    proc = subprocess.run(
        [sys.executable, "-c", call], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode != 0
    assert f"deltaflow: llama.cpp's {name} is not in the prebuilt llama.cpp libraries" in proc.stderr
    assert "make setup LLAMA_CPP=source" in proc.stderr
    # every function the bindings bind is found: in the prebuilt library or as a stub
    bindings = Path(sl.package_dir()) / "llama_cpp.py"
    code = (
        "import json, llama_cpp; lib = llama_cpp.llama_cpp._lib; "
        f"print(json.dumps([n for n in {sl.bound_functions(bindings.read_text())!r} if not hasattr(lib, n)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@prebuilt_only
def test_the_bindings_installed_without_their_dependencies_have_them_all():
    """setup_llamacpp installs the bindings --no-deps (a resolving pip install re-checks the whole
    venv and prints an ERROR about the data packages installed --no-deps); each runtime dependency
    llama-cpp-python declares must then be installed, at a version it accepts, by
    envs/requirements.txt. A version bump that adds one fails here, not in a GGUF job. `pip check`
    judges it; its lines about the data packages (installed --no-deps on purpose) are not ours."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120, check=False
    )
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr  # pip check ran and reported (at least the data packages' lines)
    assert [line for line in lines if line.startswith("llama-cpp-python ")] == [], (
        "add llama-cpp-python's missing dependencies to envs/requirements.txt"
    )
