"""The Python client against a real 3-replica `durio dev` cluster, and its
error handling against scripted fake servers."""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import subprocess
import threading
import time
import urllib.request
import uuid
from typing import Optional

import pytest
from google.protobuf import json_format

from durio_client import (
    Client,
    Compacted,
    Compare,
    ConditionFailed,
    Delete,
    LeaseNotFound,
    NoSpace,
    InvalidArgument,
    MAX_PENDING,
    KVServiceClient,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    PreconditionFailed,
    Put,
    TwirpError,
    TxnResult,
    Unauthenticated,
    Unavailable,
    kv_pb2,
)
from durio_client._gen.twirp_runtime import JSON, PROTOBUF

ENCODINGS = ["protobuf", "json"]
CONTENT_TYPES = {"protobuf": PROTOBUF, "json": JSON}


def key(name: str) -> str:
    """A key no other test uses (keys contain a slash, as real ones do)."""
    return f"pytest/{name}/{uuid.uuid4().hex[:8]}"


# --- the generated client, every method, both encodings ---


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_generated_client_every_method(cluster, encoding):
    kv = KVServiceClient(cluster.endpoints[0], encoding=CONTENT_TYPES[encoding], timeout=10)
    k = key("gen")

    session = kv.open_session(kv_pb2.OpenSessionRequest())
    assert session.client_id > 0
    assert session.idle_timeout_seconds > 0
    header = lambda seq: kv_pb2.WriteHeader(client_id=session.client_id, sequence=seq)  # noqa: E731

    put = kv.put(kv_pb2.PutRequest(key=k, value="a", write=header(1)))
    assert put.header.term > 0
    got = kv.get(kv_pb2.GetRequest(key=k))
    assert (got.key, got.value) == (k, "a")
    kv.append(kv_pb2.AppendRequest(key=k, value="b", write=header(2)))
    try:
        stale = kv.get(kv_pb2.GetRequest(key=k, consistency=kv_pb2.READ_CONSISTENCY_STALE)).value
    except TwirpError as e:
        assert e.code == "not_found"  # a stale read may lag, even behind the Put
        stale = None
    assert stale in (None, "a", "ab")
    assert kv.get(kv_pb2.GetRequest(key=k)).value == "ab"
    deleted = kv.delete(kv_pb2.DeleteRequest(key=k, write=header(3)))
    assert deleted.existed
    with pytest.raises(TwirpError) as e:
        kv.get(kv_pb2.GetRequest(key=k))
    assert e.value.code == "not_found" and e.value.status == 404

    st = kv.status(kv_pb2.StatusRequest())
    assert st.replica_id == 0
    assert st.role in (kv_pb2.ROLE_LEADER, kv_pb2.ROLE_FOLLOWER)
    assert st.applied_index > 0
    kv.close()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_generated_client_same_write_id_applies_once(cluster, encoding):
    kv = KVServiceClient(cluster.endpoints[1], encoding=CONTENT_TYPES[encoding], timeout=10)
    k = key("once")
    sid = kv.open_session(kv_pb2.OpenSessionRequest()).client_id
    req = kv_pb2.AppendRequest(key=k, value="x", write=kv_pb2.WriteHeader(client_id=sid, sequence=1))
    kv.append(req)
    kv.append(req)  # a retry of the same write: answered, not applied again
    other = KVServiceClient(cluster.endpoints[2], encoding=CONTENT_TYPES[encoding], timeout=10)
    other.append(req)  # a retry through another replica
    assert kv.get(kv_pb2.GetRequest(key=k)).value == "x"


# --- the friendly client ---


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_client_put_get_append_delete(cluster, encoding):
    with Client(cluster.endpoints, encoding=encoding) as kv:
        k = key("api")
        kv.put(k, "hello")
        kv.append(k, ", world")
        assert kv.get(k) == "hello, world"
        # A stale read may lag: it may not even see the key yet.
        assert kv.get(k, None, stale=True) in (None, "hello", "hello, world")
        assert kv.delete(k) is True
        assert kv.delete(k) is False
        with pytest.raises(NotFound):
            kv.get(k)
        assert kv.get(k, None) is None
        assert kv.get(k, "fallback") == "fallback"
        st = kv.status()
        assert st.leader_known


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_client_rejects_bad_input(cluster, encoding):
    with Client(cluster.endpoints, encoding=encoding, timeout=10) as kv:
        with pytest.raises(InvalidArgument) as e:
            kv.put("", "v")
        assert e.value.status == 400
        with pytest.raises(InvalidArgument):
            kv.get("k" * 5000)  # keys are at most 4 KiB
        with pytest.raises(InvalidArgument):
            kv.put(key("big"), "v" * (2 << 20))  # over the body limit


