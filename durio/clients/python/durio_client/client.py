"""A friendly durio client over the generated Twirp client."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar, Union

from . import errors
from ._gen.kv.v1 import kv_pb2
from ._gen.kv.v1.kv_twirp import KVServiceClient
from ._gen.twirp_runtime import JSON, PROTOBUF, TransportError, TwirpError

T = TypeVar("T")

_ENCODINGS = {"protobuf": PROTOBUF, "json": JSON}

# Meta keys and reasons of durio's Twirp errors (rpc/kv/v1/kv.proto).
_META_LEADER_URL = "leader_url"
_META_PROPOSED = "proposed"
_META_REASON = "reason"
_REASON_NO_SESSION = "no_session"

_MISSING = object()

# MAX_PENDING is the most writes of one session at or above its ack (running,
# or finished after one still running) that a replica keeps results for; it
# refuses more (too_many_pending). The client opens another session instead,
# as the Go client does.
MAX_PENDING = 256


class _Session:
    """One exactly-once session: its id, next sequence number and running
    writes. The client's lock guards it."""

    __slots__ = ("id", "next_seq", "in_flight")

    def __init__(self, client_id: int) -> None:
        self.id = client_id
        self.next_seq = 1
        self.in_flight: Set[int] = set()

    def ack(self) -> int:
        """The lowest sequence number still running (every one below it has
        finished), or the next one."""
        return min(self.in_flight, default=self.next_seq)

    def begin(self) -> Optional[int]:
        """Takes the next sequence number, or None if the replicas would keep
        no more results for the session."""
        if self.next_seq - self.ack() >= MAX_PENDING:
            return None
        seq = self.next_seq
        self.next_seq += 1
        self.in_flight.add(seq)
        return seq


@dataclass(frozen=True)
class Compare:
    """One condition of a txn on key: exactly one of the conditions put and
    delete take, if_absent (the key does not exist), if_revision (its
    mod_revision), if_version (0: absent) or if_value. Constructing one with
    none or several raises ValueError."""

    key: str
    if_absent: bool = False
    if_revision: Optional[int] = None
    if_version: Optional[int] = None
    if_value: Optional[str] = None

    def __post_init__(self) -> None:
        self._proto()  # refuse a Compare without exactly one condition where it is written

    def _proto(self) -> kv_pb2.Compare:
        cond = _condition(self.if_absent, self.if_revision, self.if_version, self.if_value)
        if cond is None:
            raise ValueError("durio: a Compare needs one of if_absent, if_revision, if_version and if_value")
        return kv_pb2.Compare(key=self.key, condition=cond)


@dataclass(frozen=True)
class Put:
    """A write of a txn that sets key to value; lease attaches it to a lease
    (lease_grant), and none detaches it from the lease it had, as in put."""

    key: str
    value: str
    lease: int = 0

    def _proto(self) -> kv_pb2.TxnWrite:
        return kv_pb2.TxnWrite(put=kv_pb2.TxnPut(key=self.key, value=self.value, lease=self.lease))


@dataclass(frozen=True)
class Delete:
    """A write of a txn that removes key (a missing key is no error)."""

    key: str

    def _proto(self) -> kv_pb2.TxnWrite:
        return kv_pb2.TxnWrite(delete=kv_pb2.TxnDelete(key=self.key))


@dataclass(frozen=True)
class TxnResult:
    """What a txn answered.

    succeeded is whether every condition held and the writes were applied.
    revision is the store revision after the last write if it succeeded,
    else the revision the conditions were checked at. When it did not
    succeed, failed lists the indexes (in conditions) of those that did not
    hold, and current every compared key that existed at revision
    (kv_pb2.KeyValue, once each, in the order of conditions).
    """

    succeeded: bool
    revision: int
    failed: List[int] = field(default_factory=list)
    current: List[kv_pb2.KeyValue] = field(default_factory=list)


