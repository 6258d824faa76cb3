"""The browser console at ``/console``, driven in the distribution's Chromium by Playwright.

What a customer does (sign in, call a model in the playground and see usage grow, create and
revoke a key, download an invoice, upload a photo) against the real local server, real models
and the real SQLite key store and ledger; and what must never happen: data that runs as
script (tenant name, model label, file name), inline script running despite the CSP, the key
in a URL, in web storage after sign-out, or in the server's log. Screenshots of every page go
to ``build/screenshots``.

Needs Chromium (``apt-get install chromium``; ``make test`` installs it) and the
``playwright`` package; no browser is downloaded. Select with ``-m browser``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright import sync_api as playwright_api

from aimaas_testing.auth import tenant_key
from aimaas_testing.paths import REGISTRY, REPO_ROOT
from aimaas_testing.servers import ServerProcess, launch_local_server

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO_ROOT / "build" / "screenshots"
#: Script that would run if the console ever parsed data as HTML.
XSS = '<img src=x onerror="window.__xss=1">'
TENANT_NAME = f"Acme {XSS}"


def chromium() -> str:
    """The distribution's Chromium (``AIMAAS_CHROMIUM`` overrides)."""
    found = os.environ.get("AIMAAS_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no Chromium: `apt-get install chromium` (make test's system-deps does)")
    return found