def test_client_unavailable_when_nothing_listens():
    from conftest import _free_base

    base = _free_base(2)
    kv = Client([f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"], timeout=1.0)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        kv.get("k")
    with pytest.raises(Unavailable):
        kv.put("k", "v")  # never sent: definitely not applied
    assert time.monotonic() - start < 10


def losing_first_answer(cluster, method, dropped):
    """A fake_server handler that forwards every call to the first replica and
    loses the answer of the first call of method (it is applied, but the client
    never hears of it), noting its body in dropped."""

    def proxy(path, headers, body):
        req = urllib.request.Request(cluster.endpoints[0] + path, data=body, method="POST",
                                     headers={"Content-Type": headers["Content-Type"]})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = (resp.status, resp.headers["Content-Type"], resp.read())
        except urllib.error.HTTPError as e:
            answer = (e.code, e.headers["Content-Type"], e.read())
        if path.endswith("/" + method) and not dropped:
            dropped.append(body)
            return None
        return answer

    return proxy


def test_retried_write_is_applied_once(cluster, fake_server):
    """The first Append reaches the cluster but its answer is lost; the client
    retries it at another replica with the same write id."""
    k = key("retry")
    dropped = []
    fake = fake_server(losing_first_answer(cluster, "Append", dropped))
    with Client([fake.url, cluster.endpoints[1]], timeout=15) as kv:
        kv.append(k, "once")
        assert dropped, "the proxy never saw the Append"
        assert kv.get(k) == "once"
        kv.append(k, "+twice")
        assert kv.get(k) == "once+twice"


def test_failover_when_the_leader_dies(cluster):
    """The replica the client talks to (the leader) is killed; the next
    write goes to another replica within the same call."""
    with Client(cluster.endpoints, timeout=20) as probe:
        st = probe.status()
        assert st.leader_known
        leader = st.leader_id
    order = [cluster.endpoints[leader]] + [e for i, e in enumerate(cluster.endpoints) if i != leader]
    k = key("failover")
    with Client(order, timeout=20) as kv:
        kv.put(k, "before")
        cluster.command(f"kill {leader}")
        cluster.wait_line(rf"replica {leader}: killed", timeout=20)
        kv.append(k, "+after")  # the client's current replica is gone
        assert kv.get(k) == "before+after"
        assert kv.status().replica_id != leader
    cluster.command(f"start {leader}")
    cluster.wait_line(rf"replica {leader}: started", timeout=30)


def test_follow_stream_across_a_killed_replica(cluster):
    """follow_stream sees every change once, in order, while the replica it
    streams from (a follower, the first endpoint) is killed and restarted."""
    with Client(cluster.endpoints, timeout=20) as probe:
        leader = probe.status().leader_id
    watched = (leader + 1) % 3
    order = [cluster.endpoints[watched]] + [e for i, e in enumerate(cluster.endpoints) if i != watched]
    prefix = key("stream") + "/"
    seen = []
    errs = []
    with Client(order, timeout=20) as kv:
        start = kv.revision()

        def follow():
            try:
                for ev in kv.follow_stream(prefix, prefix=True, after_revision=start, idle_timeout=5):
                    seen.append(("delete" if ev.type == kv_pb2.EVENT_TYPE_DELETE else "put", ev.kv.key[len(prefix):], ev.kv.value))
                    if len(seen) == 4:
                        return
            except Exception as e:  # reported below
                errs.append(e)

        t = threading.Thread(target=follow, daemon=True)
        t.start()
        kv.put(prefix + "a", "1")
        deadline = time.monotonic() + 20
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen, f"no event from the stream: {errs}"
        cluster.command(f"kill {watched}")
        cluster.wait_line(rf"replica {watched}: killed", timeout=20)
        kv.put(prefix + "b", "2")
        kv.delete(prefix + "a")
        cluster.command(f"start {watched}")
        cluster.wait_line(rf"replica {watched}: started", timeout=30)
        kv.put(prefix + "c", "3")
        t.join(timeout=60)
        assert not t.is_alive() and not errs, f"follow_stream: {seen} {errs}"
    assert seen == [("put", "a", "1"), ("put", "b", "2"), ("delete", "a", ""), ("put", "c", "3")]


class _StreamServer:
    """A scripted watch-stream server: answer(path) returns (status,
    content type, body) for each GET, answer("POST " + path) for each POST.
    paths logs the requests (a POST with its body), auth their Authorization
    headers (None when absent)."""

    def __init__(self, answer):
        self.paths = []
        self.auth = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def _answer(self, what: str, logged: str) -> None:
                outer.paths.append(logged)
                outer.auth.append(self.headers.get("Authorization"))
                status, ctype, body = answer(what)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._answer(self.path, self.path)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer("POST " + self.path, "POST " + self.path + " " + data.decode())

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        # A short poll interval: close (shutdown) waits for the next poll.
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_follow_stream_keys_heartbeats_and_refusals():
    event = b'id: 7\ndata: {"type":"put","kv":{"key":"k","value":"v","create_revision":7,"mod_revision":7,"version":1}}\n\n'
    script = {"/kvstore/watch/%2E?index=5&stream=true&wait=10000ms": (200, "text/event-stream", b"retry: 1000\nid: 5\n\n: hi\r\n\nid: 6\n\n" + event)}
    srv = _StreamServer(lambda path: script.get(path, (404, "application/json", b'{"code":"bad_route","msg":"no route"}')))
    try:
        with Client([srv.url]) as kv:
            # A key that is exactly "." goes as %2E (else a path step); the
            # heartbeat's id 6 is passed, the change at 7 delivered.
            got = next(iter(kv.follow_stream(".", after_revision=5)))
            assert (got.kv.key, got.kv.mod_revision) == ("k", 7)
            # A refusal every replica would repeat ends the follow.
            with pytest.raises(Exception) as info:
                next(iter(kv.follow_stream("other", after_revision=5)))
            assert getattr(info.value, "code", "") == "bad_route"
            script["/kvstore/watch/gone?index=5&stream=true&wait=10000ms"] = (410, "application/json", b'{"code":"out_of_range","msg":"compacted"}')
            with pytest.raises(Compacted):
                next(iter(kv.follow_stream("gone", after_revision=5)))
            script["/kvstore/watch/late?index=5&stream=true&wait=10000ms"] = (200, "text/event-stream", b'event: compacted\ndata: {"code":"out_of_range","msg":"gone"}\n\n')
            with pytest.raises(Compacted):
                next(iter(kv.follow_stream("late", after_revision=5)))
    finally:
        srv.close()


def test_follow_stream_falls_back_to_long_polls():
    """A replica from before watch streams answers the stream request with a
    long poll's JSON; follow_stream goes on with long polls (Twirp Watch)."""
    watch = {"events": [{"type": "EVENT_TYPE_PUT", "kv": {"key": "k", "modRevision": "6"}}], "nextAfterRevision": "6"}
    srv = _StreamServer(lambda path: (200, "application/json", json.dumps(watch).encode()) if path.startswith("POST ")
                        else (200, "application/json", b'{"events":[],"next_index":5,"revision":5}'))
    try:
        with Client([srv.url], encoding="json") as kv:
            got = next(iter(kv.follow_stream("k", after_revision=5)))
            assert (got.kv.key, got.kv.mod_revision) == ("k", 6)
        assert srv.paths[0] == "/kvstore/watch/k?index=5&stream=true&wait=10000ms"
        method, body = srv.paths[1].split(" {", 1)
        assert method == "POST /twirp/kv.v1.KVService/Watch" and json.loads("{" + body)["after_revision"] == "5"
    finally:
        srv.close()


# --- error mapping, against scripted servers ---


def _twirp_error(code: str, msg: str = "m", status: int = 400, meta: Optional[dict] = None):
    body = {"code": code, "msg": msg}
    if meta:
        body["meta"] = meta
    return lambda path, headers, data: (status, "application/json", json.dumps(body).encode())


@pytest.mark.parametrize(
    "code,status,exc",
    [
        ("not_found", 404, NotFound),
        ("invalid_argument", 400, InvalidArgument),
        ("malformed", 400, InvalidArgument),
        ("failed_precondition", 412, PreconditionFailed),
        ("unauthenticated", 401, Unauthenticated),
        ("permission_denied", 403, PermissionDenied),
    ],
)
def test_definite_errors_map_and_are_not_retried(fake_server, code, status, exc):
    srv = fake_server(_twirp_error(code, "what happened", status, {"argument": "key"}))
    kv = Client([srv.url], timeout=5)
    with pytest.raises(exc) as e:
        kv.get("k")
    assert e.value.code == code
    assert e.value.status == status
    assert "what happened" in str(e.value)
    assert e.value.meta.get("argument") == "key"
    assert len(srv.requests) == 1


def test_no_space_is_final(fake_server):
    """A write over the cluster's quota is refused for good: raised at once,
    as NoSpace, not retried."""
    def answer(path, headers, body):
        if path.endswith("/OpenSession"):
            resp = kv_pb2.OpenSessionResponse(client_id=7, idle_timeout_seconds=60)
            return 200, PROTOBUF, resp.SerializeToString()
        return _twirp_error("failed_precondition", "quota reached", 412, {"reason": "no_space"})(path, headers, body)

    srv = fake_server(answer)
    kv = Client([srv.url], timeout=5)
    with pytest.raises(NoSpace) as e:
        kv.put("k", "v")
    assert not isinstance(e.value, Unavailable)
    assert "quota reached" in str(e.value) and e.value.meta["reason"] == "no_space"
    assert len([p for p, _, _ in srv.requests if p.endswith("/Put")]) == 1


def test_unavailable_is_retried_then_raised(fake_server):
    srv = fake_server(_twirp_error("unavailable", "no leader", 503))
    kv = Client([srv.url], timeout=1.0)
    with pytest.raises(Unavailable) as e:
        kv.get("k")
    assert "no leader" in str(e.value)
    assert len(srv.requests) > 1


def test_write_with_unknown_outcome(fake_server):
    def answer(path, headers, body):
        if path.endswith("/OpenSession"):
            resp = kv_pb2.OpenSessionResponse(client_id=7, idle_timeout_seconds=60)
            return 200, PROTOBUF, resp.SerializeToString()
        return _twirp_error("deadline_exceeded", "timed out", 504)(path, headers, body)

    srv = fake_server(answer)
    kv = Client([srv.url], timeout=1.0)
    with pytest.raises(OutcomeUnknown):
        kv.put("k", "v")
    puts = [kv_pb2.PutRequest.FromString(b) for p, _, b in srv.requests if p.endswith("/Put")]
    assert len(puts) > 1, "the write was not retried"
    assert {(p.write.client_id, p.write.sequence) for p in puts} == {(7, 1)}, "a retry changed the write id"


def test_intermediary_errors(fake_server):
    srv = fake_server(lambda p, h, b: (502, "text/html", b"<html>bad gateway</html>"))
    with pytest.raises(Unavailable) as e:
        Client([srv.url], timeout=0.5).get("k")
    assert "bad gateway" in str(e.value)


def test_expired_session_is_reopened(fake_server):
    sessions = []

    def answer(path, headers, body):
        if path.endswith("/OpenSession"):
            sessions.append(len(sessions) + 1)
            resp = kv_pb2.OpenSessionResponse(client_id=sessions[-1], idle_timeout_seconds=60)
            return 200, PROTOBUF, resp.SerializeToString()
        put = kv_pb2.PutRequest.FromString(body)
        if put.write.client_id == 1:
            return _twirp_error("failed_precondition", "no such session", 412, {"reason": "no_session"})(path, headers, body)
        return 200, PROTOBUF, kv_pb2.PutResponse().SerializeToString()

    srv = fake_server(answer)
    Client([srv.url], timeout=5).put("k", "v")
    assert sessions == [1, 2]


def test_more_writes_at_once_than_a_session_keeps_open_another_session(fake_server):
    # The server answers no Put until all of them have arrived, so every one
    # is running at once; it refuses, as a replica does, a write past
    # MAX_PENDING results at or above its ack.
    n = MAX_PENDING + 44
    lock = threading.Condition()
    puts = []
    sessions = []

    def answer(path, headers, body):
        with lock:
            if path.endswith("/OpenSession"):
                sessions.append(len(sessions) + 1)
                resp = kv_pb2.OpenSessionResponse(client_id=sessions[-1], idle_timeout_seconds=60)
                return 200, PROTOBUF, resp.SerializeToString()
            w = kv_pb2.PutRequest.FromString(body).write
            if w.sequence - w.ack >= MAX_PENDING:
                return _twirp_error("failed_precondition", "too many unacknowledged writes", 412,
                                    {"reason": "too_many_pending"})(path, headers, body)
            puts.append((w.client_id, w.sequence))
            lock.notify_all()
            if not lock.wait_for(lambda: len(puts) >= n, timeout=30):
                return 500, "text/plain", b"not every write arrived"
        return 200, PROTOBUF, kv_pb2.PutResponse().SerializeToString()

    srv = fake_server(answer)
    kv = Client([srv.url], timeout=40)
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        for f in [pool.submit(kv.put, f"k{i}", "v") for i in range(n)]:
            f.result()
    assert len(puts) == n, "a write was refused or sent twice"
    assert len(sessions) == 2
    for sid in set(c for c, _ in puts):
        seqs = sorted(q for c, q in puts if c == sid)
        assert seqs == list(range(1, len(seqs) + 1)), f"session {sid} numbers its writes 1, 2, ..."


def test_bad_arguments():
    with pytest.raises(ValueError):
        Client([])
    with pytest.raises(ValueError):
        Client(["http://127.0.0.1:1"], encoding="xml")
    with pytest.raises(ValueError):
        KVServiceClient("ftp://example.invalid")


# --- revisions, compare-and-swap, listing, watch and leases ---


def _session_then(answer_rest):
    def answer(path, headers, body):
        if path.endswith("/OpenSession"):
            return 200, PROTOBUF, kv_pb2.OpenSessionResponse(client_id=7, idle_timeout_seconds=60).SerializeToString()
        return answer_rest(path, headers, body)
    return answer


def test_condition_failed_carries_the_current_key_and_is_not_retried(fake_server):
    meta = {"reason": "condition_failed", "revision": "42", "exists": "true", "value": "theirs",
            "create_revision": "3", "mod_revision": "40", "version": "5"}
    srv = fake_server(_session_then(_twirp_error("failed_precondition", "condition failed", 412, meta)))
    kv = Client([srv.url], timeout=5)
    with pytest.raises(ConditionFailed) as e:
        kv.put("doc", "mine", if_revision=39)
    assert e.value.revision == 42
    cur = e.value.current
    assert (cur.key, cur.value, cur.mod_revision, cur.version, cur.create_revision) == ("doc", "theirs", 40, 5, 3)
    puts = [kv_pb2.PutRequest.FromString(b) for p, _, b in srv.requests if p.endswith("/Put")]
    assert len(puts) == 1
    assert puts[0].condition.kind == kv_pb2.CONDITION_KIND_MOD_REVISION and puts[0].condition.mod_revision == 39


@pytest.mark.parametrize(
    "reason,code,exc",
    [("lease_not_found", "failed_precondition", LeaseNotFound), ("compacted", "out_of_range", Compacted)],
)
def test_lease_not_found_and_compacted_map(fake_server, reason, code, exc):
    srv = fake_server(_twirp_error(code, "gone", 400, {"reason": reason}))
    with pytest.raises(exc):
        Client([srv.url], timeout=5).lease_keep_alive(5)


def test_one_condition_at_a_time():
    kv = Client(["http://127.0.0.1:1"])
    with pytest.raises(ValueError):
        kv.put("k", "v", if_absent=True, if_value="x")


def test_compare_and_swap(cluster):
    kv = Client(cluster.endpoints)
    k = key("cas")
    rev = kv.put(k, "v0", if_absent=True)
    with pytest.raises(ConditionFailed) as e:
        kv.put(k, "again", if_absent=True)
    assert e.value.current.value == "v0" and e.value.current.mod_revision == rev
    got = kv.get_kv(k)
    assert (got.value, got.mod_revision, got.version) == ("v0", rev, 1)
    rev2 = kv.put(k, "v1", if_revision=got.mod_revision)
    assert rev2 > rev
    with pytest.raises(ConditionFailed):
        kv.put(k, "stale", if_revision=got.mod_revision)
    with pytest.raises(ConditionFailed):
        kv.delete(k, if_value="v0")
    assert kv.delete(k, if_version=2) is True


def test_list_watch_and_leases(cluster):
    kv = Client(cluster.endpoints, encoding="json")
    prefix = key("list") + "/"
    start = kv.revision()
    for name in ["c", "a", "b"]:
        kv.put(prefix + name, name)
    assert [i.key for i in kv.list_all(prefix, page_size=2)] == [prefix + "a", prefix + "b", prefix + "c"]
    page = kv.list(prefix, limit=2, keys_only=True)
    assert page.more and [i.value for i in page.kvs] == ["", ""]

    lease, ttl = kv.lease_grant(60)
    assert ttl == 60
    kv.put(prefix + "eph", "x", lease=lease)
    assert list(kv.lease_time_to_live(lease, keys=True).keys) == [prefix + "eph"]
    assert kv.lease_revoke(lease) is True
    assert kv.get(prefix + "eph", None) is None
    with pytest.raises(LeaseNotFound):
        kv.lease_keep_alive(lease)

    seen = []
    for ev in kv.follow(prefix, prefix=True, after_revision=start, wait=2):
        seen.append(("delete" if ev.type == kv_pb2.EVENT_TYPE_DELETE else "put", ev.kv.key[len(prefix):]))
        if len(seen) == 5:
            break
    assert seen == [("put", "c"), ("put", "a"), ("put", "b"), ("put", "eph"), ("delete", "eph")]
    empty = kv.watch(prefix, prefix=True, after_revision=kv.revision(), wait=0.2)
    assert list(empty.events) == []


def test_a_ttl_key_expires_without_keep_alive(cluster):
    kv = Client(cluster.endpoints)
    k = key("ttl")
    lease, _ = kv.lease_grant(1)
    kv.put(k, "here", lease=lease)
    assert kv.lease_keep_alive(lease) == 1
    deadline = time.monotonic() + 15
    while kv.get(k, None) is not None:
        assert time.monotonic() < deadline, "a key whose lease was not kept alive did not expire"
        time.sleep(0.1)


# --- transactions (txn) ---


def _decode(headers: dict, body: bytes, message):
    """A request a fake server got, in the encoding it came in."""
    if headers["Content-Type"] == JSON:
        return json_format.Parse(body.decode(), message())
    return message.FromString(body)


def _encode(headers: dict, message) -> tuple:
    """A 200 answer carrying message, in the request's encoding."""
    if headers["Content-Type"] == JSON:
        return 200, JSON, json_format.MessageToJson(message, preserving_proto_field_name=True).encode()
    return 200, PROTOBUF, message.SerializeToString()


def _txn_replica(answer):
    """A replica that opens session 7 and answers each Txn with answer(n),
    n counting Txns from 1: a TxnResponse, or a fake-server answer."""
    count = []

    def handle(path, headers, body):
        if path.endswith("/OpenSession"):
            return _encode(headers, kv_pb2.OpenSessionResponse(client_id=7, idle_timeout_seconds=60))
        assert path.endswith("/Txn"), path
        count.append(1)
        got = answer(len(count))
        return _encode(headers, got) if isinstance(got, kv_pb2.TxnResponse) else got
    return handle


def _txns(srv):
    return [_decode(h, b, kv_pb2.TxnRequest) for p, h, b in srv.requests if p.endswith("/Txn")]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_txn_sends_its_conditions_and_writes_with_a_session_header(fake_server, encoding):
    ok = kv_pb2.TxnResponse(header=kv_pb2.ResponseHeader(revision=9), succeeded=True)
    srv = fake_server(_txn_replica(lambda n: ok))
    got = Client([srv.url], encoding=encoding, timeout=5).txn(
        [Compare("a", if_absent=True), Compare("b", if_revision=5), Compare("c", if_version=0), Compare("d", if_value="x")],
        [Put("a", "1"), Put("b", "2", lease=11), Delete("c")])
    assert got == TxnResult(succeeded=True, revision=9, failed=[], current=[])
    [req] = _txns(srv)
    assert [(c.key, c.condition) for c in req.conditions] == [
        ("a", kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_ABSENT)),
        ("b", kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_MOD_REVISION, mod_revision=5)),
        ("c", kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_VERSION, version=0)),
        ("d", kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_VALUE, value="x")),
    ]
    assert list(req.writes) == [
        kv_pb2.TxnWrite(put=kv_pb2.TxnPut(key="a", value="1")),
        kv_pb2.TxnWrite(put=kv_pb2.TxnPut(key="b", value="2", lease=11)),
        kv_pb2.TxnWrite(delete=kv_pb2.TxnDelete(key="c")),
    ]
    assert (req.write.client_id, req.write.sequence, req.write.ack) == (7, 1, 1)