class Client:
    """A client of a durio cluster.

    endpoints are the replicas' client URLs (a list, or one comma-separated
    string). Any replica serves any request; the client sticks to the one that
    last answered and moves to another (preferring the leader a replica names)
    when it cannot be reached or cannot serve.

    timeout bounds each method call in seconds, retries included; keep it
    above the servers' --request-timeout (default 5 s) so that their own
    answer, not the client's patience, decides. attempt_timeout bounds one
    HTTP exchange with one replica, so that a stopped replica costs at most
    that before the next one is tried. encoding is "protobuf" or "json".

    token is for a cluster that authenticates its clients (durio serve
    --client-auth-file): every request carries "Authorization: Bearer
    <token>". A call the token's role does not allow raises PermissionDenied,
    one without a token the cluster knows Unauthenticated; neither is retried.

    Writes are exactly-once: the client opens a session with the cluster on
    its first write and numbers its writes, so a write retried after a lost
    answer is applied at most once. A Client is safe to use from several
    threads; it keeps keep-alive connections until close().
    """

    def __init__(
        self,
        endpoints: Union[str, Sequence[str]],
        *,
        timeout: float = 10.0,
        attempt_timeout: float = 3.0,
        encoding: str = "protobuf",
        ssl_context: Optional[ssl.SSLContext] = None,
        headers: Optional[Mapping[str, str]] = None,
        token: Optional[str] = None,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        urls = [e.strip().rstrip("/") for e in endpoints if e.strip()]
        if not urls:
            raise ValueError("durio: no endpoints")
        if encoding not in _ENCODINGS:
            raise ValueError(f"durio: encoding must be 'protobuf' or 'json', not {encoding!r}")
        if timeout <= 0 or attempt_timeout <= 0:
            raise ValueError("durio: timeouts must be positive")
        headers = dict(headers or {})
        if token is not None:
            _check_token(token)
            if any(h.lower() == "authorization" for h in headers):
                raise ValueError("durio: give token or an Authorization header, not both")
            headers["Authorization"] = "Bearer " + token
        # _token is blanked out of the errors replicas answer (_error).
        self._token = token or ""
        self.endpoints: List[str] = urls
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._stubs = [
            KVServiceClient(u, encoding=_ENCODINGS[encoding], timeout=attempt_timeout, ssl_context=ssl_context, headers=headers)
            for u in urls
        ]
        # _lock guards the fields below it.
        self._lock = threading.Lock()
        self._current = 0
        # The session new writes take their sequence numbers in (None before
        # the first write); one that is replaced keeps its running writes.
        self._session: Optional[_Session] = None
        # _opening is set while one thread opens a session; the others wait for it.
        self._opening: Optional[threading.Event] = None

    # --- the key-value API ---

    def get(self, key: str, default: object = _MISSING, *, stale: bool = False) -> str:
        """Returns key's value.

        A missing key raises NotFound, or returns default when one is given.
        Reads are linearizable (they reflect every write acknowledged before
        the call); stale=True reads the answering replica's local state
        instead, which is cheaper and may lag.
        """
        consistency = kv_pb2.READ_CONSISTENCY_STALE if stale else kv_pb2.READ_CONSISTENCY_LINEARIZABLE
        req = kv_pb2.GetRequest(key=key, consistency=consistency)
        try:
            resp = self._read(lambda stub, t: stub.get(req, timeout=t))
        except errors.NotFound:
            if default is _MISSING:
                raise
            return default  # type: ignore[return-value]
        return resp.value

    def get_kv(self, key: str, *, stale: bool = False) -> kv_pb2.GetResponse:
        """Returns key with its metadata (create_revision, mod_revision,
        version, lease) and, in header.revision, the store revision of the
        read; raises NotFound for a missing key."""
        consistency = kv_pb2.READ_CONSISTENCY_STALE if stale else kv_pb2.READ_CONSISTENCY_LINEARIZABLE
        req = kv_pb2.GetRequest(key=key, consistency=consistency)
        return self._read(lambda stub, t: stub.get(req, timeout=t))

    def put(
        self,
        key: str,
        value: str,
        *,
        if_absent: bool = False,
        if_revision: Optional[int] = None,
        if_version: Optional[int] = None,
        if_value: Optional[str] = None,
        lease: int = 0,
    ) -> int:
        """Sets key to value, exactly once, and returns the write's revision
        (the key's new mod_revision).

        At most one condition makes it a compare-and-swap: if_absent (create
        only), if_revision (the key's mod_revision, as get_kv returns it),
        if_version (0: absent) or if_value. A condition that does not hold
        raises ConditionFailed and writes nothing. lease attaches the key to
        a lease (lease_grant): the key is deleted when the lease ends.
        """
        cond = _condition(if_absent, if_revision, if_version, if_value)
        resp = self._write(lambda stub, w, t: stub.put(
            kv_pb2.PutRequest(key=key, value=value, write=w, condition=cond, lease=lease), timeout=t), key)
        return int(resp.header.revision)

    def append(self, key: str, value: str) -> None:
        """Appends value to key's value (a missing key counts as empty), exactly once."""
        self._write(lambda stub, w, t: stub.append(kv_pb2.AppendRequest(key=key, value=value, write=w), timeout=t))

    def delete(
        self,
        key: str,
        *,
        if_revision: Optional[int] = None,
        if_version: Optional[int] = None,
        if_value: Optional[str] = None,
    ) -> bool:
        """Removes key, exactly once; returns whether it existed. A condition
        works as in put (ConditionFailed if it does not hold)."""
        cond = _condition(False, if_revision, if_version, if_value)
        resp = self._write(lambda stub, w, t: stub.delete(kv_pb2.DeleteRequest(key=key, write=w, condition=cond), timeout=t), key)
        return bool(resp.existed)

    def txn(self, conditions: Iterable[Compare] = (), writes: Iterable[Union[Put, Delete]] = ()) -> TxnResult:
        """Applies every write (Put, Delete), in order, atomically and
        exactly once, if every condition (Compare) holds when the cluster
        applies them; else none. Conditions that do not hold are an answer,
        not an error: the TxnResult says which failed and what the compared
        keys held. No conditions: the writes always apply.

            r = kv.txn([Compare("stock/a", if_value="1"), Compare("order/7", if_absent=True)],
                       [Put("stock/a", "0"), Put("order/7", "a"), Delete("cart/7")])
            if not r.succeeded:
                print("conflict on", r.failed, [(c.key, c.value) for c in r.current])

        It is retried as every write is. The cluster refuses with
        InvalidArgument a txn with no write, more than 128 conditions or
        writes, an empty key or a key written twice; a Put naming a lease
        that does not exist fails it whole (LeaseNotFound), writing nothing.
        """
        conds = [_txn_part(c, Compare, "condition") for c in conditions]
        ops = [_txn_part(w, (Put, Delete), "write") for w in writes]
        resp = self._write(lambda stub, w, t: stub.txn(kv_pb2.TxnRequest(conditions=conds, writes=ops, write=w), timeout=t))
        return TxnResult(bool(resp.succeeded), int(resp.header.revision), list(resp.failed), list(resp.current))

    def list(
        self,
        prefix: str = "",
        *,
        after: str = "",
        limit: int = 0,
        keys_only: bool = False,
        revision: int = 0,
        stale: bool = False,
    ) -> kv_pb2.ListResponse:
        """Returns one page of the keys under prefix (kvs, more, revision), in
        byte order. For the next page pass after=the last key and
        revision=the page's revision, so all pages show one revision."""
        consistency = kv_pb2.READ_CONSISTENCY_STALE if stale else kv_pb2.READ_CONSISTENCY_LINEARIZABLE
        req = kv_pb2.ListRequest(prefix=prefix, after=after, limit=limit, keys_only=keys_only, revision=revision,
                                 consistency=consistency)
        return self._read(lambda stub, t: stub.list(req, timeout=t))

    def list_all(self, prefix: str = "", *, keys_only: bool = False, page_size: int = 0) -> Iterator[kv_pb2.KeyValue]:
        """Yields every key under prefix, page after page at one revision."""
        after, revision = "", 0
        while True:
            page = self.list(prefix, after=after, limit=page_size, keys_only=keys_only, revision=revision)
            yield from page.kvs
            if not page.more or not page.kvs:
                return
            after, revision = page.kvs[-1].key, page.revision

    def revision(self) -> int:
        """The store revision a linearizable read sees now: where follow
        starts by default."""
        return int(self.list(limit=1, keys_only=True).revision)

    def watch(self, key: str, *, prefix: bool = False, after_revision: int = 0, wait: float = 30.0,
              limit: int = 0) -> kv_pb2.WatchResponse:
        """One long poll: answers as soon as key (or, with prefix, any key
        under it) changed after after_revision, with every such event; or
        with none after wait seconds; or with compacted set. Any replica
        answers; a failed attempt is retried at another with the same
        revision, so no event is lost or repeated."""
        req = kv_pb2.WatchRequest(key=key, prefix=prefix, after_revision=after_revision, wait_ms=int(wait * 1000), limit=limit)
        deadline = time.monotonic() + wait + self.timeout
        return self._retry(lambda stub, t: stub.watch(req, timeout=t), deadline, write=False,
                           attempt_timeout=wait + self.attempt_timeout)

    def follow(self, key: str, *, prefix: bool = False, after_revision: Optional[int] = None,
               wait: float = 30.0) -> Iterator[kv_pb2.Event]:
        """Yields every change of key (or of every key under it, with prefix)
        after after_revision (default: now), in revision order, across
        replica failures and leader changes, for as long as the caller
        iterates. Raises Compacted if the history after the revision it
        resumes from is no longer kept."""
        after = self.revision() if after_revision is None else after_revision
        while True:
            try:
                resp = self.watch(key, prefix=prefix, after_revision=after, wait=wait)
            except errors.Unavailable:
                time.sleep(0.2)  # no replica answered in time: keep the revision, try again
                continue
            if resp.compacted:
                raise errors.Compacted(f"events after revision {after} were compacted (oldest kept: {resp.compact_revision})",
                                       code="out_of_range")
            yield from resp.events
            after = max(after, int(resp.next_after_revision))

    def follow_stream(self, key: str, *, prefix: bool = False, after_revision: Optional[int] = None,
                      idle_timeout: float = 40.0) -> Iterator[kv_pb2.Event]:
        """follow over a replica's watch stream (server-sent events on
        GET /kvstore/watch/...): one long-lived request per replica instead of
        one long poll per batch of changes, about half the replicas' CPU per
        change. The same promise: every change after after_revision (default:
        now), in revision order, none lost and none twice, across replica
        failures, for as long as the caller iterates. A stream silent for
        idle_timeout seconds (replicas send a heartbeat at least every 15 s)
        is left for the next replica. Raises Compacted if the history it
        needs is gone, InvalidArgument (or the matching error, such as
        Unauthenticated for a 401 and PermissionDenied for a 403) for a
        refusal every replica would repeat (a 4xx other than 408 and 429),
        without trying another replica or falling back to long polls. A replica
        from before watch streams answers with a long poll: it then goes on as
        follow."""
        after = self.revision() if after_revision is None else after_revision
        failed = 0
        with self._lock:
            i = self._current
        while True:
            stub = self._stubs[i % len(self._stubs)]
            i += 1
            progressed = legacy = False
            try:
                for rev, event in _stream(stub, key, prefix, after, idle_timeout):
                    if rev <= after:
                        continue
                    progressed = True
                    if event is not None:
                        yield event
                    after = rev
            except _NoStreams:
                legacy = True
            except TwirpError as e:
                raise self._error(e) from None  # a refusal every replica would repeat
            except (OSError, http.client.HTTPException, ValueError):
                pass  # no answer, a broken or silent stream, a malformed message: next replica
            if legacy:
                # A replica from before watch streams answered with a long
                # poll: go on with long polls from where the stream left off.
                yield from self.follow(key, prefix=prefix, after_revision=after)
                return
            if progressed:
                failed = 0
                continue
            failed += 1
            if failed >= len(self._stubs):
                failed = 0
                time.sleep(1.0)  # every replica failed in turn

    def lease_grant(self, ttl: float) -> Tuple[int, float]:
        """Creates a lease of ttl seconds (at least 1) and returns (id, ttl).
        Keys put with lease=id are deleted when it ends."""
        resp = self._write(lambda stub, w, t: stub.lease_grant(kv_pb2.LeaseGrantRequest(ttl_ms=int(ttl * 1000), write=w), timeout=t))
        return int(resp.id), resp.ttl_ms / 1000

    def lease_keep_alive(self, lease: int) -> float:
        """Restarts the lease's TTL and returns it in seconds; LeaseNotFound
        if the lease has ended."""
        resp = self._read(lambda stub, t: stub.lease_keep_alive(kv_pb2.LeaseKeepAliveRequest(id=lease), timeout=t))
        return resp.ttl_ms / 1000

    def lease_revoke(self, lease: int) -> bool:
        """Ends the lease now and deletes its keys; returns whether it existed."""
        resp = self._write(lambda stub, w, t: stub.lease_revoke(kv_pb2.LeaseRevokeRequest(id=lease, write=w), timeout=t))
        return bool(resp.existed)

    def lease_time_to_live(self, lease: int, *, keys: bool = False) -> kv_pb2.LeaseTimeToLiveResponse:
        """Describes the lease (ttl_ms, remaining_ms, and its keys if asked);
        LeaseNotFound if it has ended."""
        return self._read(lambda stub, t: stub.lease_time_to_live(kv_pb2.LeaseTimeToLiveRequest(id=lease, keys=keys), timeout=t))

    def status(self) -> kv_pb2.StatusResponse:
        """Describes the replica that answers: role, term, leader, indexes."""
        return self._read(lambda stub, t: stub.status(kv_pb2.StatusRequest(), timeout=t))

    def close(self) -> None:
        """Closes idle connections. The client stays usable."""
        for s in self._stubs:
            s.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- retries ---

    def _read(self, call: Callable[[KVServiceClient, float], T]) -> T:
        deadline = time.monotonic() + self.timeout
        return self._retry(call, deadline, write=False)

    def _write(self, call: Callable[[KVServiceClient, kv_pb2.WriteHeader, float], T], key: str = "") -> T:
        try:
            return self._write_once(call)
        except errors.ConditionFailed as e:
            if e.current is not None:
                e.current.key = key
            raise

    def _write_once(self, call: Callable[[KVServiceClient, kv_pb2.WriteHeader, float], T]) -> T:
        deadline = time.monotonic() + self.timeout
        session, seq, ack = self._begin_write(deadline)
        try:
            while True:
                header = kv_pb2.WriteHeader(client_id=session.id, sequence=seq, ack=ack)
                try:
                    return self._retry(lambda stub, t: call(stub, header, t), deadline, write=True)
                except _NoSession as e:
                    if e.maybe_applied:
                        raise errors.OutcomeUnknown(
                            "the write's session expired while its outcome was unknown; it was applied at most once",
                            code="failed_precondition", meta=e.err.meta, status=e.err.status) from None
                    # Never applied under the old session: safe to renumber.
                    self._end_write(session, seq)
                    session, seq, ack = self._begin_write(deadline, avoid=session)
        finally:
            self._end_write(session, seq)

    def _begin_write(self, deadline: float, avoid: Optional[_Session] = None) -> "tuple[_Session, int, int]":
        """Takes a sequence number in the current session, unless that is
        avoid (the cluster forgot it) or has no room: then in a new one,
        opened by one thread while the others wait for it."""
        while True:
            with self._lock:
                s = self._session
                if s is not None and s is not avoid:
                    seq = s.begin()
                    if seq is not None:
                        # Every write below the lowest one still running has finished.
                        return s, seq, s.ack()
                    avoid = s
                opened = self._opening
                if opened is None:
                    self._opening = threading.Event()
            if opened is not None:
                if not opened.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise errors.Unavailable(f"no session opened within {self.timeout:g}s", code="unavailable")
                continue
            try:
                resp = self._retry(lambda stub, t: stub.open_session(kv_pb2.OpenSessionRequest(), timeout=t),
                                   deadline, write=False)
                with self._lock:
                    if self._session is None or self._session is avoid:
                        self._session = _Session(resp.client_id)
            finally:
                with self._lock:
                    opening, self._opening = self._opening, None
                opening.set()

    def _end_write(self, session: _Session, seq: int) -> None:
        with self._lock:
            session.in_flight.discard(seq)

    def _retry(self, call: Callable[[KVServiceClient, float], T], deadline: float, *, write: bool,
               attempt_timeout: Optional[float] = None) -> T:
        """Runs call against one replica after another until one answers
        definitely or the deadline passes."""
        last: Optional[BaseException] = None
        maybe_applied = False
        failures = 0
        backoff = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._lock:
                idx = self._current
            try:
                return call(self._stubs[idx], min(attempt_timeout or self.attempt_timeout, remaining))
            except TwirpError as e:
                err = self._error(e)
                if isinstance(err, errors.PermissionDenied):
                    raise err from None  # every replica would refuse the same token: final
                if e.code == "failed_precondition" and e.meta.get(_META_REASON) == _REASON_NO_SESSION and write:
                    raise _NoSession(err, maybe_applied) from None
                if e.code == "deadline_exceeded" or e.meta.get(_META_PROPOSED) == "true":
                    maybe_applied = True
                elif not isinstance(err, errors.Unavailable):
                    raise err from None
                last = err
                self._move(idx, e.meta.get(_META_LEADER_URL, ""))
            except TransportError as e:
                maybe_applied = maybe_applied or e.sent
                last = e
                self._move(idx, "")
            failures += 1
            if failures % len(self._stubs) == 0:
                # Every replica failed once: give the cluster time to elect.
                time.sleep(max(0.0, min(backoff, deadline - time.monotonic())))
                backoff = min(backoff * 2, 1.0)
        if write and maybe_applied:
            raise errors.OutcomeUnknown(
                f"no replica confirmed the write within {self.timeout:g}s; it was applied at most once ({last})",
                code="deadline_exceeded")
        if isinstance(last, errors.DurioError):
            raise errors.Unavailable(f"no replica could serve the request within {self.timeout:g}s: {last}",
                                     code=last.code, meta=last.meta, status=last.status)
        raise errors.Unavailable(f"no replica answered within {self.timeout:g}s: {last}", code="unavailable")

    def _error(self, e: TwirpError) -> errors.DurioError:
        """The exception for an error a replica answered, with the token
        blanked out of its text in case a replica or a proxy echoed the
        request."""
        token = self._token
        if token:
            e = TwirpError(e.code, e.msg.replace(token, "[token]"),
                           {k: v.replace(token, "[token]") for k, v in e.meta.items()}, e.status)
        return errors.from_twirp(e)

    def _move(self, failed: int, hint: str) -> None:
        """Picks the replica to try after the one at index failed: the leader
        a replica named, if it is one of the endpoints, else the next one."""
        hint = hint.rstrip("/")
        with self._lock:
            if self._current != failed:
                return  # another thread has moved on already
            if hint in self.endpoints and self.endpoints.index(hint) != failed:
                self._current = self.endpoints.index(hint)
            else:
                self._current = (failed + 1) % len(self._stubs)


def _check_token(token: object) -> None:
    """Refuses a token that cannot go in an Authorization header as it is.
    The messages never quote the token."""
    if not isinstance(token, str):
        raise ValueError(f"durio: token must be a str, not {type(token).__name__}")
    if not token:
        raise ValueError("durio: token is empty (leave it None for a cluster without client authentication)")
    if not all("\x21" <= c <= "\x7e" for c in token):
        raise ValueError("durio: token must be printable ASCII without spaces, line breaks or control characters")


def _condition(if_absent: bool, if_revision: Optional[int], if_version: Optional[int],
               if_value: Optional[str]) -> Optional[kv_pb2.Condition]:
    """The Condition the keyword arguments ask for; at most one."""
    conds = []
    if if_absent:
        conds.append(kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_ABSENT))
    if if_revision is not None:
        conds.append(kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_MOD_REVISION, mod_revision=if_revision))
    if if_version is not None:
        conds.append(kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_VERSION, version=if_version))
    if if_value is not None:
        conds.append(kv_pb2.Condition(kind=kv_pb2.CONDITION_KIND_VALUE, value=if_value))
    if len(conds) > 1:
        raise ValueError("durio: give at most one of if_absent, if_revision, if_version and if_value")
    return conds[0] if conds else None


