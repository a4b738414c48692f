"""A tiny learning record store on 127.0.0.1, for tests and for trying exports.

It implements what surgsim sends and checks what a real LRS checks:

- every request but ``GET /about`` needs ``X-Experience-API-Version: 1.0.x``
  (else 400) and HTTP Basic credentials (else 401);
- ``POST /statements`` (one statement or a list): each is validated with
  :func:`surgsim.records.xapi.validate_statement` (400 with the problems); ids are
  made when missing; a known id with the same content is kept once, with other
  content it is a 409 conflict; answers 200 with the list of ids;
- ``PUT /statements?statementId=<id>``: 204 (same rules);
- ``GET /statements?statementId=<id>`` or ``GET /statements`` (all, ``{"statements":
  [...], "more": ""}``).

Statements live in memory in :attr:`LocalLRS.store` (a dict by id), which may be
handed to a new server to model an LRS that restarts with its database.
:meth:`LocalLRS.fail_next` makes it answer the next statement requests with an
error status (a 503 while it restarts, a 429 when busy ...), for tests.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from surgsim.records.xapi import XAPI_VERSION, validate_statement

__all__ = ["LocalLRS"]


class LocalLRS:
    """A learning record store serving on ``http://127.0.0.1:<port>/xapi/``.

    Parameters
    ----------
    username, password : str
        The Basic credentials it accepts.
    port : int
        0: a free port (read :attr:`port` after :meth:`start`).
    store : dict, optional
        Statements by id (shared with an earlier server to keep its contents).
    """

    def __init__(
        self,
        username: str = "lab",
        password: str = "lab-secret",
        *,
        port: int = 0,
        store: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.port = port
        self.store: dict[str, dict[str, Any]] = {} if store is None else store
        self.requests = 0  # statement requests that reached the handler with good credentials
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/xapi/"

    def start(self) -> LocalLRS:
        """Serve in a background thread."""
        lrs = self

        class Handler(_Handler):
            owner = lrs

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` statement requests (after the checks) with HTTP ``status``."""
        with self._lock:
            self._failures += [int(status)] * int(count)

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def __enter__(self) -> LocalLRS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ storing

    def _put(self, st: dict[str, Any]) -> tuple[int, str]:
        """Store one statement: (0, id) or (HTTP status, message)."""
        problems = validate_statement(st)
        if problems:
            return 400, "; ".join(problems)
        sid = st.get("id") or str(uuid.uuid4())
        body = {k: v for k, v in st.items() if k not in ("stored", "authority")}
        body["id"] = sid
        with self._lock:
            old = self.store.get(sid)
            if old is not None:
                same = {k: v for k, v in old.items() if k != "stored"} == body
                return (0, sid) if same else (409, f"statement {sid} exists with other content")
            body["stored"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self.store[sid] = body
        return 0, sid


class _Handler(BaseHTTPRequestHandler):
    owner: LocalLRS
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("X-Experience-API-Version", XAPI_VERSION)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="surgsim-lrs"')
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n).decode("utf-8")) if n else None

    def _checks(self) -> bool:
        """Version header and credentials; answers and returns False when one fails."""
        version = self.headers.get("X-Experience-API-Version", "")
        if not version.startswith("1.0"):
            self._drain()
            self._send(400, {"error": "missing or unsupported X-Experience-API-Version (use 1.0.3)"})
            return False
        auth = self.headers.get("Authorization", "")
        want = base64.b64encode(f"{self.owner.username}:{self.owner.password}".encode()).decode()
        if auth != f"Basic {want}":
            self._drain()
            self._send(401, {"error": "bad or missing credentials"})
            return False
        return True

    def _drain(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    def _path(self) -> tuple[str, dict[str, list[str]]]:
        u = urlparse(self.path)
        return u.path.rstrip("/"), parse_qs(u.query)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path, query = self._path()
        if path.endswith("/about"):
            self._send(200, {"version": [XAPI_VERSION]})
            return
        if not self._checks():
            return
        if not path.endswith("/statements"):
            self._send(404, {"error": f"no resource {path}"})
            return
        sid = query.get("statementId", [None])[0]
        with self.owner._lock:
            if sid is not None:
                st = self.owner.store.get(sid)
                self._send(200, st) if st else self._send(404, {"error": f"no statement {sid}"})
            else:
                self._send(200, {"statements": list(self.owner.store.values()), "more": ""})

    def do_POST(self) -> None:  # noqa: N802
        path, _ = self._path()
        if not self._checks():
            return
        if not path.endswith("/statements"):
            self._drain()
            self._send(404, {"error": f"no resource {path}"})
            return
        try:
            body = self._body()
        except ValueError:
            self._send(400, {"error": "the body is not JSON"})
            return
        statements = body if isinstance(body, list) else [body]
        self.owner.requests += 1
        failure = self.owner._take_failure()
        if failure is not None:
            self._send(failure, {"error": f"told to answer HTTP {failure} (LocalLRS.fail_next)"})
            return
        # all or nothing: check every statement before storing any
        for st in statements:
            problems = validate_statement(st)
            if problems:
                self._send(400, {"error": "; ".join(problems)})
                return
        ids = []
        for st in statements:
            status, msg = self.owner._put(st)
            if status:
                self._send(status, {"error": msg})
                return
            ids.append(msg)
        self._send(200, ids)

    def do_PUT(self) -> None:  # noqa: N802
        path, query = self._path()
        if not self._checks():
            return
        sid = query.get("statementId", [None])[0]
        if not path.endswith("/statements") or sid is None:
            self._drain()
            self._send(400, {"error": "PUT /statements needs ?statementId="})
            return
        try:
            st = self._body()
        except ValueError:
            self._send(400, {"error": "the body is not JSON"})
            return
        if not isinstance(st, dict) or st.get("id", sid) != sid:
            self._send(400, {"error": "the statement id differs from statementId"})
            return
        self.owner.requests += 1
        status, msg = self.owner._put({**st, "id": sid})
        self._send(status or 204, {"error": msg} if status else None)
