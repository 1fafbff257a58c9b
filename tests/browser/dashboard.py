#!/usr/bin/env python3
"""The web dashboard in a real browser (Debian's Chromium, driven by
Playwright), against a fresh `integro serve` on SQLite and, when
INTEGRO_TEST_POSTGRES_URL is set, once more on a fresh PostgreSQL database.
Twilio's Messages API is a local mock (provider_mock.py); every page visited
is checked with axe-core, and any violation of impact serious or critical
fails the run.

Scenarios, each able to fail on its own:
  1. sign in through the form (a wrong password shows an error first);
  2. a signed webhook shows up in the open inbox without a reload (SSE);
  3. a conversation: hand off, send by hand (the mock receives it), resume;
  4. rules: edit a rule's reply, then the dry run answers with it (htmx);
  5. a dead job: a permanent send error, "Not delivered", Retry from /jobs;
  6. the session list; 7. an unknown conversation shows the HTML error page;
  8. the tenant picker (two tenants) and the header's tenant switch;
  9. accessibility: axe on every page visited;
  13. a canned reply added, then picked by typing "/" in Message (keyboard),
      and sent; a label added to the conversation;
  14. the usage page's charts; a bot's page saves a new persona name; the
      events list; "Test connection" of the Twilio account (the mock answers
      the account read) shows "Connected:".
  15. posts on X: the owner writes a post (too long first: the error beside
      the form keeps the text), submits it for an hour ahead and approves
      it (scheduled, nothing published); another is rejected with a reason,
      shown in its row.
With --screenshots DIR, full-page PNGs of login, inbox, conversation, rules,
jobs and posts go to DIR (from the first database's run), at 1280x800.

    python3 tests/browser/dashboard.py [path/to/integro] [--screenshots DIR]
                                       [--database sqlite|postgres|all]

Prints one line per scenario and a closing `browser: N passed, N failed`;
exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402
from provider_mock import FRIENDLY_NAME, TwilioMock  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}

EMAIL = "operator@example.com"
PASSWORD = "operator-password-1"
ACCOUNT_SID = "AC123"
AUTH_TOKEN = "browser-suite-" + secrets.token_hex(8)
BUSINESS_NUMBER = "+14155238886"
FALLBACK = "Thanks, we will get back to you."
# An X account's OAuth 1.0a credentials (scenario 15 never reaches X).
X_CREDENTIALS = {
    "user_id": "4337869213",
    "consumer_key": "ck",
    "consumer_secret": "cs-secret",
    "access_token": "at",
    "access_token_secret": "ats",
}
# The contacts who write in: scenario 2's and scenario 5's.
ANN = {"name": "Ann", "number": "+14155550100"}
BEN = {"name": "Ben", "number": "+14155550101"}

# Actions and assertions wait this long unless told otherwise.
DEFAULT_TIMEOUT_MS = 10_000
LIVE_TIMEOUT_MS = 15_000
BLOCKING_IMPACTS = ("serious", "critical")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Records in the page, before its own scripts, each live view that opened
# (htmx's SSE extension fires htmx:sseOpen), so that a test can wait for the
# inbox to listen before it sends something the inbox should show.
INIT_SCRIPT = """
document.addEventListener('htmx:sseOpen', () => { window.__sseOpen = (window.__sseOpen || 0) + 1; });
"""

# Plain HTTP to the local servers, never through a proxy of the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 15):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Failure(AssertionError):
    pass


def check(condition, message: str) -> None:
    if not condition:
        raise Failure(message)


# --------------------------------------------------------------------------
# The server and its API


class Server:
    """`integro serve` on a free port with a fresh data directory; its log
    (stdout and stderr) in a file whose end is printed on failure."""

    def __init__(self, binary: str, twilio_base: str, database_url: str | None):
        self.binary = binary
        self.twilio_base = twilio_base
        self.database_url = database_url
        self.work = tempfile.mkdtemp(prefix="integro-browser-")
        self.log_path = os.path.join(self.work, "server.log")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRO_")}
        env.update(
            INTEGRO_LISTEN=f"127.0.0.1:{self.port}",
            INTEGRO_PUBLIC_URL=self.base,
            INTEGRO_DATA_DIR=os.path.join(self.work, "data"),
            INTEGRO_ADMIN_EMAIL=EMAIL,
            INTEGRO_ADMIN_PASSWORD=PASSWORD,
            INTEGRO_TWILIO_API_BASE=self.twilio_base,
            INTEGRO_OUTBOUND_ALLOW="127.0.0.1:*",
            INTEGRO_LOG="warn",
        )
        if self.database_url:
            env["INTEGRO_DATABASE_URL"] = self.database_url
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve"], env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"`{self.binary} serve` exited with {self.proc.returncode} before it was ready")
            try:
                status, _ = http("GET", self.base + "/readyz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise Failure(f"`{self.binary} serve` was not ready at {self.base}/readyz within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def cleanup(self) -> None:
        subprocess.run(["rm", "-rf", self.work], check=False)


class Api:
    def __init__(self, base: str):
        self.base = base
        self.token: str | None = None
        self.tenant: str | None = None

    def call(self, method: str, path: str, body=None, tenant: bool = True, expect_status=(200, 201)):
        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if tenant and self.tenant:
            headers["x-integro-tenant"] = self.tenant
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        status, raw = http(method, self.base + path, data, headers)
        if status not in expect_status:
            raise Failure(f"{method} {path} answered {status}: {raw[:500].decode('utf-8', 'replace')}")
        return json.loads(raw) if raw else None

    def login(self) -> None:
        self.token = self.call("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD}, tenant=False)[
            "access_token"
        ]


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def post_webhook(server: Server, account_id: str, contact: dict, text: str) -> None:
    """An inbound WhatsApp message from `contact`, signed as Twilio does."""
    sid = "SM" + secrets.token_hex(16)
    params = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{contact['number']}",
        "To": f"whatsapp:{BUSINESS_NUMBER}",
        "Body": text,
        "NumMedia": "0",
        "ProfileName": contact["name"],
        "WaId": contact["number"].lstrip("+"),
    }
    path = f"/webhooks/twilio/{account_id}"
    signature = twilio_signature(AUTH_TOKEN, server.base + path, params)
    status, raw = http(
        "POST",
        server.base + path,
        urllib.parse.urlencode(params).encode(),
        {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
    )
    check(status == 200, f"the signed webhook answered {status}: {raw[:300].decode('utf-8', 'replace')}")


def submit(page: Page, button, what: str, statuses=(303,)):
    """Clicks a form's submit button and checks the answer to the POST the
    browser then sends as a page load (not htmx's); the failure says what the
    server answered instead."""
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.request.resource_type == "document"
    ) as info:
        button.click()
    response = info.value
    if response.status not in statuses:
        ctype = response.headers.get("content-type", "")
        try:
            text = response.text()
        except Exception:  # noqa: BLE001
            text = ""
        if "json" in ctype:
            try:
                text = json.loads(text).get("detail", text)
            except ValueError:
                pass
        text = " ".join(re.sub(r"<[^>]+>", " ", text).split())[:400]
        path = urllib.parse.urlsplit(response.url).path
        raise Failure(
            f"{what}: the browser's POST {path} was answered {response.status} ({ctype}), "
            f"not {' or '.join(map(str, statuses))}: {text}"
        )
    page.wait_for_load_state()
    return response


# --------------------------------------------------------------------------
# One database's run


class StaticSite:
    """A website of another origin (`localhost`, another port) with one page
    that embeds the widget, as a customer's site would."""

    def __init__(self):
        import http.server
        import threading

        self.page = b""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the library's name
                body = site.page
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()


class Run:
    def __init__(self, label: str, server: Server, mock: TwilioMock, shots: Path | None):
        self.label = label
        self.server = server
        self.mock = mock
        self.shots = shots
        self.api = Api(server.base)
        self.axe = Axe()
        self.audited: list[str] = []
        self.a11y_problems: list[str] = []
        self.a11y_notes: list[str] = []
        self.console_errors: list[str] = []
        self.passed = 0
        self.failed = 0
        self.nonce = secrets.token_hex(3)
        self.ids: dict[str, str] = {}
        self.page: Page | None = None
        found = re.search(r"axe v([0-9][0-9.]*)", self.axe.axe_script[:200])
        self.axe_version = found.group(1) if found else "(unknown version)"

    # -- reporting --------------------------------------------------------
    def scenario(self, name: str, fn) -> bool:
        started = time.monotonic()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported
            elapsed = time.monotonic() - started
            self.failed += 1
            print(f"  FAIL {self.label}: {name} ({elapsed:.1f} s)", flush=True)
            here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
            where = "(at " + " → ".join(f"{f.name}:{f.lineno}" for f in here if f.name != "scenario") + ")"
            if isinstance(e, Failure):
                lines = str(e).strip().splitlines()  # ours: whole (axe's findings)
            else:  # Playwright's, with its call log and page snapshot: the start
                lines = f"{type(e).__name__}: {str(e).strip()}".splitlines()[:25]
            for line in lines + [where]:
                print(f"       {line}", flush=True)
            if self.page is not None:
                try:
                    print(f"       (page: {self.page.url})", flush=True)
                except Exception:  # noqa: BLE001
                    pass
            return False
        self.passed += 1
        print(f"  ok   {self.label}: {name} ({time.monotonic() - started:.1f} s)", flush=True)
        return True

    def audit(self, page: Page, name: str) -> None:
        """axe-core on the page as it is now; serious and critical findings
        are kept for scenario 9 (and printed there)."""
        page.wait_for_load_state("load")
        results = self.axe.run(page)
        self.audited.append(name)
        for v in results.response["violations"]:
            if v.get("impact") not in BLOCKING_IMPACTS:
                targets = ", ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:5])
                self.a11y_notes.append(f"{name}: {v['id']} [{v.get('impact')}] {v['help']}; targets: {targets}")
                continue
            lines = [f"{name} ({page.url}): {v['id']} [{v['impact']}] {v['help']}"]
            for node in v["nodes"]:
                target = " ".join(json.dumps(t) if not isinstance(t, str) else t for t in node["target"])
                summary = " / ".join(s.strip() for s in (node.get("failureSummary") or "").splitlines()[1:] if s.strip())
                lines.append(f"    target {target}: {summary}")
            self.a11y_problems.append("\n".join(lines))

    def screenshot(self, page: Page, name: str) -> None:
        if self.shots is not None:
            page.screenshot(path=str(self.shots / name), full_page=True)

    def no_reload_marker(self, page: Page, value: str) -> None:
        page.evaluate("v => { window.__noReload = v; }", value)

    def still_same_document(self, page: Page, value: str, what: str) -> None:
        check(
            page.evaluate("() => window.__noReload") == value,
            f"{what}: the page was reloaded (the update was not made in place)",
        )

    # -- data through the API --------------------------------------------
    def set_up_data(self) -> None:
        self.api.login()
        self.ids["tenant"] = self.api.call("POST", "/api/v1/tenants", {"name": "Shop"}, tenant=False)["id"]
        self.api.tenant = self.ids["tenant"]
        self.ids["bot"] = self.api.call(
            "POST", "/api/v1/bots", {"name": "Helper", "fallback_reply": FALLBACK}
        )["id"]
        self.ids["account"] = self.api.call(
            "POST",
            "/api/v1/accounts",
            {
                "bot_id": self.ids["bot"],
                "kind": "twilio_whatsapp",
                "name": "Main",
                "credentials": {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN,
                    "phone_number": BUSINESS_NUMBER,
                },
            },
        )["id"]
        self.ids["rule"] = self.api.call(
            "POST",
            f"/api/v1/bots/{self.ids['bot']}/rules",
            {"name": "Opening hours", "match": "contains", "pattern": "hours", "reply": "We are open 9 to 5."},
        )["id"]

    def dead_jobs(self) -> list[dict]:
        return self.api.call("GET", "/api/v1/jobs?state=dead")["items"]

    # -- the scenarios ----------------------------------------------------
    def s1_sign_in(self) -> None:
        page, base = self.page, self.server.base
        page.goto(base + "/")
        expect(page).to_have_url(re.compile(r"/login(\?.*)?$"))
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        self.audit(page, "login")
        self.screenshot(page, "login.png")

        page.get_by_label("Email", exact=True).fill(EMAIL)
        page.get_by_label("Password", exact=True).fill("not-the-password")
        refused = submit(page, page.get_by_role("button", name="Sign in"), "a wrong password", statuses=(401,))
        check(
            "text/html" in (refused.headers.get("content-type") or ""),
            f"the refused sign-in came as {refused.headers.get('content-type')!r}, not as the HTML form",
        )
        expect(page.get_by_role("alert")).to_contain_text("wrong email or password")
        expect(page).to_have_url(re.compile(r"/login(\?.*)?$"))
        self.audit(page, "login (wrong password)")

        page.get_by_label("Email", exact=True).fill(EMAIL)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        submit(page, page.get_by_role("button", name="Sign in"), "signing in")
        expect(page).to_have_url(base + "/inbox")
        expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")
        # The only tenant is chosen by itself, and the header says which.
        expect(page.get_by_label("Tenant", exact=True)).to_have_value(self.ids["tenant"])
        expect(page.get_by_role("button", name="Switch")).to_be_visible()
        # Signed in, / goes to the inbox.
        page.goto(base + "/")
        expect(page).to_have_url(base + "/inbox")

    def s2_inbox_live(self) -> None:
        page, base = self.page, self.server.base
        if not page.url.endswith("/inbox"):
            page.goto(base + "/inbox")
        expect(page.locator("#rows")).to_contain_text("No conversations yet")
        # The inbox listens (its event stream is open) before anything is sent.
        page.wait_for_function("() => (window.__sseOpen || 0) > 0", timeout=LIVE_TIMEOUT_MS)
        time.sleep(0.5)
        self.no_reload_marker(page, "inbox")
        text = f"Do you deliver to Lisbon? ({self.nonce})"
        sends_before = len(self.mock.sends())
        post_webhook(self.server, self.ids["account"], ANN, text)
        rows = page.locator("#rows")
        expect(rows).to_contain_text(ANN["name"], timeout=LIVE_TIMEOUT_MS)
        expect(rows.get_by_role("link", name=ANN["name"], exact=True)).to_be_visible()
        self.still_same_document(page, "inbox", "the new conversation")
        # The bot answered with its fallback reply, through the mock.
        self.mock.wait_for_send(
            lambda r: r.status == 201 and r.form.get("To") == f"whatsapp:{ANN['number']}" and r.form.get("Body") == FALLBACK,
            since=sends_before,
        )
        # ...and the inbox shows the conversation's latest message, still live.
        expect(rows).to_contain_text(FALLBACK, timeout=LIVE_TIMEOUT_MS)
        self.still_same_document(page, "inbox", "the bot's reply")
        self.audit(page, "inbox")
        self.screenshot(page, "inbox.png")

    def s3_conversation(self) -> None:
        page, base = self.page, self.server.base
        if not page.url.endswith("/inbox"):
            page.goto(base + "/inbox")
        page.locator("#rows").get_by_role("link", name=ANN["name"], exact=True).click()
        expect(page).to_have_url(re.compile(rf"/conversations/{UUID}$"))
        self.ids["ann_conversation"] = page.url.rsplit("/", 1)[1]
        messages = page.locator("#messages")
        expect(messages).to_contain_text("Do you deliver to Lisbon?")
        self.audit(page, "conversation")

        expect(page.get_by_role("button", name="Resume")).to_have_count(0)
        submit(page, page.get_by_role("button", name="Hand off"), "Hand off")
        expect(page.get_by_role("button", name="Resume")).to_be_visible()
        expect(page.get_by_role("button", name="Hand off")).to_have_count(0)
        expect(page.locator("#state")).to_have_text("human")

        text = f"Hello Ann, a person here: yes, we deliver to Lisbon. ({self.nonce})"
        sends_before = len(self.mock.sends())
        page.get_by_label("Message", exact=True).fill(text)
        submit(page, page.get_by_role("button", name="Send"), "Send")
        expect(page).to_have_url(re.compile(rf"/conversations/{self.ids['ann_conversation']}$"))
        sent = self.mock.wait_for_send(lambda r: r.form.get("Body") == text, since=sends_before)
        check(sent.status == 201, f"the mock answered the send with {sent.status}")
        check(
            sent.form.get("To") == f"whatsapp:{ANN['number']}" and sent.form.get("From") == f"whatsapp:{BUSINESS_NUMBER}",
            f"the send went from {sent.form.get('From')} to {sent.form.get('To')}",
        )
        item = messages.locator("li", has_text=text)
        expect(item).to_be_visible()
        expect(item.locator(".status")).not_to_be_empty()
        self.audit(page, "conversation (after a send)")
        self.screenshot(page, "conversation.png")

        submit(page, page.get_by_role("button", name="Resume"), "Resume")
        expect(page.get_by_role("button", name="Hand off")).to_be_visible()
        expect(page.locator("#state")).to_have_text("bot")

    def s13_canned_reply_and_label(self) -> None:
        """Add a canned reply; in Ann's conversation type "/" in Message,
        pick it with the keyboard, send it; label the conversation."""
        page, base = self.page, self.server.base
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Canned replies").click()
        expect(page).to_have_url(base + "/canned-replies")
        text = f"We deliver to Lisbon within two days. ({self.nonce})"
        page.locator("#new-shortcut").fill("lisbon")
        page.locator("#new-text").fill(text)
        submit(page, page.get_by_role("button", name="Add canned reply"), "a canned reply")
        expect(page.get_by_role("button", name="Delete /lisbon")).to_be_visible()
        self.audit(page, "canned replies")

        page.goto(f"{base}/conversations/{self.ids['ann_conversation']}")
        box = page.get_by_label("Message", exact=True)
        box.fill("")
        box.press_sequentially("/lis")
        options = page.get_by_role("listbox", name="Canned replies")
        expect(options).to_be_visible()
        option = options.get_by_role("option").filter(has_text="/lisbon")
        expect(option).to_have_attribute("aria-selected", "true")
        check(
            box.get_attribute("aria-activedescendant") == option.get_attribute("id"),
            "the message box names the highlighted reply (aria-activedescendant)",
        )
        self.audit(page, "conversation (canned replies offered)")
        box.press("Escape")
        expect(options).to_be_hidden()
        box.fill("")
        box.press_sequentially("/lis")
        expect(option).to_be_visible()
        box.press("Enter")
        expect(options).to_be_hidden()
        expect(box).to_have_value(text)
        sends_before = len(self.mock.sends())
        submit(page, page.get_by_role("button", name="Send"), "Send (a canned reply)")
        self.mock.wait_for_send(lambda r: r.form.get("Body") == text, since=sends_before)

        page.get_by_label("Add a label").fill("Lisbon")
        submit(page, page.get_by_role("button", name="Add label"), "a label")
        expect(page.get_by_role("button", name="Remove label Lisbon")).to_be_visible()
        self.audit(page, "conversation (labelled)")

    def s4_rules(self) -> None:
        page, base = self.page, self.server.base
        bot, rule = self.ids["bot"], self.ids["rule"]
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Bots").click()
        expect(page).to_have_url(base + "/bots")
        self.audit(page, "bots")
        page.get_by_role("link", name="Rules of Helper").click()
        expect(page).to_have_url(f"{base}/bots/{bot}/rules")
        self.audit(page, "rules")

        details = page.locator(f"details#rule-{rule}")
        expect(details.locator("summary")).to_contain_text("Opening hours")
        details.locator("summary").click()
        expect(details).to_have_attribute("open", "")
        reply = details.get_by_label("Reply", exact=True)
        expect(reply).to_have_value("We are open 9 to 5.")
        expect(details.get_by_label("Pattern", exact=True)).to_have_value("hours")
        expect(details.get_by_label("Match", exact=True)).to_have_value("contains")
        expect(details.get_by_label("Active", exact=True)).to_be_checked()
        new_reply = f"We are open 8 to 8, every day. ({self.nonce})"
        reply.fill(new_reply)
        submit(page, details.get_by_role("button", name="Save"), "Save")
        expect(page).to_have_url(re.compile(rf"/bots/{bot}/rules(#rule-{rule})?$"))
        details = page.locator(f"details#rule-{rule}")
        expect(details.get_by_label("Reply", exact=True)).to_have_value(new_reply)
        expect(details.get_by_label("Pattern", exact=True)).to_have_value("hours")
        stored = self.api.call("GET", f"/api/v1/bots/{bot}/rules/{rule}")
        check(stored.get("reply") == new_reply, f"the API has the rule's reply as {stored.get('reply')!r}")

        self.no_reload_marker(page, "rules")
        page.get_by_label("Test message", exact=True).fill("What are your hours on Sunday?")
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/try")) as tried:
            page.get_by_role("button", name="Try").click()
        check(
            tried.value.status == 200,
            f"the dry run's POST was answered {tried.value.status}: {' '.join(tried.value.text().split())[:300]}",
        )
        result = page.locator("#try-result")
        expect(result).to_contain_text(new_reply)
        expect(result).to_contain_text("Opening hours")
        self.still_same_document(page, "rules", "the dry run")
        # The editor open beside the result, for axe and the picture.
        details.locator("summary").click()
        expect(details).to_have_attribute("open", "")
        self.audit(page, "rules (an open rule and a dry run)")
        self.screenshot(page, "rules.png")

    def s5_dead_job(self) -> None:
        page, base = self.page, self.server.base
        text = f"Is anyone there? ({self.nonce})"
        ben_to = f"whatsapp:{BEN['number']}"
        check(not self.dead_jobs(), "a dead job was listed before the provider failed")
        sends_before = len(self.mock.sends())
        self.mock.failing = True
        try:
            post_webhook(self.server, self.ids["account"], BEN, text)
            self.mock.wait_for_send(lambda r: r.status == 400 and r.form.get("To") == ben_to, since=sends_before)
            deadline = time.monotonic() + 20
            dead = []
            while time.monotonic() < deadline:
                dead = self.dead_jobs()
                if dead:
                    break
                time.sleep(0.25)
        finally:
            self.mock.failing = False
        check(len(dead) == 1, f"after a permanent send error the API lists {len(dead)} dead jobs (wanted 1)")
        job = dead[0]
        check(
            "21211" in (job.get("last_error") or "") or "not a valid phone number" in (job.get("last_error") or ""),
            f"the dead job's last error does not say why: {job.get('last_error')!r}",
        )

        # The conversation shows the reply as not delivered, with the reason.
        page.goto(base + "/inbox")
        page.locator("#rows").get_by_role("link", name=BEN["name"], exact=True).click()
        expect(page).to_have_url(re.compile(rf"/conversations/{UUID}$"))
        failed = page.locator("#messages li.failed")
        expect(failed).to_contain_text("Not delivered:")
        expect(failed).to_contain_text("not a valid phone number")
        self.audit(page, "conversation (an undelivered message)")

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
        expect(page).to_have_url(base + "/jobs")
        row = page.locator(f"#job-{job['id']}")
        expect(row).to_be_visible()
        expect(row.get_by_role("button", name="Cancel")).to_be_visible()
        self.audit(page, "jobs (a dead job)")
        self.screenshot(page, "jobs.png")

        sends_before = len(self.mock.sends())
        submit(page, row.get_by_role("button", name="Retry"), "Retry")
        expect(page).to_have_url(re.compile(r"/jobs(\?state=dead)?$"))
        expect(page.locator(f"#job-{job['id']}")).to_have_count(0)
        expect(page.locator("tbody")).to_contain_text("No dead jobs.")
        sent = self.mock.wait_for_send(lambda r: r.form.get("To") == ben_to, since=sends_before)
        check(sent.status == 201, f"the retried send was answered {sent.status}")
        check(sent.form.get("Body") == FALLBACK, f"the retried send's body is {sent.form.get('Body')!r}")
        deadline = time.monotonic() + 15
        state = None
        while time.monotonic() < deadline:
            state = self.api.call("GET", f"/api/v1/jobs/{job['id']}")["state"]
            if state == "done":
                break
            time.sleep(0.25)
        check(state == "done", f"the retried job is {state!r}, not done")
        check(all(j["id"] != job["id"] for j in self.dead_jobs()), "the retried job is still listed as dead")

    def s6_sessions(self) -> None:
        page, base = self.page, self.server.base
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
        expect(page).to_have_url(base + "/account/sessions")
        expect(page.locator("tbody")).to_contain_text("(this one)")
        expect(page.get_by_role("button", name="Sign out this session").first).to_be_visible()
        self.audit(page, "sessions")

    def s7_error_page(self) -> None:
        page, base = self.page, self.server.base
        response = page.goto(f"{base}/conversations/00000000-0000-0000-0000-000000000000")
        check(response is not None and response.status == 404, f"an unknown conversation answered {response and response.status}")
        check(
            "text/html" in (response.headers.get("content-type") or ""),
            f"the error page came as {response.headers.get('content-type')!r}, not HTML",
        )
        expect(page.get_by_role("heading", level=1)).to_have_text("404 Not Found")
        expect(page.get_by_role("alert")).to_contain_text("conversation")
        expect(page.get_by_role("link", name="Back to the inbox")).to_be_visible()
        self.audit(page, "error page (404)")

    def s8_tenant_picker(self, browser) -> None:
        base = self.server.base
        other = self.api.call("POST", "/api/v1/tenants", {"name": "Other"}, tenant=False)["id"]
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            self.watch(page)
            page.set_default_timeout(DEFAULT_TIMEOUT_MS)
            page.goto(base + "/login")
            page.get_by_label("Email", exact=True).fill(EMAIL)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            submit(page, page.get_by_role("button", name="Sign in"), "signing in")
            expect(page).to_have_url(base + "/tenant")
            picker = page.get_by_label("Tenant", exact=True)
            expect(picker.locator("option")).to_have_count(2)
            self.audit(page, "tenant picker")
            picker.select_option(label="Shop")
            submit(page, page.get_by_role("button", name="Continue"), "Continue")
            expect(page).to_have_url(base + "/inbox")
            expect(page.get_by_label("Tenant", exact=True)).to_have_value(self.ids["tenant"])
            expect(page.locator("#rows")).to_contain_text(ANN["name"])
            # The header's switch, to the tenant with nothing in it.
            page.get_by_label("Tenant", exact=True).select_option(other)
            submit(page, page.get_by_role("button", name="Switch"), "Switch")
            expect(page).to_have_url(base + "/inbox")
            expect(page.get_by_label("Tenant", exact=True)).to_have_value(other)
            expect(page.locator("#rows")).to_contain_text("No conversations yet")
        finally:
            context.close()

    def s10_widget(self) -> None:
        """The widget on a static page of another origin: a visitor writes,
        the bot's reply arrives over its event stream."""
        site = StaticSite()
        try:
            account = self.api.call(
                "POST",
                "/api/v1/accounts",
                {"bot_id": self.ids["bot"], "kind": "web", "name": "Website", "credentials": {}},
            )["id"]
            public = self.api.call(
                "PUT",
                f"/api/v1/accounts/{account}/web-public",
                {"enabled": True, "allowed_origins": [site.origin]},
            )
            key = public["publishable_key"]
            site.page = (
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>A shop</title></head>"
                "<body><main><h1>A shop</h1><p>Our products.</p></main>"
                f"<script src=\"{self.server.base}/widget.js\" data-account=\"{account}\" data-key=\"{key}\" defer></script>"
                "</body></html>"
            ).encode()
            page = self.page
            page.goto(site.origin + "/")
            toggle = page.get_by_role("button", name="Chat with us")
            expect(toggle).to_be_visible()
            toggle.click()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            text = f"Hello from the website ({self.nonce})"
            page.get_by_label("Message", exact=True).fill(text)
            page.get_by_role("button", name="Send", exact=True).click()
            log = page.get_by_role("list", name="Conversation")
            expect(log).to_contain_text(text, timeout=LIVE_TIMEOUT_MS)
            expect(log).to_contain_text(FALLBACK, timeout=LIVE_TIMEOUT_MS)
            self.audit(page, "widget (on another origin)")
            self.screenshot(page, "widget.png")
            # The visitor is an ordinary contact in the tenant's inbox.
            conversations = self.api.call("GET", f"/api/v1/conversations?account_id={account}")["items"]
            check(len(conversations) == 1, f"one conversation for the website, found {len(conversations)}")
        finally:
            site.stop()

    def s11_team_and_operations(self) -> None:
        """Invite someone from the Team page; the link is shown once; the
        webhook and audit logs list what happened."""
        page, base = self.page, self.server.base
        page.goto(base + "/team")
        page.get_by_label("Email", exact=True).fill(f"nina-{self.nonce}@example.com")
        submit(page, page.get_by_role("button", name="Invite"), "an invitation", statuses=(201,))
        link = page.get_by_label("Copy this").input_value()
        check("/invitation?token=" in link, f"the invitation link is shown: {link!r}")
        self.audit(page, "team (an invitation just made)")
        page.goto(base + "/operations/webhooks")
        expect(page.locator("main details").first).to_be_visible()
        self.audit(page, "webhook log")
        page.goto(base + "/operations/audit")
        expect(page.locator("main table")).to_contain_text("invitation.create")
        self.audit(page, "audit log")
        # The invitation page, as the invited person sees it (signed out).
        context = page.context.browser.new_context(viewport=VIEWPORT)
        try:
            visitor = context.new_page()
            visitor.goto(link)
            expect(visitor.get_by_role("button", name="Join")).to_be_visible()
            self.audit(visitor, "invitation (signed out)")
        finally:
            context.close()

    def s12_channels(self) -> None:
        """Add a WhatsApp (Cloud API) account with the fields of its kind;
        the channels page shows the callback URL to paste at Meta."""
        page, base = self.page, self.server.base
        page.goto(base + "/channels")
        self.audit(page, "channels")
        page.get_by_label("Kind of account").select_option("whatsapp_cloud")
        page.get_by_role("button", name="Add account").click()
        expect(page.get_by_role("heading", name="New whatsapp_cloud account")).to_be_visible()
        self.audit(page, "new channel account")
        page.get_by_label("Name", exact=True).fill("Cloud number")
        page.get_by_label("phone_number_id").fill("106540352242922")
        page.get_by_label("access_token (secret)").fill("EAAG-" + self.nonce)
        page.get_by_label("app_secret (secret)").fill("app-secret-" + self.nonce)
        page.get_by_label("verify_token (secret)").fill("verify-" + self.nonce)
        submit(page, page.get_by_role("button", name="Create account"), "a new account")
        expect(page.locator("main")).to_contain_text("/webhooks/whatsapp/")
        check("EAAG-" + self.nonce not in page.content(), "a secret was shown back")
        page.goto(base + "/ai")
        expect(page.get_by_role("button", name="Add credential")).to_be_visible()
        self.audit(page, "ai")

    def s14_usage_bot_events_connection(self) -> None:
        """The usage charts; the bot's page saves a new persona name; the
        events list; the Twilio account's connection test reads the account
        from the mock."""
        page, base = self.page, self.server.base
        bot, account = self.ids["bot"], self.ids["account"]
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
        expect(page).to_have_url(base + "/usage")
        expect(page.get_by_role("heading", level=1)).to_have_text("Usage")
        expect(page.locator("main figure.chart svg").first).to_be_visible()
        self.audit(page, "usage")

        page.goto(base + "/bots")
        page.locator("main").get_by_role("link", name="Helper", exact=True).click()
        expect(page).to_have_url(f"{base}/bots/{bot}")
        expect(page.get_by_role("button", name="Save bot")).to_be_visible()
        persona = f"Ada ({self.nonce})"
        page.get_by_label("Persona name", exact=True).fill(persona)
        submit(page, page.get_by_role("button", name="Save persona"), "Save persona")
        expect(page).to_have_url(re.compile(rf"/bots/{bot}(#persona)?$"))
        expect(page.get_by_label("Persona name", exact=True)).to_have_value(persona)
        stored = self.api.call("GET", f"/api/v1/bots/{bot}/persona")
        check(stored.get("name") == persona, f"the API has the persona's name as {stored.get('name')!r}")
        self.audit(page, "bot (persona saved)")

        page.goto(base + "/operations/events")
        expect(page.get_by_role("heading", level=1)).to_have_text("Events")
        expect(page.locator("main table")).to_be_visible()
        self.audit(page, "events")

        page.goto(base + "/channels")

        def account_reads() -> list[int]:
            """The statuses the mock answered reads of the Twilio account with."""
            path = f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"
            return [r.status for r in self.mock.requests() if r.method == "GET" and r.path == path]

        reads_before = len(account_reads())
        submit(
            page,
            page.get_by_role("button", name="Test connection of Main", exact=True),
            "the connection test",
            statuses=(200,),
        )
        status = page.locator(f"#account-{account}").get_by_role("status")
        expect(status).to_have_text(re.compile(rf"^\s*Connected: Twilio account {re.escape(FRIENDLY_NAME)} is active\s*$"))
        reads = account_reads()[reads_before:]
        check(reads == [200], f"the Twilio mock answered the account's reads with {reads}, not [200]")
        self.audit(page, "channels (a connection tested)")

    def s15_posts(self) -> None:
        """The owner writes a post on an X account, submitted for an hour
        ahead, and approves it: scheduled, nothing published. Another,
        rejected with a reason, shows the reason."""
        page, base = self.page, self.server.base
        account = self.api.call(
            "POST",
            "/api/v1/accounts",
            {"bot_id": self.ids["bot"], "kind": "x", "name": "Shop on X", "credentials": X_CREDENTIALS},
        )["id"]
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Posts").click()
        expect(page).to_have_url(base + "/posts")
        expect(page.get_by_role("heading", level=1)).to_have_text("Posts")
        compose = page.get_by_role("form", name="Write a post")
        expect(compose).to_contain_text("$0.20")
        self.audit(page, "posts")

        def write(text: str, at: str) -> None:
            compose = page.get_by_role("form", name="Write a post")
            compose.get_by_label("X account", exact=True).select_option(account)
            compose.get_by_label("Text", exact=True).fill(text)
            compose.get_by_label("Publish at (UTC, optional)").fill(at)
            compose.get_by_label("Submit for approval").check()

        an_hour = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3600))
        too_long = "Far too long " * 30
        write(too_long, an_hour)
        submit(page, page.get_by_role("button", name="Save post"), "a post too long", statuses=(422,))
        compose = page.get_by_role("form", name="Write a post")
        expect(compose.get_by_role("alert")).to_contain_text("Text: is")
        expect(compose.get_by_label("Text", exact=True)).to_have_value(too_long)
        expect(compose.get_by_label("Publish at (UTC, optional)")).to_have_value(an_hour)
        self.audit(page, "posts (a refused post)")

        text = f"Spring sale starts Monday ({self.nonce})"
        write(text, an_hour)
        submit(page, page.get_by_role("button", name="Save post"), "a post")
        posts = self.api.call("GET", "/api/v1/posts")["items"]
        post = next(p for p in posts if p["text"] == text)
        check(post["state"] == "pending_approval", f"the new post is {post['state']!r}, not pending_approval")
        row = page.locator(f"#post-{post['id']}")
        expect(row).to_contain_text("pending_approval")
        submit(page, row.get_by_role("button", name="Approve"), "Approve")
        row = page.locator(f"#post-{post['id']}")
        expect(row.locator(".post-state")).to_have_text("scheduled")
        expect(row).to_contain_text("Scheduled for")
        expect(row).to_contain_text(f"Approved by {EMAIL}")
        stored = self.api.call("GET", f"/api/v1/posts/{post['id']}")
        check(stored["state"] == "scheduled", f"the approved post is {stored['state']!r}, not scheduled")
        check(stored.get("published_at") is None, "the post scheduled an hour ahead was published")

        second = f"Everything must go ({self.nonce})"
        write(second, an_hour)
        submit(page, page.get_by_role("button", name="Save post"), "a second post")
        other = next(p for p in self.api.call("GET", "/api/v1/posts")["items"] if p["text"] == second)
        row = page.locator(f"#post-{other['id']}")
        reason = "Too pushy for our tone"
        row.get_by_label("Reason for rejecting").fill(reason)
        submit(page, row.get_by_role("button", name="Reject"), "Reject")
        row = page.locator(f"#post-{other['id']}")
        expect(row.locator(".post-state")).to_have_text("rejected")
        expect(row).to_contain_text(f"Rejected: {reason}")
        stored = self.api.call("GET", f"/api/v1/posts/{other['id']}")
        check(stored["reject_reason"] == reason, f"the API has the reason as {stored.get('reject_reason')!r}")
        self.audit(page, "posts (one scheduled, one rejected)")
        self.screenshot(page, "posts.png")

    def s9_accessibility(self) -> None:
        check(self.audited, "no page was checked")
        if self.a11y_problems:
            raise Failure(
                f"axe found {len(self.a11y_problems)} serious or critical violations:\n" + "\n".join(self.a11y_problems)
            )
        print(f"       axe {self.axe_version}: {len(self.audited)} page states checked: {', '.join(self.audited)}")
        for note in self.a11y_notes:
            print(f"       (moderate or minor, not failing) {note}")

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda e: self.console_errors.append(f"{page.url}: uncaught {e}"))
        page.on(
            "console",
            lambda m: self.console_errors.append(f"{page.url}: console {m.type}: {m.text}") if m.type == "error" else None,
        )

    # -- all of it --------------------------------------------------------
    def run(self, playwright) -> None:
        self.set_up_data()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(INIT_SCRIPT)
            self.page = context.new_page()
            self.page.set_default_timeout(DEFAULT_TIMEOUT_MS)
            self.watch(self.page)
            expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
            signed_in = self.scenario("1 sign in (wrong password refused, then the inbox)", self.s1_sign_in)
            rest = [
                ("2 a webhook appears in the open inbox without a reload", self.s2_inbox_live),
                ("3 conversation: hand off, send by hand, resume", self.s3_conversation),
                ("13 canned reply picked with / in Message and sent; a label added", self.s13_canned_reply_and_label),
                ("4 rules: edit a reply, dry run answers with it", self.s4_rules),
                ("5 dead job: permanent send error, retried from /jobs", self.s5_dead_job),
                ("6 sessions list", self.s6_sessions),
                ("7 an unknown conversation shows the error page", self.s7_error_page),
                ("8 tenant picker and tenant switch", lambda: self.s8_tenant_picker(browser)),
                ("10 the web chat widget on another origin's page gets a bot reply", self.s10_widget),
                ("11 team: an invitation's link shown once; webhook and audit logs", self.s11_team_and_operations),
                ("12 channels: a WhatsApp Cloud account added, its callback URL shown; the AI page", self.s12_channels),
                (
                    "14 usage charts; a bot's persona saved; events; a Twilio account's connection test",
                    self.s14_usage_bot_events_connection,
                ),
                ("15 posts: one written, submitted and approved (scheduled); one rejected with a reason", self.s15_posts),
            ]
            for name, fn in rest:
                if signed_in:
                    self.scenario(name, fn)
                else:
                    self.failed += 1
                    print(f"  FAIL {self.label}: {name} (not run: signing in failed)")
            self.scenario("9 axe: no serious or critical violation on any page", self.s9_accessibility)
            context.close()
        finally:
            browser.close()
        if self.console_errors:
            print(f"  note {self.label}: the browser's console had errors:")
            for line in self.console_errors[:20]:
                print(f"       {line}")