def _txn_part(part: object, kinds: Union[type, Tuple[type, ...]], what: str):
    """The message of one condition or write of a txn, which must be of one of kinds."""
    if not isinstance(part, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise TypeError(f"durio: a txn {what} is a {names}, not {type(part).__name__}")
    return part._proto()  # type: ignore[attr-defined]


class _NoSession(Exception):
    """The cluster does not know the write's session (expired)."""

    def __init__(self, err: errors.DurioError, maybe_applied: bool) -> None:
        super().__init__(str(err))
        self.err = err
        self.maybe_applied = maybe_applied


_MAX_STREAM_MESSAGE = 64 << 20


class _NoStreams(Exception):
    """A replica answered a stream request with a long poll's JSON: a version
    from before watch streams."""


def _str_meta(meta: object) -> Dict[str, str]:
    """A Twirp error's meta as it came in JSON, its values as strings."""
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _stream_kv(d: Mapping[str, object]) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=str(d.get("key", "")), value=str(d.get("value", "")),
                           create_revision=int(d.get("create_revision", 0)),  # type: ignore[arg-type]
                           mod_revision=int(d.get("mod_revision", 0)),  # type: ignore[arg-type]
                           version=int(d.get("version", 0)), lease=int(d.get("lease", 0)))  # type: ignore[arg-type]


