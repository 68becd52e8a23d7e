"""`make setup`'s data sdists (tools/setup_sdists.py): fetched through the index's PEP 691 JSON
API, checked against its sha256, one folder unpacked. A local HTTP server plays the index."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading

import pytest

from tools import setup_sdists as ss


def _sdist(top: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def index(monkeypatch):
    """An index at PIP_INDEX_URL serving ``files`` ({filename: bytes}) for project ``my-data``
    and recording the requests; ``hashes`` may override a file's advertised sha256."""
    state = {"files": {}, "hashes": {}, "requests": [], "json": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["requests"].append(self.path)
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self.path == "/simple/my-data/":
                entries = [
                    {
                        "filename": f,
                        "url": f"{base}/files/{f}",
                        "hashes": {"sha256": state["hashes"].get(f, hashlib.sha256(d).hexdigest())},
                    }
                    for f, d in state["files"].items()
                ]
                body = json.dumps({"files": entries}).encode()
                ctype = ss.PEP691 if state["json"] else "text/html"
            elif self.path.startswith("/files/") and self.path[7:] in state["files"]:
                body, ctype = state["files"][self.path[7:]], "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
    yield state
    server.shutdown()


def test_one_folder_of_the_sdist_is_unpacked_and_a_second_run_fetches_nothing(index, tmp_path):
    index["files"]["my_data-1.0.tar.gz"] = _sdist(
        "my_data-1.0",
        {
            "pkg/tasks/qa/task.json": b'{"q": 1}',
            "pkg/tasks/qa_extra/x.json": b"{}",
            "pkg/tasks/other/y.json": b"{}",
            "setup.py": b"",
        },
    )
    index["files"]["my_data-1.1.tar.gz"] = _sdist("my_data-1.1", {"z": b""})
    out = ss.unpack("my-data==1.0", tmp_path, "pkg/tasks/qa/")
    assert out == tmp_path / "my-data-1.0"
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == [".complete", "pkg/tasks/qa/task.json"]
    n = len(index["requests"])
    assert ss.unpack("my-data==1.0", tmp_path, "pkg/tasks/qa/") == out
    assert len(index["requests"]) == n


def test_a_download_that_does_not_match_the_index_hash_is_refused(index, tmp_path):
    index["files"]["my_data-1.0.tar.gz"] = _sdist("my_data-1.0", {"a": b"1"})
    index["hashes"]["my_data-1.0.tar.gz"] = "0" * 64
    with pytest.raises(
        SystemExit, match=r"my_data-1.0.tar.gz: sha256 \w+ is not the index's 0{64}; the download is damaged"
    ):
        ss.unpack("my-data==1.0", tmp_path)
    assert not (tmp_path / "my-data-1.0" / ".complete").exists()


def test_a_version_the_index_lacks_and_a_missing_folder_are_named(index, tmp_path):
    index["files"]["my_data-1.0.tar.gz"] = _sdist("my_data-1.0", {"a": b"1"})
    with pytest.raises(SystemExit, match=r"my-data==2.0: the index .* lists no .tar.gz sdist of it"):
        ss.unpack("my-data==2.0", tmp_path)
    with pytest.raises(SystemExit, match=r"my-data==1.0: nothing under 'no/such/' in the sdist"):
        ss.unpack("my-data==1.0", tmp_path, "no/such/")


def test_an_index_without_the_json_api_is_left_to_pip(index):
    index["json"] = False
    assert ss.sdist_file("my-data", "1.0", ss.os.environ["PIP_INDEX_URL"]) is None


def test_an_optional_sdist_the_index_lacks_is_skipped_and_a_required_one_stops_setup(index, tmp_path, capsys):
    index["files"]["my_data-1.0.tar.gz"] = _sdist("my_data-1.0", {"pkg/a.json": b"{}"})
    listing = tmp_path / "sdists.txt"
    listing.write_text("# data\nmy-data==2.0 pkg/ optional\nmy-data==1.0 pkg/\n")
    ss.main([str(listing), str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "sdist my-data==2.0: skipped, optional (my-data==2.0: the index" in out
    assert (tmp_path / "out/my-data-1.0/pkg/a.json").exists()
    assert not (tmp_path / "out/my-data-2.0").exists()
    listing.write_text("my-data==2.0 pkg/\n")
    with pytest.raises(SystemExit, match="my-data==2.0: the index .* lists no .tar.gz sdist"):
        ss.main([str(listing), str(tmp_path / "out")])


def test_a_listing_line_has_a_requirement_a_folder_and_the_optional_mark():
    assert ss.parse_line("  # only a comment") is None
    assert ss.parse_line("a==1") == ("a==1", None, False)
    assert ss.parse_line("a==1 sub/dir/ optional  # why") == ("a==1", "sub/dir/", True)
    with pytest.raises(SystemExit, match="is not NAME==VERSION"):
        ss.parse_line("a==1 x y")