@dataclass
class Console:
    server: ServerProcess
    key: str
    db: Path

    @property
    def url(self) -> str:
        return f"{self.server.url}/console/"

    def api(self, method: str, path: str, key: str | None = None, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.request(method, self.server.url + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp("console")
    server = launch_local_server(
        registry=REGISTRY,
        db=folder / "aimaas.db",
        log_path=folder / "server.log",
        args=["--log-level", "info"],  # access lines too: the key must not be in any of them
        # This checkout's code, even where the virtualenv's editable install is another's.
        env={"AIMAAS_ONNX_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    try:
        db = folder / "aimaas.db"
        yield Console(server, tenant_key(db, plan="pro", label=TENANT_NAME), db)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium(),
            # A synthetic microphone (a beep), granted without a prompt: the recorder's test.
            args=[
                "--no-sandbox",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: object, console: Console) -> Iterator[object]:
    """A fresh tab, signed in, that records every URL it requests and every dialog."""
    context = browser.new_context(accept_downloads=True, locale="en-US")  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.requested = []
    tab.on("request", lambda request: tab.requested.append(request.url))
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.goto(console.url)
    tab.fill("#key", console.key)
    tab.press("#key", "Enter")  # the keyboard, as a user would
    tab.wait_for_selector("#page[data-ready=usage]")
    try:
        yield tab
    finally:
        for url in tab.requested:
            assert console.key not in url
        context.close()


def show(tab: object, name: str) -> None:
    tab.evaluate("document.getElementById('page').removeAttribute('data-ready')")  # type: ignore[attr-defined]
    tab.click(f"nav a[href='#{name}']")  # type: ignore[attr-defined]
    tab.wait_for_selector(f"#page[data-ready={name}]")  # type: ignore[attr-defined]


def snap(tab: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_usage_grows_after_a_playground_call(page: object, console: Console) -> None:
    before = console.api("GET", "/v1/account").json()["month_to_date_calls"]
    assert page.text_content("#used").startswith(f"Used this month: {before:,} /")
    show(page, "playground")
    page.fill("#pg-text", "The striker scored twice in the final.")
    page.click("#pg-run")
    page.wait_for_selector("#pg-label")
    expected = console.api(
        "POST", "/v1/text-classification", json={"text": "The striker scored twice in the final."}
    ).json()["label"]
    assert page.text_content("#pg-label") == expected
    curl, python = page.text_content("#curl"), page.text_content("#python")
    assert "$AIMAAS_KEY" in curl and 'os.environ["AIMAAS_KEY"]' in python
    assert console.key not in curl + python
    snap(page, "playground")
    show(page, "usage")
    # Two calls since: the page's and this test's own check of the label.
    assert page.text_content("#used").startswith(f"Used this month: {before + 2:,} /")
    assert console.api("GET", "/v1/account").json()["month_to_date_calls"] == before + 2
    snap(page, "usage")


def test_upload_a_photo_and_see_its_label(page: object, console: Console) -> None:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    photo = buffer.getvalue()
    show(page, "playground")
    page.click("#tab-image")
    name = f"{XSS}.jpg"
    page.set_input_files("#pg-file", {"name": name, "mimeType": "image/jpeg", "buffer": photo})
    page.click("#pg-run")
    page.wait_for_selector("#bars li")
    answer = httpx.post(
        console.server.url + "/v1/image-classification",
        content=photo,
        headers={"Authorization": f"Bearer {console.key}", "Content-Type": "image/jpeg"},
        timeout=60,
    )
    top = answer.json()["predictions"]
    assert page.text_content("#pg-label") == top[0]["label"]
    labels = page.locator("#bars .bar-label").all_text_contents()
    assert labels == [p["label"] for p in top]
    # The file name is shown as text: no element was made from it, no handler ran.
    assert page.text_content("#pg-filename") == name
    assert page.locator("#result img").count() == 0
    assert page.evaluate("window.__xss") is None
    snap(page, "playground-image")


def test_create_and_revoke_a_key(page: object, console: Console) -> None:
    show(page, "keys")
    page.fill("#key-label", f"ci {XSS}")
    page.click("#create-key button[type=submit]")
    page.wait_for_selector("#secret")
    secret = page.text_content("#secret")
    assert secret.startswith("amk_") and secret != console.key
    assert console.api("GET", "/v1/account", key=secret).status_code == 200
    key_id = secret.split("_")[1]
    listed = {k["key_id"]: k for k in console.api("GET", "/v1/keys").json()}
    assert listed[key_id]["label"] == f"ci {XSS}" and "key" not in listed[key_id]
    snap(page, "keys")
    page.click(f"[data-revoke='{key_id}']")  # the confirm dialog is accepted
    page.wait_for_selector(f"[data-revoke='{key_id}']", state="detached")
    assert console.api("GET", "/v1/account", key=secret).status_code == 403
    actions = [e["action"] for e in console.api("GET", "/v1/audit").json()]
    assert actions[:2] == ["key.revoke", "key.create"]
    assert page.evaluate("window.__xss") is None


def test_download_the_invoice(page: object, console: Console, tmp_path: Path) -> None:
    show(page, "invoices")
    invoice = console.api("GET", f"/v1/invoices/{page.input_value('#month')}").json()
    assert page.text_content("#invoice-tenant") == TENANT_NAME  # as text, not as markup
    assert page.evaluate("window.__xss") is None
    snap(page, "invoices")
    with page.expect_download() as info:
        page.click("#invoice-csv")
    saved = tmp_path / "invoice.csv"
    info.value.save_as(saved)
    rows = list(csv.DictReader(saved.open()))
    assert rows[-1]["model"] == "TOTAL"
    assert int(rows[-1]["calls"]) == invoice["total_calls"] > 0
    with page.expect_download() as info:
        page.click("#invoice-json")
    info.value.save_as(tmp_path / "invoice.json")
    downloaded = json.loads((tmp_path / "invoice.json").read_text())
    assert downloaded["invoice_id"] == invoice["invoice_id"]
    assert downloaded["total"] == invoice["total"]


def test_models_page_lists_the_catalogue(page: object, console: Console) -> None:
    show(page, "models")
    models = console.api("GET", "/v1/models").json()["data"]
    names = [m["name"] for m in models]
    shown = page.locator("tbody tr td:first-child").all_text_contents()
    assert shown == names
    # Each model's parity and accuracy figures, as its manifest holds them.
    for model in models:
        parity = page.text_content(f".parity[data-model='{model['name']}']")
        report = model["parity"]
        assert parity.startswith("✓ passed" if report["passed"] else "✗ failed")
        assert f"vs {report['reference']} (n={report['samples']})" in parity
        for metric, value in report["metrics"].items():
            assert f"{metric} {figure(value)}" in parity, (model["name"], parity)
        accuracy = page.text_content(f".accuracy[data-model='{model['name']}']")
        for check in model["accuracy"]:
            assert f"{check['metric']} {figure(check['value'])} (n={check['samples']})" in accuracy
    assert any(m["accuracy"] for m in models)  # the figures exist to be shown
    snap(page, "models")


def figure(value: float) -> str:
    """A figure as the console shows it (en-US): tiny ones in JavaScript's exponent form."""
    if value != 0 and abs(value) < 0.001:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent):+d}".replace("+", "+" if int(exponent) >= 0 else "")
    return f"{round(value, 4):,.4f}".rstrip("0").rstrip(".")


def test_csp_blocks_injected_inline_script(page: object, console: Console) -> None:
    headers = httpx.get(console.url, timeout=30).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    violations = page.evaluate(
        """() => new Promise((resolve) => {
            const seen = [];
            document.addEventListener('securitypolicyviolation',
                (e) => seen.push(e.violatedDirective));
            const s = document.createElement('script');
            s.textContent = 'window.__inline = 1';
            document.body.append(s);
            setTimeout(() => resolve(seen), 200);
        })"""
    )
    assert any(v.startswith("script-src") for v in violations)
    assert page.evaluate("window.__inline") is None


def test_sign_out_leaves_no_key_behind(page: object, console: Console) -> None:
    assert page.evaluate("sessionStorage.getItem('aimaas.key')") == console.key
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    stored = page.evaluate(
        "JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])"
    )
    assert console.key not in stored
    assert re.search(r"amk_", stored) is None
    snap(page, "signin")
    assert console.key not in console.server.logs()


def test_phone_sized_dark_window_is_readable(browser: object, console: Console) -> None:
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 390, "height": 844}, color_scheme="dark", locale="zh-CN"
    )
    tab = context.new_page()
    try:
        tab.goto(console.url)
        assert tab.text_content("#signin h1") == "登录"  # Chinese UI text for a Chinese reader
        tab.fill("#key", console.key)
        tab.press("#key", "Enter")
        tab.wait_for_selector("#page[data-ready=usage]")
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the page scrolls sideways on a phone"
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(18, 20, 23)"  # the dark palette followed the system
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / "usage-phone-dark.png"), full_page=True)
    finally:
        context.close()