# --------------------------------------------------------------------------


def postgres_database(admin_url: str) -> tuple[str, str]:
    """Creates a fresh database on the server of `admin_url`: (its name, its URL)."""
    name = "integro_browser_" + secrets.token_hex(6)
    subprocess.run(["psql", admin_url, "-qXc", f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL)
    parts = urllib.parse.urlsplit(admin_url)
    return name, urllib.parse.urlunsplit(parts._replace(path="/" + name))


def drop_database(admin_url: str, name: str) -> None:
    subprocess.run(
        ["psql", admin_url, "-qXc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
        check=False,
        stdout=subprocess.DEVNULL,
    )


def run_database(label: str, binary: str, database_url: str | None, shots: Path | None, playwright) -> tuple[int, int]:
    started = time.monotonic()
    mock = TwilioMock().start()
    server = Server(binary, mock.base_url, database_url)
    run = Run(label, server, mock, shots)
    ok = False
    try:
        server.start()
        print(f"browser: {label}: integro serve at {server.base}, Twilio mock at {mock.base_url}", flush=True)
        run.run(playwright)
        ok = run.failed == 0
    except Exception as e:  # noqa: BLE001
        run.failed += 1
        print(f"  FAIL {label}: the run stopped: {e}", flush=True)
        traceback.print_exc()
    finally:
        server.stop()
        mock.stop()
        if not ok:
            print(f"  the end of the server's log ({label}):")
            for line in server.tail().splitlines():
                print(f"       {line}")
        server.cleanup()
    print(f"browser: {label}: {run.passed} passed, {run.failed} failed in {time.monotonic() - started:.0f} s", flush=True)
    return run.passed, run.failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", default="target/debug/integro")
    parser.add_argument("--screenshots", metavar="DIR", type=Path, help="save PNGs of the main pages into DIR")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres", "all"],
        default="all",
        help="all: SQLite, and PostgreSQL when INTEGRO_TEST_POSTGRES_URL is set (the default)",
    )
    args = parser.parse_args()
    # Stopped from outside, still stop the server and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"browser: {args.binary} is not an executable", file=sys.stderr)
        return 2
    if not os.access(CHROMIUM, os.X_OK):
        print(f"browser: {CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    pg_url = os.environ.get("INTEGRO_TEST_POSTGRES_URL")
    if args.database == "postgres" and not pg_url:
        print("browser: --database postgres needs INTEGRO_TEST_POSTGRES_URL", file=sys.stderr)
        return 2

    started = time.monotonic()
    passed = failed = 0
    shots = args.screenshots
    with sync_playwright() as playwright:
        if args.database in ("sqlite", "all"):
            p, f = run_database("sqlite", binary, None, shots, playwright)
            passed, failed, shots = passed + p, failed + f, None
        if args.database in ("postgres", "all") and pg_url:
            name, url = postgres_database(pg_url)
            try:
                p, f = run_database("postgres", binary, url, shots, playwright)
                passed, failed = passed + p, failed + f
            finally:
                drop_database(pg_url, name)
        elif args.database == "all":
            print("browser: INTEGRO_TEST_POSTGRES_URL is not set: PostgreSQL skipped")
    if args.screenshots and failed == 0:
        print(f"browser: screenshots in {args.screenshots}")
    print(f"browser: {time.monotonic() - started:.0f} s in all")
    print(f"browser: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