def test_txn_whose_conditions_fail_answers_and_is_not_retried(fake_server):
    cur = kv_pb2.KeyValue(key="b", value="theirs", create_revision=3, mod_revision=8, version=2)
    srv = fake_server(_txn_replica(lambda n: kv_pb2.TxnResponse(
        header=kv_pb2.ResponseHeader(revision=8), succeeded=False, failed=[0, 1], current=[cur])))
    got = Client([srv.url], timeout=5).txn([Compare("a", if_version=1), Compare("b", if_value="mine")], [Delete("a")])
    assert (got.succeeded, got.revision, got.failed, got.current) == (False, 8, [0, 1], [cur])
    assert len(_txns(srv)) == 1


def test_txn_is_retried_with_the_same_write_header(fake_server):
    unavailable = _twirp_error("unavailable", "no leader", 503)(None, None, None)
    srv = fake_server(_txn_replica(lambda n: unavailable if n == 1 else kv_pb2.TxnResponse(succeeded=True)))
    kv = Client([srv.url], timeout=5)
    assert kv.txn(writes=[Put("k", "v")]).succeeded
    assert kv.txn(writes=[Delete("k")]).succeeded
    assert [(r.write.client_id, r.write.sequence) for r in _txns(srv)] == [(7, 1), (7, 1), (7, 2)]


