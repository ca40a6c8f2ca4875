"""End to end in a real browser: JupyterLab on a port of its own, a notebook with a quiz cell, headless Chromium.

The test starts JupyterLab headless on 127.0.0.1 (a free port, a random token, its own config, runtime, settings and
workspace folders), opens a notebook whose one cell is `show(2)` in headless Chromium (Debian's `chromium`, network
features off), runs the cell, clicks answers with real mouse events through the DevTools protocol (the
`websocket-client` that jupyter_server already depends on; no driver, nothing downloaded), and reads the feedback the
page shows. It skips only when no Chromium is installed: `.ci/run` installs Debian's package.

`python tests/test_quiz_browser.py docs/quiz_jupyterlab.png` runs the same steps and keeps the screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
CELL = "from llava_mini.quiz import show\nshow(2)"


def find_browser() -> str | None:
    """Chromium from $LLAVA_MINI_BROWSER or PATH (None when there is none)."""
    return os.environ.get("LLAVA_MINI_BROWSER") or next(filter(None, map(shutil.which, BROWSERS)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, every: float = 0.25):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """End a process this module started, and its children (its own session), by its id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def jupyterlab(root: Path, work: Path):
    """JupyterLab serving `root` on 127.0.0.1:<free port>; yields the base URL with its token."""
    port, token = free_port(), os.urandom(16).hex()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config"), "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces")}
    news = work / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news, no prompt about it
    log = open(work / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            tail = (work / "jupyterlab.log").read_text()[-2000:]
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait(up, 120, "JupyterLab start", every=0.5)
        yield url, token
    finally:
        _stop(proc)
        log.close()


class DevTools:
    """The Chrome DevTools protocol over one page's websocket: commands, JavaScript, real mouse clicks."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client, a dependency of jupyter_server

        self.ws, self.next_id = websocket.create_connection(ws_url, timeout=120, suppress_origin=True), 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float, what: str):
        return _wait(lambda: self.js(expression), timeout, what, every=0.5)

    def click(self, selector_js: str) -> None:
        """Scroll the element that `selector_js` evaluates to into view and click its centre with the mouse."""
        box = self.js(f"(() => {{ const e = {selector_js}; e.scrollIntoView({{block: 'center'}}); "
                      f"const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        x, y = box
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def close(self) -> None:
        self.ws.close()


@contextmanager
def chromium(binary: str, work: Path):
    """Headless Chromium with its network features off; yields DevTools on its page."""
    profile = work / "chromium"
    log = open(work / "chromium.log", "w")
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--disable-default-apps", "--disable-domain-reliability",
         "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
         "--metrics-recording-only", "--mute-audio", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1280,1500", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    tools = None
    try:
        port_file = profile / "DevToolsActivePort"
        _wait(lambda: port_file.exists() and port_file.read_text().strip(), 60, "Chromium start")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        yield tools
    finally:
        if tools:
            tools.close()
        _stop(proc)
        log.close()


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


ITEM = "document.querySelectorAll('.llava-quiz-item')[{}]"


def _option(item: int, letter: str) -> str:
    buttons = f"{ITEM.format(item)}.querySelectorAll('.llava-quiz-choice button')"
    return f"[...{buttons}].find(b => b.textContent.trim() === '{letter}')"


def _feedback(item: int) -> str:
    return f"{ITEM.format(item)}.querySelector('.llava-quiz-feedback').innerText"


def run_quiz_in_browser(binary: str, work: Path, screenshot: Path | None = None) -> dict:
    """Open the quiz notebook in JupyterLab in Chromium, run it, answer three items with the mouse and keyboard; return
    what the page showed."""
    root = work / "lab"
    root.mkdir(parents=True)
    _notebook(root / "quiz.ipynb")
    seen = {}
    with jupyterlab(root, work) as (url, token), chromium(binary, work) as page:
        page.call("Page.enable")
        page.call("Emulation.setFocusEmulationEnabled", enabled=True)  # a headless page has no focus otherwise
        page.call("Page.navigate", url=f"{url}/lab/tree/quiz.ipynb?token={token}")
        page.wait("!!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))", 180, "JupyterLab load")
        panel = "[...jupyterapp.shell.widgets('main')].find(w => w.sessionContext && w.content?.widgets)"
        page.wait(f"(async () => {{ const p = {panel}; if (!p) return false; await p.sessionContext.ready;"
                  " const k = p.sessionContext.session?.kernel; return !!k && k.status === 'idle'; })()",
                  120, "kernel start")
        page.js(f"jupyterapp.shell.collapseLeft(); jupyterapp.shell.activateById({panel}.id)")
        page.click("document.querySelector('.jp-Notebook .jp-Cell .jp-InputArea-prompt')")
        for kind in ("rawKeyDown", "keyUp"):  # Shift+Enter: run the cell, as a learner does
            page.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                      modifiers=8)
        seen["items"] = page.wait("document.querySelectorAll('.llava-quiz-item').length", 120, "the quiz widget")
        seen["header"] = page.js("document.querySelector('.llava-quiz h3').innerText")
        # item 3, single choice: the seed's mean-pooling claim, then the right answer
        page.click(_option(2, "a"))
        page.click(f"{ITEM.format(2)}.querySelector('.llava-quiz-submit')")
        seen["wrong"] = page.wait(_feedback(2), 30, "feedback on a wrong answer")
        # item 1, a number: the count without the bias
        page.click(f"{ITEM.format(0)}.querySelector('.llava-quiz-choice input')")
        page.call("Input.insertText", text="4194304")
        page.click(f"{ITEM.format(0)}.querySelector('.llava-quiz-submit')")
        seen["number"] = page.wait(_feedback(0), 30, "feedback on a number")
        page.click(_option(2, "c"))
        page.click(f"{ITEM.format(2)}.querySelector('.llava-quiz-submit')")
        seen["right"] = page.wait(f"{_feedback(2)}.includes('Right') && {_feedback(2)}", 30,
                                  "feedback on the right answer")
        seen["explanation"] = page.js(f"{ITEM.format(2)}.innerText")
        seen["score"] = page.js("document.querySelector('.llava-quiz-score').innerText")
        if screenshot is not None:
            page.js(f"{ITEM.format(0)}.scrollIntoView({{block: 'start'}}); document.querySelector('.llava-quiz')"
                    ".scrollIntoView({block: 'start'})")
            time.sleep(0.5)
            shot = page.call("Page.captureScreenshot", format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
    return seen


@pytest.mark.slow
def test_quiz_in_jupyterlab_in_headless_chromium(tmp_path):
    binary = find_browser()
    if binary is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): cannot run the "
                    "quiz in a real browser")
    start = time.monotonic()
    seen = run_quiz_in_browser(binary, tmp_path, screenshot=tmp_path / "quiz.png")
    assert seen["items"] == 5 and seen["header"].startswith("Quiz 2:")
    assert "Not right yet" in seen["wrong"] and "seed write-up" in seen["wrong"]
    assert "Not right yet" in seen["number"] and "without the bias" in seen["number"]
    assert "Right." in seen["right"] and "Why:" in seen["explanation"] and "Evidence:" in seen["explanation"]
    assert seen["score"].startswith("Score: 1 of 5 right")
    assert (tmp_path / "quiz.png").stat().st_size > 10_000
    print(f"browser test: {time.monotonic() - start:.0f} s")


if __name__ == "__main__":  # keep a screenshot: python tests/test_quiz_browser.py docs/quiz_jupyterlab.png
    import tempfile

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "quiz_jupyterlab.png").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run_quiz_in_browser(find_browser(), Path(tmp), screenshot=out), ensure_ascii=False, indent=1))
    print(f"wrote {out}")
