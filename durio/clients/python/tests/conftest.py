"""Fixtures: a real durio cluster (`durio dev`) on loopback, and fake servers.

The durio binary is $DURIO_BINARY, or is built from this repository with `go
build` into a temporary folder.
"""

from __future__ import annotations

import http.server
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[4]


def _free_base(count: int, avoid: Optional[range] = None) -> int:
    """A port p such that p .. p+count-1 are free on 127.0.0.1 now."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535 or (avoid and any(p in avoid for p in range(base, base + count))):
            continue
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class DevCluster:
    """A `durio dev` process: three replicas, commands on its stdin."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.client_port = _free_base(3)
        self.peer_port = _free_base(3, avoid=range(self.client_port, self.client_port + 3))
        self.endpoints = [f"http://127.0.0.1:{self.client_port + i}" for i in range(3)]
        self.peer_endpoints = [f"http://127.0.0.1:{self.peer_port + i}" for i in range(3)]
        self._lines: "queue.Queue[str]" = queue.Queue()
        self.output: List[str] = []
        self._stderr = open(folder / "dev.stderr", "wb")
        self.proc = subprocess.Popen(
            [binary, "dev", "--dir", str(folder / "data"), "--persister", "file",
             "--client-port", str(self.client_port), "--peer-port", str(self.peer_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float) -> str:
        """Waits for an output line matching pattern (a regex)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"durio dev printed no line matching {pattern!r} in {timeout}s; got {self.output}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.output.append(line)
            if rx.search(line):
                return line

    def command(self, cmd: str) -> None:
        """Types a command (kill N, stop N, start N, restart N) on stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._stderr.close()


@pytest.fixture(scope="session")
def durio_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    if os.environ.get("DURIO_BINARY"):
        return os.environ["DURIO_BINARY"]
    out = tmp_path_factory.mktemp("bin") / "durio"
    subprocess.run(["go", "build", "-o", str(out), "./cmd/durio"], cwd=REPO, check=True, timeout=600)
    return str(out)


@pytest.fixture(scope="session")
def cluster(durio_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    c = DevCluster(durio_binary, tmp_path_factory.mktemp("dev"))
    try:
        c.wait_line(r"cluster ready", timeout=90)
        yield c
    finally:
        c.stop()


class ServeReplica:
    """A `durio serve` process that is a one-replica cluster of its own, on
    loopback, with extra flags."""

    def __init__(self, binary: str, folder: Path, *flags: str) -> None:
        client_port = _free_base(1)
        peer_port = _free_base(1, avoid=range(client_port, client_port + 1))
        self.url = f"http://127.0.0.1:{client_port}"
        self.log_path = folder / "serve.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--id", "0", "--peers", f"http://127.0.0.1:{peer_port}",
             "--listen-client", f"127.0.0.1:{client_port}", "--data-dir", str(folder / "data"),
             "--persister", "file", "--log-level", "warn", *flags],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float) -> None:
        """Waits until GET /readyz answers 200 (the replica leads itself)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening or not ready yet
            if time.monotonic() > deadline:
                raise AssertionError(f"durio serve not ready in {timeout}s: {self.log_path.read_text()}")
            try:
                code = self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"durio serve exited with status {code}: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def serve_replica(durio_binary: str, tmp_path: Path) -> Iterator[Callable[..., ServeReplica]]:
    """Starts ServeReplicas (flags as arguments), ready; stops them after the test."""
    replicas: List[ServeReplica] = []

    def start(*flags: str) -> ServeReplica:
        folder = tmp_path / f"serve{len(replicas)}"
        folder.mkdir()
        r = ServeReplica(durio_binary, folder, *flags)
        replicas.append(r)
        r.wait_ready(60)
        return r

    yield start
    for r in replicas:
        r.stop()


class FakeServer:
    """An HTTP server on 127.0.0.1 whose answers a test scripts.

    handler(path, headers, body) returns (status, content_type, body) or
    None to drop the connection without answering.
    """

    def __init__(self, handler: Callable[[str, dict, bytes], Optional[tuple]]) -> None:
        self.requests: List[tuple] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((self.path, dict(self.headers), body))
                answer = handler(self.path, dict(self.headers), body)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, ctype, data = answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024  # tests hold hundreds of requests at once

        self.httpd = Server(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    servers: List[FakeServer] = []

    def make(handler: Callable[[str, dict, bytes], Optional[tuple]]) -> FakeServer:
        s = FakeServer(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