@pytest.mark.parametrize(
    "code,status,reason,exc",
    [("invalid_argument", 400, "", InvalidArgument),
     ("not_found", 404, "lease_not_found", LeaseNotFound),
     ("failed_precondition", 412, "lease_not_found", LeaseNotFound)],
)
def test_txn_refusals_map_and_are_not_retried(fake_server, code, status, reason, exc):
    refusal = _twirp_error(code, "refused", status, {"reason": reason} if reason else None)
    srv = fake_server(_txn_replica(lambda n: refusal(None, None, None)))
    with pytest.raises(exc) as e:
        Client([srv.url], timeout=5).txn(writes=[Put("k", "v", lease=99)])
    assert e.value.code == code
    assert len(_txns(srv)) == 1


def test_txn_parts_are_checked_before_anything_is_sent():
    with pytest.raises(ValueError):
        Compare("k")  # no condition
    with pytest.raises(ValueError):
        Compare("k", if_absent=True, if_value="v")  # two
    kv = Client(["http://127.0.0.1:1"], timeout=1)  # nothing listens there
    with pytest.raises(TypeError):
        kv.txn(writes=[("k", "v")])
    with pytest.raises(TypeError):
        kv.txn([Put("k", "v")], [Put("k", "v")])
    with pytest.raises(TypeError):
        kv.txn(writes=[Compare("k", if_absent=True)])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_txn(cluster, encoding):
    """A put and a delete at once; conditions that fail (indexes, current
    keys, nothing written); refusals."""
    kv = Client(cluster.endpoints, encoding=encoding, timeout=15)
    p = key("txn") + "/"
    rev_a = kv.put(p + "a", "1")
    kv.put(p + "b", "2")

    done = kv.txn([Compare(p + "a", if_revision=rev_a), Compare(p + "c", if_absent=True)],
                  [Put(p + "c", "3"), Delete(p + "b")])
    assert (done.succeeded, done.failed, done.current) == (True, [], [])
    c = kv.get_kv(p + "c")
    assert c.value == "3"
    assert done.revision == c.mod_revision + 1, "the writes at consecutive revisions, the answer's the last"
    assert kv.get(p + "b", None) is None

    # a holds; c exists (not absent); b is gone (version 0, not 1): nothing is written.
    refused = kv.txn([Compare(p + "a", if_value="1"), Compare(p + "c", if_absent=True), Compare(p + "b", if_version=1)],
                     [Put(p + "a", "never")])
    assert (refused.succeeded, refused.failed) == (False, [1, 2])
    assert [(x.key, x.value) for x in refused.current] == [(p + "a", "1"), (p + "c", "3")]
    assert refused.current[1].mod_revision == c.mod_revision
    assert refused.revision >= done.revision
    assert kv.get(p + "a") == "1"

    with pytest.raises(InvalidArgument):
        kv.txn([Compare(p + "a", if_absent=True)], [])  # no write
    with pytest.raises(InvalidArgument):
        kv.txn(writes=[Put(p + "e", "1"), Delete(p + "e")])  # one key twice
    with pytest.raises(InvalidArgument):
        kv.txn(writes=[Put("", "1")])
    # A lease that does not exist fails the whole txn: the delete before it too.
    with pytest.raises(LeaseNotFound):
        kv.txn(writes=[Delete(p + "a"), Put(p + "e", "1", lease=987654321)])
    assert kv.get(p + "a") == "1"
    assert kv.get(p + "e", None) is None