def _stream(stub: KVServiceClient, key: str, prefix: bool, after: int,
            idle_timeout: float) -> Iterator[Tuple[int, Optional[kv_pb2.Event]]]:
    """Yields (revision, event) for each change of one replica's watch stream
    after after, and (revision, None) for each message that only moves the
    resume point on; it ends (or raises) when the stream does. A refusal
    (a 4xx answer, a compacted message) raises TwirpError, as a Twirp call
    would. The request carries the stub's headers, Authorization among
    them."""
    if key in (".", ".."):
        path_key = key.replace(".", "%2E")  # else a path step
    else:
        path_key = urllib.parse.quote(key, safe="")
    # stream=true: a proxy may drop Accept. wait: the longest silence wanted,
    # so that a replica from before streams answers its long poll well
    # before idle_timeout.
    wait_ms = max(1, int(min(10.0, idle_timeout / 2) * 1000))
    query = urllib.parse.urlencode({"index": str(after), **({"prefix": "true"} if prefix else {}),
                                    "stream": "true", "wait": f"{wait_ms}ms"})
    base = urllib.parse.urlsplit(stub.base_url).path.rstrip("/")
    conn = stub._connect(idle_timeout)  # a connection of its own, with the stub's TLS settings
    try:
        conn.request("GET", f"{base}/kvstore/watch/{path_key}?{query}",
                     headers={**stub._headers, "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status == 200 and resp.getheader("Content-Type", "").startswith("application/json"):
            raise _NoStreams()
        if resp.status != 200 or not resp.getheader("Content-Type", "").startswith("text/event-stream"):
            body = resp.read(64 << 10)
            if 400 <= resp.status < 500 and resp.status not in (408, 429):
                try:
                    e = json.loads(body)
                except ValueError:
                    e = {}
                if not isinstance(e, dict):
                    e = {}  # not a Twirp error body: a proxy's, say
                code = {400: "invalid_argument", 410: "out_of_range"}.get(resp.status, str(e.get("code", "unknown")))
                meta = _str_meta(e.get("meta"))
                if resp.status == 410:
                    meta = {"reason": "compacted", **meta}
                raise TwirpError(code, str(e.get("msg", resp.reason)), meta=meta, status=resp.status)
            raise ValueError(f"watch stream: {resp.status} {resp.reason}")
        rid: Optional[str] = None
        event = ""
        data: List[str] = []
        size = 0
        while True:
            raw = resp.readline(_MAX_STREAM_MESSAGE + 1)
            if not raw:
                return  # the stream ended
            if len(raw) > _MAX_STREAM_MESSAGE or not raw.endswith(b"\n"):
                raise ValueError("a watch stream line is too long, or cut off")
            line = raw.decode("utf-8").rstrip("\r\n")
            if line:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "id":
                    rid = value
                elif field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
                    size += len(value)
                    if size > _MAX_STREAM_MESSAGE:
                        raise ValueError("a watch stream message is too long")
                continue
            # A blank line ends a message.
            text = "\n".join(data)
            if event == "compacted":
                e = json.loads(text or "{}")
                raise TwirpError("out_of_range", str(e.get("msg", f"events after revision {after} were compacted")),
                                 meta={**_str_meta(e.get("meta")), "reason": "compacted"}, status=200)
            if rid is not None and rid.isdigit():
                if not text:
                    yield int(rid), None  # the stream's start, or a heartbeat
                else:
                    d = json.loads(text)
                    typ = kv_pb2.EVENT_TYPE_DELETE if d.get("type") == "delete" else kv_pb2.EVENT_TYPE_PUT
                    ev = kv_pb2.Event(type=typ, kv=_stream_kv(d.get("kv") or {}))
                    if d.get("prev_kv"):
                        ev.prev_kv.CopyFrom(_stream_kv(d["prev_kv"]))
                    yield int(rid), ev
            rid, event, data, size = None, "", [], 0
    finally:
        conn.close()
