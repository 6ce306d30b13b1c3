"""The transport every generated Twirp client shares: one HTTP POST per call.

Needs only Python's standard library (http.client, ssl, json) and the protobuf
runtime. A Client keeps idle keep-alive connections to its server and is safe
to use from several threads at once.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

PROTOBUF = "application/protobuf"
"""Content type of the protobuf encoding."""
JSON = "application/json"
"""Content type of the JSON encoding (proto field names)."""

M = TypeVar("M", bound=Message)

# What a response that is not a Twirp error means, by HTTP status (as Twirp's
# own clients read answers from proxies and other intermediaries).
_INTERMEDIARY_CODES = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "bad_route",
    429: "unavailable",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}


class TwirpError(Exception):
    """An error the server (or a proxy in front of it) answered.

    code is a Twirp error code ("not_found", "invalid_argument",
    "unavailable", ...), msg its message, meta the error's metadata and
    status the HTTP status it came with.
    """

    def __init__(self, code: str, msg: str, meta: Optional[Mapping[str, str]] = None, status: int = 0) -> None:
        super().__init__(f"twirp error {code}: {msg}")
        self.code = code
        self.msg = msg
        self.meta: Dict[str, str] = dict(meta or {})
        self.status = status


class TransportError(Exception):
    """The call got no answer from the server.

    sent is False when the request certainly did not reach the server (the
    connection could not be made), True when it may have (the connection broke
    or timed out after the request was written): the call may have taken
    effect. timed_out says whether the time ran out.
    """

    def __init__(self, message: str, *, sent: bool, timed_out: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.timed_out = timed_out


class Client:
    """Base of the generated clients: the connection to one Twirp server.

    base_url is the server's URL without the Twirp prefix
    ("http://127.0.0.1:8001" or "https://pi-1:8080"). encoding is PROTOBUF or
    JSON. timeout is the default time a call may take, in seconds (a method's
    timeout argument overrides it). headers are added to every request.
    ssl_context verifies an https server (default: the system's trusted CAs).
    idle_seconds bounds how long an idle connection is kept for reuse; keep it
    below the server's idle timeout.
    """

    SERVICE = ""

    def __init__(
        self,
        base_url: str,
        *,
        encoding: str = PROTOBUF,
        timeout: float = 10.0,
        headers: Optional[Mapping[str, str]] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        prefix: str = "/twirp",
        idle_seconds: float = 4.0,
    ) -> None:
        if encoding not in (PROTOBUF, JSON):
            raise ValueError(f"encoding must be {PROTOBUF!r} or {JSON!r}, not {encoding!r}")
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"base_url must be an http or https URL, not {base_url!r}")
        self.base_url = base_url
        self.encoding = encoding
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port
        self._ssl = ssl_context
        self._path = (u.path.rstrip("/") + "/" + prefix.strip("/")).rstrip("/")
        self._idle_seconds = idle_seconds
        # _lock guards _idle: connections not in use, with when each went idle.
        self._lock = threading.Lock()
        self._idle: List[Tuple[http.client.HTTPConnection, float]] = []

    def close(self) -> None:
        """Closes the idle connections; the client stays usable."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self, timeout: float) -> http.client.HTTPConnection:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < self._idle_seconds and conn.sock is not None:
                    conn.sock.settimeout(timeout)
                    return conn
                conn.close()
        conn = self._connect(timeout)
        try:
            conn.connect()
        except socket.timeout as e:
            conn.close()
            raise TransportError(f"connect to {self.base_url}: timed out", sent=False, timed_out=True) from e
        except (OSError, ssl.SSLError) as e:
            conn.close()
            raise TransportError(f"connect to {self.base_url}: {e}", sent=False) from e
        return conn

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append((conn, time.monotonic()))

    def _call(
        self,
        method: str,
        request: Message,
        response_type: Type[M],
        *,
        timeout: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> M:
        if timeout is None:
            timeout = self.timeout
        if self.encoding == PROTOBUF:
            body = request.SerializeToString()
        else:
            body = json_format.MessageToJson(request, preserving_proto_field_name=True).encode("utf-8")
        hdrs = dict(self._headers)
        hdrs.update(headers or {})
        hdrs["Content-Type"] = self.encoding
        hdrs["Accept"] = self.encoding
        path = f"{self._path}/{self.SERVICE}/{method}"

        conn = self._take(timeout)
        try:
            conn.request("POST", path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except socket.timeout as e:
            conn.close()
            raise TransportError(f"{self.SERVICE}/{method} at {self.base_url}: timed out", sent=True, timed_out=True) from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(f"{self.SERVICE}/{method} at {self.base_url}: {e!r}", sent=True) from e
        if resp.will_close:
            conn.close()
        else:
            self._give_back(conn)

        if resp.status != 200:
            raise _error_from(resp.status, resp.getheader("Content-Type", ""), data)
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if ctype != self.encoding:
            raise TwirpError("internal", f"unexpected response content type {ctype!r}", status=resp.status)
        out = response_type()
        try:
            if self.encoding == PROTOBUF:
                out.ParseFromString(data)
            else:
                json_format.Parse(data.decode("utf-8"), out, ignore_unknown_fields=True)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as e:
            raise TwirpError("internal", f"undecodable response: {e}", status=resp.status) from e
        return out


def _error_from(status: int, ctype: str, data: bytes) -> TwirpError:
    """Reads a non-200 answer: a Twirp error body, or an intermediary's."""
    if ctype.split(";")[0].strip() == JSON:
        try:
            body = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            meta = body.get("meta") or {}
            if not isinstance(meta, dict):
                meta = {}
            return TwirpError(body["code"], str(body.get("msg", "")), {str(k): str(v) for k, v in meta.items()}, status)
    code = _INTERMEDIARY_CODES.get(status, "internal" if 300 <= status < 400 else "unknown")
    excerpt = data[:200].decode("utf-8", "replace")
    return TwirpError(code, f"HTTP {status} from an intermediary: {excerpt}", {"http_error_from_intermediary": "true"}, status)
