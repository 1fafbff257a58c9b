"""A local stand-in for Twilio's Messages API, for the browser suite.

`POST /2010-04-01/Accounts/{sid}/Messages.json` answers 201 with a new
message SID (`{"sid": "SM…", "status": "queued"}`), or, while `failing` is
set, 400 with Twilio's error 21211 (an invalid 'To' number: a permanent
error, so the send job gives up). `GET` of the same path lists the messages
it accepted between `To` and `From`, newest first, the way Twilio does (the
server looks there before sending again when a send's outcome is unknown).
`GET /2010-04-01/Accounts/{sid}.json` (the connection test) answers the
account, `{"sid", "friendly_name": FRIENDLY_NAME, "status": "active"}`, when
the request carries basic auth for that SID, else 401 with Twilio's error
20003. Every request is recorded: method, path, parsed form or query, and
the status answered.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)\.json$")
FRIENDLY_NAME = "Browser suite shop"

UNAUTHENTICATED = {
    "code": 20003,
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}

INVALID_TO = {
    "code": 21211,
    "message": "The 'To' number is not a valid phone number.",
    "more_info": "https://www.twilio.com/docs/errors/21211",
    "status": 400,
}


@dataclass
class Request:
    method: str
    path: str
    form: dict[str, str]
    status: int
    sid: str | None = None
    at: float = field(default_factory=time.time)


class TwilioMock:
    """Start with `start()`, stop with `stop()`; `base_url` is what the
    server's INTEGRO_TWILIO_API_BASE should be."""

    def __init__(self) -> None:
        self.failing = False
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------
    def start(self) -> "TwilioMock":
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _basic_auth_user(self) -> str | None:
                scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
                if scheme.lower() != "basic":
                    return None
                try:
                    user, _, _password = base64.b64decode(value).decode().partition(":")
                except ValueError:
                    return None
                return user

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", "replace")
                form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                path = urlsplit(self.path).path
                m = MESSAGES_PATH.match(path)
                if not m:
                    mock._record(Request("POST", path, form, 404))
                    self._answer(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                if mock.failing:
                    mock._record(Request("POST", path, form, 400))
                    self._answer(400, INVALID_TO)
                    return
                sid = "SM" + secrets.token_hex(16)
                mock._record(Request("POST", path, form, 201, sid=sid))
                self._answer(
                    201,
                    {
                        "sid": sid,
                        "account_sid": m.group(1),
                        "status": "queued",
                        "to": form.get("To"),
                        "from": form.get("From"),
                        "body": form.get("Body"),
                        "date_created": email.utils.formatdate(usegmt=True),
                    },
                )

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                account = ACCOUNT_PATH.match(parts.path)
                if account:
                    sid = account.group(1)
                    if self._basic_auth_user() != sid:
                        mock._record(Request("GET", parts.path, query, 401))
                        self._answer(401, UNAUTHENTICATED)
                        return
                    mock._record(Request("GET", parts.path, query, 200))
                    self._answer(200, {"sid": sid, "friendly_name": FRIENDLY_NAME, "status": "active"})
                    return
                m = MESSAGES_PATH.match(parts.path)
                mock._record(Request("GET", parts.path, query, 200 if m else 404))
                if not m:
                    self._answer(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                sent = [
                    r
                    for r in mock.requests()
                    if r.method == "POST"
                    and r.status == 201
                    and r.path == parts.path
                    and r.form.get("To") == query.get("To", r.form.get("To"))
                    and r.form.get("From") == query.get("From", r.form.get("From"))
                ]
                sent.reverse()
                messages = [
                    {
                        "sid": r.sid,
                        "body": r.form.get("Body"),
                        "to": r.form.get("To"),
                        "from": r.form.get("From"),
                        "status": "queued",
                        "date_created": email.utils.formatdate(r.at, usegmt=True),
                    }
                    for r in sent[: int(query.get("PageSize", "50"))]
                ]
                self._answer(200, {"messages": messages})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what it received -------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def sends(self) -> list[Request]:
        """Every POST to Messages.json, accepted or not, oldest first."""
        return [r for r in self.requests() if r.method == "POST" and MESSAGES_PATH.match(r.path)]

    def wait_for_send(self, predicate, timeout: float = 15.0, since: int = 0) -> Request:
        """The first send (from index `since` of `sends()`) that `predicate`
        accepts, waiting up to `timeout` seconds; AssertionError if none."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.sends()[since:]:
                if predicate(r):
                    return r
            if time.monotonic() > deadline:
                seen = [(r.status, r.form.get("To"), r.form.get("Body")) for r in self.sends()[since:]]
                raise AssertionError(f"the Twilio mock received no matching send within {timeout:.0f} s; it got {seen}")
            time.sleep(0.1)