def test_txn_retried_after_a_lost_answer_is_applied_once(cluster, fake_server):
    """The first Txn reaches the cluster but its answer is lost; the client
    retries it at another replica with the same write id and gets the first
    run's answer: a second run would find the key present and fail."""
    k = key("txn-retry")
    dropped = []
    fake = fake_server(losing_first_answer(cluster, "Txn", dropped))
    with Client([fake.url, cluster.endpoints[1]], timeout=15) as kv:
        got = kv.txn([Compare(k, if_absent=True)], [Put(k, "once")])
        assert dropped, "the proxy never saw the Txn"
        assert got.succeeded
        assert kv.get_kv(k).version == 1
        again = kv.txn([Compare(k, if_absent=True)], [Put(k, "twice")])  # a new write: it runs, and fails
        assert (again.succeeded, again.failed, [x.value for x in again.current]) == (False, [0], ["once"])


# --- client authentication (Client(token=...)) ---

TOKEN = "w-0123456789abcdef"
_KV = "/twirp/kv.v1.KVService/"


def _every_kind(what: str):
    """A cluster's answers (JSON encoding) to each kind of request a client
    sends: unary reads, a session and a write, a long poll, a watch stream."""
    answers = {
        "POST " + _KV + "Get": {"key": "k", "value": "v"},
        "POST " + _KV + "OpenSession": {"client_id": "7", "idle_timeout_seconds": 60},
        "POST " + _KV + "Put": {"header": {"revision": "8"}},
        "POST " + _KV + "List": {"revision": "5"},
        "POST " + _KV + "Watch": {"events": [{"type": "EVENT_TYPE_PUT", "kv": {"key": "k", "mod_revision": "6"}}],
                                  "next_after_revision": "6"},
    }
    if what in answers:
        return 200, "application/json", json.dumps(answers[what]).encode()
    if what.startswith("/kvstore/watch/k?"):
        return 200, "text/event-stream", b'id: 7\ndata: {"type":"put","kv":{"key":"k","mod_revision":7}}\n\n'
    return 404, "application/json", b'{"code":"bad_route","msg":"no route"}'


