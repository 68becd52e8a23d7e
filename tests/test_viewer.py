"""Per-item records in Inspect AI's viewer (viewer.inspect): the workflow writes an eval log per
model x benchmark with inspect_ai's own classes and `inspect view bundle`'s static site, and the
real viewer, run by headless Chromium (driven over the DevTools protocol), shows the logs and
an item's prompt, target, answer and score."""

import functools
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from conftest import REPO, config_errors, copy_run, tiny_config, write_config


def test_the_inspect_viewer_needs_its_environment(tmp_path):
    cfg = tiny_config()
    cfg["viewer"] = {"inspect": True, "python": str(tmp_path / "nope/bin/python")}
    assert f"config key 'viewer.python': {tmp_path}/nope/bin/python is not a Python with inspect_ai" in (
        config_errors(cfg)
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_text(url: str, want: list[str], tmp_path, timeout: float = 90) -> str:
    """The rendered text of ``url`` in headless Chromium once it holds every string of
    ``want`` (or at ``timeout``): the viewer is a JavaScript app that loads the logs itself."""
    from websockets.sync.client import connect

    port = _free_port()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--remote-debugging-port={port}", f"--user-data-dir={tmp_path / 'chromium'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    pages = json.load(r)
                break
            except OSError:
                time.sleep(0.2)
        ws = next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"]
        with connect(ws, max_size=None) as conn:
            ids = iter(range(1, 1_000_000))

            def call(method, **params):
                i = next(ids)
                conn.send(json.dumps({"id": i, "method": method, "params": params}))
                while (msg := json.loads(conn.recv())).get("id") != i:
                    pass
                return msg.get("result", {})

            call("Page.navigate", url=url)
            deadline, text = time.time() + timeout, ""
            while time.time() < deadline and not all(w in text for w in want):
                time.sleep(0.5)
                result = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                text = result["result"].get("value", "")
            return text
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.e2e
def test_the_workflow_writes_inspect_logs_that_the_real_viewer_shows(tiny_workflow, tmp_path):
    if not (REPO / ".venv-inspect/bin/inspect").exists():
        pytest.skip("needs .venv-inspect (make test: make inspect-env installs inspect_ai)")
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        pytest.skip("Debian's chromium is not installed (make system-tools installs it as root)")
    run = copy_run(tiny_workflow, tmp_path / "run")
    cfg = run.cfg
    cfg["viewer"] = {"inspect": True, "python": str(REPO / ".venv-inspect/bin/python")}
    proc = run.snakemake(configfile=write_config(run.work, cfg))
    out = proc.stdout + proc.stderr
    ran = set(re.findall(r"^(?:local)?rule (\w+):", out, re.MULTILINE)) - {"all"}
    assert "inspect_view" in ran and ran <= {"inspect_view", "model_card", "release_check"}, out[-3000:]
    viewer = run.work / "results/viewer"
    logs = sorted(p.name for p in (viewer / "logs").glob("*.eval"))
    assert "base__arithmetic.eval" in logs and "run_a__arc_easy.eval" in logs
    assert (viewer / "site/index.html").exists()
    record = json.loads((run.work / "results/evals/run_a/arithmetic.jsonl").read_text().splitlines()[0])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(viewer / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        listing = page_text(url, ["run_a", "arc_easy", "arithmetic"], tmp_path)
        assert "run_a" in listing and "arc_easy" in listing and "arithmetic" in listing, listing[:2000]
        question = record["prompt"].split("user\n")[-1].split("<")[0].strip()  # the item's question
        page = page_text(url + "#/logs/run_a__arithmetic.eval", [record["doc_id"], question], tmp_path)
        assert record["doc_id"] in page and question in page, page[:3000]
        assert record["target"] in page and "exact_match" in page
    finally:
        server.shutdown()