def test_console_link_signs_in_and_leaves_no_key_in_the_address_bar(
    browser: object, console: Console
) -> None:
    tenant = console.api("GET", "/v1/account").json()["tenant_id"]
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "aimaas_admin",
            "--db",
            str(console.db),
            "--actor",
            "ops-test",
            "console-link",
            "--tenant",
            tenant,
            "--console",
            console.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    link = made.stdout.strip()
    key = link.split("#signin=")[1]
    assert link == f"{console.url}#signin={key}" and key.startswith("amk_")
    context = browser.new_context(locale="en-US")  # type: ignore[attr-defined]
    tab = context.new_page()
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    try:
        tab.goto(link)
        tab.wait_for_selector("#page[data-ready=usage]")
        # Signed in as the tenant, with the link's key; the fragment is gone from the address
        # bar and from the history entry (Back does not bring it back).
        assert TENANT_NAME in tab.text_content("#who")
        assert tab.evaluate("location.hash") == "#usage"
        assert key not in tab.url
        assert tab.evaluate("sessionStorage.getItem('aimaas.key')") == key
        # The key went to the API only in the Authorization header: no request URL (the
        # document's included, a fragment is never sent) and no server log line carries it.
        assert requested and all(key not in url for url in requested)
        assert key not in console.server.logs()
        tab.go_back()  # the entry before is the blank tab: the link's entry was replaced
        assert key not in tab.url
        # A link with no key in it signs nobody in (a new tab: sessionStorage is per tab).
        tab = context.new_page()
        tab.goto(f"{console.url}#signin=<img src=x onerror=window.__xss=1>")
        tab.wait_for_selector("#signin:not([hidden])")
        assert "signin" not in tab.evaluate("location.hash")
        assert tab.evaluate("window.__xss") is None
    finally:
        context.close()