@pytest.mark.parametrize("token", [TOKEN, None])
def test_token_goes_with_every_request(token):
    srv = _StreamServer(_every_kind)
    try:
        with Client([srv.url], encoding="json", token=token) as kv:
            assert kv.get("k") == "v"
            assert kv.put("k", "v2") == 8                                   # OpenSession, Put
            assert kv.revision() == 5                                       # List
            assert next(iter(kv.follow("k", after_revision=5))).kv.mod_revision == 6         # a long poll
            assert next(iter(kv.follow_stream("k", after_revision=5))).kv.mod_revision == 7  # a watch stream
    finally:
        srv.close()
    kinds = [p.split("?")[0].split(" {")[0] for p in srv.paths]
    assert kinds == ["POST " + _KV + m for m in ["Get", "OpenSession", "Put", "List", "Watch"]] + ["/kvstore/watch/k"]
    assert srv.auth == [f"Bearer {token}" if token else None] * len(kinds)


def _refusing(status: int, code: str, msg: str = "refused", session: bool = False):
    """A replica that refuses every request with a Twirp error, except
    OpenSession when session is set."""
    def answer(what: str):
        if session and what == "POST " + _KV + "OpenSession":
            return _every_kind(what)
        return status, "application/json", json.dumps({"code": code, "msg": msg}).encode()
    return answer


