"""xAPI 1.0.3 statements of attempts, their validator, and a learning record store client.

One attempt gives (docs/domain.md section 6):

- ``initialized`` at its start;
- ``completed`` (a completed attempt, with the result) then ``passed`` or ``failed``;
- ``terminated`` for an aborted or interrupted attempt (no ``completed``).

The actor is an opaque account (``{"homePage": <the lab's home page>, "name": <opaque
person id>}``): never a name or an e-mail. ``context.registration`` is the attempt
UUID. Statement ids are UUID 5 of (attempt id, verb), made on the client: sending
the same attempt twice cannot make duplicates.

surgsim publishes its own activity and extension IRIs (there is no xAPI profile for
procedural simulation); they are stable:

- activity of a scenario version: ``{IRI_BASE}/scenarios/<scenario id>/<version>``
- metric extension: ``{IRI_BASE}/extensions/metric/<metric name>`` (SI values)
- context extensions: ``{IRI_BASE}/extensions/{station,mode,scenario-hash,log-hash}``
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from surgsim.errors import RecordsError

if TYPE_CHECKING:
    from surgsim.records.db import AttemptRecord

__all__ = [
    "IRI_BASE",
    "LRSClient",
    "LRSError",
    "LRSUnavailable",
    "VERBS",
    "XAPI_VERSION",
    "iso_duration",
    "statements_for_attempt",
    "validate_statement",
]

XAPI_VERSION = "1.0.3"
IRI_BASE = "https://surgsim.org/xapi"
ACTIVITY_TYPE = "http://adlnet.gov/expapi/activities/simulation"
CATEGORY = f"{IRI_BASE}/profile"
_NAMESPACE = uuid.UUID("6f1c1a52-1c3e-5d7b-9a51-9b0d3d3c7a11")

VERBS: dict[str, str] = {
    name: f"http://adlnet.gov/expapi/verbs/{name}"
    for name in ("initialized", "attempted", "completed", "passed", "failed", "terminated")
}

_DURATION = re.compile(
    r"^P(?!$)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
    r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?$"
)
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)


def iso_duration(seconds: float) -> str:
    """ISO 8601 duration to 0.01 s, e.g. ``PT1H2M3.5S`` (xAPI keeps 0.01 s precision)."""
    cs = max(0, round(float(seconds) * 100))
    h, rest = divmod(cs, 360000)
    m, rest = divmod(rest, 6000)
    s = rest / 100
    out = "PT"
    if h:
        out += f"{h}H"
    if m:
        out += f"{m}M"
    if s or out == "PT":
        out += f"{s:.2f}".rstrip("0").rstrip(".") + "S"
    return out


def _ts(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def statement_id(attempt_id: str, verb: str) -> str:
    """The client-made statement id of one verb of one attempt (UUID 5, stable)."""
    return str(uuid.uuid5(_NAMESPACE, f"{attempt_id}/{verb}"))


def statements_for_attempt(
    attempt: AttemptRecord,
    *,
    home_page: str,
    platform: str | None = None,
    scenario_title: str | None = None,
) -> list[dict[str, Any]]:
    """The xAPI statements of one attempt (see the module docstring).

    Parameters
    ----------
    attempt : AttemptRecord
        From :meth:`Records.get_attempt`.
    home_page : str
        IRI of the lab (the account ``homePage``), e.g. ``https://sim.example-hospital.org``.
    platform : str, optional
        Default ``surgsim <version>``.
    scenario_title : str, optional
        Activity name (default: the scenario id).

    Returns
    -------
    list of dict
        JSON-compatible statements, oldest first.
    """
    from surgsim import __version__

    actor = {"objectType": "Agent", "account": {"homePage": home_page, "name": attempt.trainee_id}}
    activity_id = f"{IRI_BASE}/scenarios/{attempt.scenario_id}/{attempt.scenario_version}"
    activity = {
        "objectType": "Activity",
        "id": activity_id,
        "definition": {
            "type": ACTIVITY_TYPE,
            "name": {"en-US": scenario_title or attempt.scenario_id},
            "extensions": {f"{IRI_BASE}/extensions/scenario-hash": attempt.scenario_hash},
        },
    }
    context = {
        "registration": attempt.id,
        "platform": platform or f"surgsim {__version__}",
        "contextActivities": {
            "parent": [{"objectType": "Activity", "id": f"{IRI_BASE}/scenarios/{attempt.scenario_id}"}],
            "category": [{"objectType": "Activity", "id": CATEGORY}],
        },
        "extensions": {
            f"{IRI_BASE}/extensions/station": attempt.station,
            f"{IRI_BASE}/extensions/mode": attempt.mode,
            f"{IRI_BASE}/extensions/log-hash": attempt.log_hash,
        },
    }
    duration = iso_duration((attempt.ended_at - attempt.started_at).total_seconds())

    def make(verb: str, when: datetime, result: dict[str, Any] | None = None) -> dict[str, Any]:
        st: dict[str, Any] = {
            "id": statement_id(attempt.id, verb),
            "actor": actor,
            "verb": {"id": VERBS[verb], "display": {"en-US": verb}},
            "object": activity,
            "context": context,
            "timestamp": _ts(when),
            "version": XAPI_VERSION,
        }
        if result is not None:
            st["result"] = result
        return st

    out = [make("initialized", attempt.started_at)]
    extensions = {
        f"{IRI_BASE}/extensions/metric/{name}": value
        for name, value in sorted(attempt.metrics.items())
        if value is not None
    }
    if attempt.critical_errors:
        extensions[f"{IRI_BASE}/extensions/critical-errors"] = list(attempt.critical_errors)
    if attempt.status == "completed" and attempt.score is not None:
        raw = round(float(attempt.score), 4)
        result = {
            "score": {"scaled": round(raw / 100.0, 6), "raw": raw, "min": 0, "max": 100},
            "success": bool(attempt.passed),
            "completion": True,
            "duration": duration,
            "extensions": extensions,
        }
        out.append(make("completed", attempt.ended_at, result))
        out.append(make("passed" if attempt.passed else "failed", attempt.ended_at, result))
    else:
        result = {"completion": False, "duration": duration, "extensions": extensions}
        result["extensions"][f"{IRI_BASE}/extensions/status"] = attempt.status
        out.append(make("terminated", attempt.ended_at, result))
    return json.loads(json.dumps(out))  # plain JSON types, independent copies


def _is_uuid(x: Any) -> bool:
    try:
        uuid.UUID(str(x))
        return isinstance(x, str)
    except ValueError:
        return False


def _lang_map(x: Any) -> bool:
    return isinstance(x, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in x.items())


def validate_statement(st: Any) -> list[str]:
    """Problems of one statement against xAPI 1.0.3 (empty list: valid).

    Structural checks of the parts surgsim uses: id, actor (one inverse functional
    identifier; an account needs ``homePage`` IRI and ``name``), verb, object,
    result (score ranges, ISO 8601 duration, extension keys are IRIs), context
    (registration UUID), timestamp and version; plus surgsim's privacy rule: no
    ``mbox``, ``mbox_sha1sum`` or ``name`` on the actor.
    """
    p: list[str] = []
    if not isinstance(st, dict):
        return ["a statement must be a JSON object"]
    allowed = {"id", "actor", "verb", "object", "result", "context", "timestamp", "stored",
               "authority", "version", "attachments"}
    p += [f"unknown property {k!r}" for k in st if k not in allowed]
    if "id" in st and not _is_uuid(st["id"]):
        p.append("id must be a UUID string")
    actor = st.get("actor")
    if not isinstance(actor, dict):
        p.append("actor is required (an object)")
    else:
        ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in actor]
        if len(ifis) != 1:
            p.append(f"actor must have exactly one identifier, has {ifis or 'none'}")
        if "account" in actor:
            acc = actor["account"]
            if not isinstance(acc, dict) or not _IRI.match(str(acc.get("homePage", ""))) or not acc.get("name"):
                p.append("actor.account needs a homePage IRI and a name")
        for k in ("mbox", "mbox_sha1sum", "name"):
            if k in actor:
                p.append(f"actor.{k} would identify the person: use an opaque account")
        if actor.get("objectType", "Agent") not in ("Agent", "Group"):
            p.append("actor.objectType must be Agent or Group")
    verb = st.get("verb")
    if not isinstance(verb, dict) or not _IRI.match(str(verb.get("id", ""))):
        p.append("verb with an IRI id is required")
    elif "display" in verb and not _lang_map(verb["display"]):
        p.append("verb.display must be a language map")
    obj = st.get("object")
    if not isinstance(obj, dict) or not _IRI.match(str(obj.get("id", ""))):
        p.append("object with an IRI id is required")
    elif obj.get("objectType", "Activity") == "Activity":
        d = obj.get("definition", {})
        if not isinstance(d, dict):
            p.append("object.definition must be an object")
        else:
            if "name" in d and not _lang_map(d["name"]):
                p.append("object.definition.name must be a language map")
            if "type" in d and not _IRI.match(str(d["type"])):
                p.append("object.definition.type must be an IRI")
            p += _check_extensions(d.get("extensions"), "object.definition.extensions")
    res = st.get("result")
    if res is not None:
        if not isinstance(res, dict):
            p.append("result must be an object")
        else:
            sc = res.get("score")
            if sc is not None:
                p += _check_score(sc)
            for k in ("success", "completion"):
                if k in res and not isinstance(res[k], bool):
                    p.append(f"result.{k} must be true or false")
            if "duration" in res and not _DURATION.match(str(res["duration"])):
                p.append(f"result.duration {res['duration']!r} is not an ISO 8601 duration")
            p += _check_extensions(res.get("extensions"), "result.extensions")
    ctx = st.get("context")
    if ctx is not None:
        if not isinstance(ctx, dict):
            p.append("context must be an object")
        else:
            if "registration" in ctx and not _is_uuid(ctx["registration"]):
                p.append("context.registration must be a UUID")
            ca = ctx.get("contextActivities", {})
            for key, acts in (ca or {}).items():
                if key not in ("parent", "grouping", "category", "other"):
                    p.append(f"context.contextActivities.{key} is not allowed")
                for a in acts if isinstance(acts, list) else [acts]:
                    if not isinstance(a, dict) or not _IRI.match(str(a.get("id", ""))):
                        p.append(f"context.contextActivities.{key} needs activities with IRI ids")
            p += _check_extensions(ctx.get("extensions"), "context.extensions")
    if "timestamp" in st and not _TIMESTAMP.match(str(st["timestamp"])):
        p.append(f"timestamp {st['timestamp']!r} is not an ISO 8601 date-time with a zone")
    if "version" in st and not re.match(r"^1\.0(\.\d+)?$", str(st["version"])):
        p.append(f"version {st['version']!r} is not 1.0.x")
    return p


def _check_score(sc: Any) -> list[str]:
    p: list[str] = []
    if not isinstance(sc, dict):
        return ["result.score must be an object"]
    for k, v in sc.items():
        if k not in ("scaled", "raw", "min", "max"):
            p.append(f"result.score.{k} is not allowed")
        elif not isinstance(v, int | float) or isinstance(v, bool):
            p.append(f"result.score.{k} must be a number")
    if p:
        return p
    if "scaled" in sc and not -1 <= sc["scaled"] <= 1:
        p.append("result.score.scaled must be within -1..1")
    lo, hi = sc.get("min"), sc.get("max")
    if lo is not None and hi is not None and not lo < hi:
        p.append("result.score.min must be less than max")
    raw = sc.get("raw")
    if raw is not None and ((lo is not None and raw < lo) or (hi is not None and raw > hi)):
        p.append("result.score.raw must be within min..max")
    return p


def _check_extensions(ext: Any, where: str) -> list[str]:
    if ext is None:
        return []
    if not isinstance(ext, dict):
        return [f"{where} must be an object"]
    return [f"{where} key {k!r} is not an IRI" for k in ext if not _IRI.match(k)]


# ------------------------------------------------------------------ sending


class LRSError(RecordsError):
    """The learning record store refused the statements (the message says why)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LRSUnavailable(LRSError):
    """The learning record store cannot be reached (network, server down, timeout)."""