def test_upload_speech_and_read_its_transcript(page: object, console: Console) -> None:
    from aimaas_testing.audio import beckett_path

    speech = beckett_path().read_bytes()
    show(page, "playground")
    page.click("#tab-audio")
    name = f"{XSS}.wav"
    page.set_input_files(
        "#pg-audio-file", {"name": name, "mimeType": "audio/wav", "buffer": speech}
    )
    page.click("#pg-run")
    page.wait_for_selector("#pg-transcript", timeout=120_000)
    answer = httpx.post(
        console.server.url + "/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {console.key}"},
        files={"file": ("beckett.wav", speech, "audio/wav")},
        data={"model": "whisper-1"},
        timeout=120,
    ).json()
    assert page.text_content("#pg-transcript") == answer["text"]
    assert "fail better" in answer["text"].lower()  # the real model heard the real speech
    assert page.text_content("#pg-filename") == name  # as text: no element made from it
    assert page.evaluate("window.__xss") is None
    curl, python = page.text_content("#curl"), page.text_content("#python")
    assert f"{console.server.url}/v1/audio/transcriptions" in curl
    assert "-F 'model=whisper-1'" in curl and "-F 'file=@" in curl
    assert '"Authorization: Bearer $AIMAAS_KEY"' in curl
    assert 'os.environ["AIMAAS_KEY"]' in python and 'files={"file": f}' in python
    assert console.key not in curl + python
    billed = json.loads(page.text_content("#billed").split(": ", 1)[1])
    assert billed["seconds"] == answer["usage"]["seconds"] >= 10  # beckett.wav is ~10 s
    snap(page, "playground-audio")


def test_record_from_the_microphone_and_transcribe(browser: object, console: Console) -> None:
    context = browser.new_context(locale="en-US", permissions=["microphone"])  # type: ignore[attr-defined]
    tab = context.new_page()
    posted: list[object] = []
    tab.on(
        "request",
        lambda r: posted.append(r) if r.url.endswith("/v1/audio/transcriptions") else None,
    )
    try:
        tab.goto(console.url)
        tab.fill("#key", console.key)
        tab.press("#key", "Enter")
        tab.wait_for_selector("#page[data-ready=usage]")
        show(tab, "playground")
        tab.click("#tab-audio")
        tab.click("#pg-record")
        # (wait_for_function would eval a string, which the console's CSP refuses)
        tab.wait_for_selector("#pg-rec-status:has-text('Recording')")
        tab.wait_for_timeout(1500)
        tab.click("#pg-record")  # stop
        tab.wait_for_selector("#pg-player:not([hidden])")
        assert tab.text_content("#pg-rec-status").startswith("Recorded: recording.webm")
        before = console.api("GET", "/v1/account").json()["month_to_date_calls"]
        tab.click("#pg-run")
        # A beep may transcribe to nothing: the element is there, perhaps empty.
        tab.wait_for_selector("#pg-transcript", state="attached", timeout=120_000)
        # The recording went up as a multipart form (Playwright does not expose a Blob body) and
        # was transcribed and billed once: a beep, whatever the model makes of it, for at least
        # the second recorded.
        (request,) = posted
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert console.api("GET", "/v1/account").json()["month_to_date_calls"] == before + 1
        assert tab.text_content("#pg-filename") == "recording.webm"
        billed = json.loads(tab.text_content("#billed").split(": ", 1)[1])
        assert billed["seconds"] >= 1
        assert "-F 'file=@recording.webm'" in tab.text_content("#curl")
    finally:
        context.close()