_CALLS = {
    "get": lambda kv: kv.get("k"),
    "put": lambda kv: kv.put("k", "v"),                   # the session is refused
    "put_in_session": lambda kv: kv.put("k", "v"),        # the session is granted, the Put refused
    "follow": lambda kv: next(iter(kv.follow("k", after_revision=5))),
    "follow_stream": lambda kv: next(iter(kv.follow_stream("k", after_revision=5))),
}


@pytest.mark.parametrize("status,code,exc", [(401, "unauthenticated", Unauthenticated),
                                             (403, "permission_denied", PermissionDenied)])
@pytest.mark.parametrize("call", sorted(_CALLS))
def test_auth_refusals_are_final(status, code, exc, call):
    """A 401 or 403 raises at once: no other endpoint, no retry, no outcome
    unknown, no long-poll fallback. The other endpoint would answer, so a
    client that moved on would return instead of raising."""
    refusing = _StreamServer(_refusing(status, code, session=call == "put_in_session"))
    other = _StreamServer(_every_kind)
    try:
        with Client([refusing.url, other.url], encoding="json", timeout=5, token=TOKEN) as kv:
            with pytest.raises(exc) as e:
                _CALLS[call](kv)
    finally:
        refusing.close()
        other.close()
    assert type(e.value) is exc and (e.value.code, e.value.status) == (code, status)
    assert len(refusing.paths) == (2 if call == "put_in_session" else 1), refusing.paths
    assert other.paths == []


