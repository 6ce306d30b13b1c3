"""A Python client for durio, the replicated key-value store.

    from durio_client import Client, Compare, Delete, NotFound, Put

    with Client(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as kv:
        kv.put("greeting", "hello")
        kv.append("greeting", ", world")
        print(kv.get("greeting"))          # hello, world
        kv.delete("greeting")
        print(kv.get("greeting", None))    # None

        kv.put("doc", "v1", if_absent=True)             # compare-and-swap
        cur = kv.get_kv("doc")
        kv.put("doc", "v2", if_revision=cur.mod_revision)
        for item in kv.list_all("users/"):               # prefix listing
            print(item.key, item.value)
        for event in kv.follow("jobs/", prefix=True):     # watch (runs until break)
            print(event.type, event.kv.key)
            break
        lease, ttl = kv.lease_grant(10.0)                # TTL keys
        kv.put("presence/me", "online", lease=lease)
        r = kv.txn([Compare("doc", if_value="v2")],      # several keys at once
                   [Put("doc", "v3"), Delete("draft")])
        print(r.succeeded, r.failed, r.current)

Client follows the leader across the endpoints, retries what is safe to
retry, and makes writes exactly-once. The generated Twirp client it is built
on is durio_client.KVServiceClient (one replica, no retries), with the
messages in durio_client.kv_pb2.
"""

from ._gen.kv.v1 import kv_pb2
from ._gen.kv.v1.kv_twirp import KVServiceClient
from ._gen.twirp_runtime import TransportError, TwirpError
from .client import MAX_PENDING, Client, Compare, Delete, Put, TxnResult
from .errors import (
    Compacted,
    ConditionFailed,
    DurioError,
    InvalidArgument,
    LeaseNotFound,
    NoSpace,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    PreconditionFailed,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "Client",
    "Compacted",
    "Compare",
    "ConditionFailed",
    "Delete",
    "DurioError",
    "InvalidArgument",
    "KVServiceClient",
    "LeaseNotFound",
    "MAX_PENDING",
    "NoSpace",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "PreconditionFailed",
    "Put",
    "TransportError",
    "TwirpError",
    "TxnResult",
    "Unauthenticated",
    "Unavailable",
    "kv_pb2",
]

__version__ = "0.1.0"