def mask_endpoint(url: str) -> str:
    """The endpoint with any ``user:password@`` hidden."""
    return re.sub(r"(://)([^/@]*)@", r"\1***@", url)


class LRSClient:
    """POST statements to a learning record store (HTTP Basic, ``X-Experience-API-Version``).

    Parameters
    ----------
    endpoint : str
        The LRS endpoint, e.g. ``https://lrs.example.org/xapi/`` (``statements`` is appended).
    username, password : str
        HTTP Basic credentials (the LRS key and secret).
    timeout : float
        Seconds per request.
    """

    def __init__(self, endpoint: str, username: str, password: str, *, timeout: float = 10.0) -> None:
        if not re.match(r"^https?://", endpoint or ""):
            raise RecordsError(
                f"LRS endpoint {mask_endpoint(endpoint or '')!r} must start with http:// or https://"
            )
        from urllib.parse import unquote, urlsplit, urlunsplit

        parts = urlsplit(endpoint)
        if parts.username is not None:  # credentials in the URL: use them, keep them out of it
            username = username or unquote(parts.username)
            password = password or unquote(parts.password or "")
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            endpoint = urlunsplit(parts._replace(netloc=netloc))
            self.masked = mask_endpoint(urlunsplit(parts._replace(netloc="***@" + netloc)))
        else:
            self.masked = endpoint
        self.endpoint = endpoint.rstrip("/") + "/"
        self.masked = self.masked.rstrip("/") + "/"
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._headers = {
            "Authorization": f"Basic {token}",
            "X-Experience-API-Version": XAPI_VERSION,
            "Content-Type": "application/json",
        }
        self.timeout = float(timeout)

    def post(self, statements: list[dict[str, Any]]) -> list[str]:
        """Send statements in one ``POST /statements``; the ids the LRS returns.

        Raises
        ------
        LRSUnavailable
            Not reachable (keep the statements and retry later).
        LRSError
            Refused (HTTP 4xx/5xx), with the status and the LRS's message.
        """
        body = json.dumps(statements).encode("utf-8")
        req = urllib.request.Request(
            self.endpoint + "statements", data=body, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode("utf-8") or "[]"
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            cls = LRSUnavailable if exc.code >= 500 else LRSError
            raise cls(
                f"the learning record store {self.masked} answered HTTP {exc.code}: {detail}",
                exc.code,
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LRSUnavailable(
                f"the learning record store {self.masked} cannot be reached ({reason}); "
                "the statements stay in the queue and are sent later"
            ) from exc
        try:
            return [str(i) for i in json.loads(text)]
        except ValueError as exc:
            raise LRSError(f"the learning record store {self.masked} sent no id list: {text[:200]}") from exc