@pytest.mark.parametrize("status,exc", [(401, Unauthenticated), (403, PermissionDenied)])
def test_auth_refusals_from_a_proxy_are_final(fake_server, status, exc):
    """A proxy's 401/403 (not a Twirp body) counts as the cluster's."""
    srv = fake_server(lambda p, h, b: (status, "text/html", b"<html>go away</html>"))
    other = fake_server(lambda p, h, b: (200, PROTOBUF, kv_pb2.GetResponse(value="v").SerializeToString()))
    with pytest.raises(exc):
        Client([srv.url, other.url], timeout=5, token=TOKEN).get("k")
    assert len(srv.requests) == 1 and other.requests == []


def test_token_never_in_error_text(fake_server):
    """Even from a replica or proxy that echoes the request's headers."""
    echoed = f"bad header Authorization: Bearer {TOKEN}"

    def assert_hidden(err):
        text = f"{err} {err!r} {getattr(err, 'meta', '')}"
        assert TOKEN not in text and "[token]" in text

    twirp = fake_server(_twirp_error("unauthenticated", echoed, 401, {"header": echoed}))
    with pytest.raises(Unauthenticated) as e:
        Client([twirp.url], timeout=5, token=TOKEN).get("k")
    assert_hidden(e.value)
    proxy = fake_server(lambda p, h, b: (401, "text/plain", echoed.encode()))
    with pytest.raises(Unauthenticated) as e:
        Client([proxy.url], timeout=5, token=TOKEN).get("k")
    assert_hidden(e.value)
    busy = fake_server(_twirp_error("unavailable", echoed, 503))
    with pytest.raises(Unavailable) as e:
        Client([busy.url], timeout=0.5, token=TOKEN).get("k")
    assert_hidden(e.value)
    stream = _StreamServer(_refusing(403, "permission_denied", echoed))
    try:
        with pytest.raises(PermissionDenied) as e:
            next(iter(Client([stream.url], timeout=5, token=TOKEN).follow_stream("k", after_revision=5)))
    finally:
        stream.close()
    assert_hidden(e.value)


@pytest.mark.parametrize("bad", ["", "two words-0123456789", "w-0123\r\nX-Other: 1", "w-0123456789abcdef\n",
                                 "w-0123\x00456789abcdef", "w-0123\x7f456789abcdef", "w-\u00e9t\u00e9-0123456789",
                                 b"w-0123456789abcdef", 42])
def test_bad_tokens_are_refused(bad):
    with pytest.raises(ValueError) as e:
        Client(["http://127.0.0.1:1"], token=bad)
    assert "token" in str(e.value)
    if isinstance(bad, str) and bad:
        assert bad.strip() not in str(e.value)


def test_token_and_an_authorization_header_are_refused_together():
    with pytest.raises(ValueError) as e:
        Client(["http://127.0.0.1:1"], token=TOKEN, headers={"authorization": "Bearer other-0123456789"})
    assert TOKEN not in str(e.value)
    kv = Client(["http://127.0.0.1:1"], token=TOKEN)
    assert TOKEN not in repr(kv)


_READ, _WRITE, _ADMIN = "r-0123456789abcdef", "w-0123456789abcdef", "a-0123456789abcdef"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_client_auth_against_a_real_replica(durio_binary, serve_replica, tmp_path, encoding):
    """durio serve --client-auth-file: a read token reads (unary, long poll,
    stream) and may not write, a write token writes, no token or an unknown
    one is unauthenticated."""
    usage = subprocess.run([durio_binary, "serve", "--help"], capture_output=True, text=True, timeout=60)
    if "client-auth-file" not in usage.stdout + usage.stderr:
        pytest.skip("this durio binary has no --client-auth-file (server-side client authentication)")
    auth = tmp_path / "client-auth"
    auth.write_text(f"read {_READ}\nwrite {_WRITE}\nadmin {_ADMIN}\n")
    auth.chmod(0o600)
    replica = serve_replica("--client-auth-file", str(auth))
    k = key("auth")
    with Client([replica.url], encoding=encoding, timeout=10, token=_WRITE) as writer:
        rev = writer.put(k, "v")
        assert writer.get(k) == "v"
    with Client([replica.url], encoding=encoding, timeout=10, token=_READ) as reader:
        assert reader.get(k) == "v"
        assert next(iter(reader.follow(k, after_revision=rev - 1, wait=2))).kv.value == "v"
        assert next(iter(reader.follow_stream(k, after_revision=rev - 1, idle_timeout=10))).kv.value == "v"
        with pytest.raises(PermissionDenied) as e:
            reader.put(k, "read-only")
        assert type(e.value) is PermissionDenied and e.value.status == 403
        assert _READ not in f"{e.value} {e.value!r}"
        assert reader.get(k) == "v"
    for token in [None, "x-0123456789abcdef"]:
        with Client([replica.url], encoding=encoding, timeout=10, token=token) as stranger:
            with pytest.raises(Unauthenticated) as e:
                stranger.get(k)
            assert e.value.status == 401
            with pytest.raises(Unauthenticated):
                next(iter(stranger.follow_stream(k, after_revision=rev - 1, idle_timeout=10)))
