"""A Python client for durio, the replicated key-value store.

    from durio_client import Client, NotFound

    with Client(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as kv:
        kv.put("greeting", "hello")
        kv.append("greeting", ", world")
        print(kv.get("greeting"))          # hello, world
        kv.delete("greeting")
        print(kv.get("greeting", None))    # None

Client follows the leader across the endpoints, retries what is safe to
retry, and makes writes exactly-once. The generated Twirp client it is built
on is durio_client.KVServiceClient (one replica, no retries), with the
messages in durio_client.kv_pb2.
"""

from ._gen.kv.v1 import kv_pb2
from ._gen.kv.v1.kv_twirp import KVServiceClient
from ._gen.twirp_runtime import TransportError, TwirpError
from .client import Client
from .errors import (
    DurioError,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    PreconditionFailed,
    Unavailable,
)

__all__ = [
    "Client",
    "DurioError",
    "InvalidArgument",
    "KVServiceClient",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "PreconditionFailed",
    "TransportError",
    "TwirpError",
    "Unavailable",
    "kv_pb2",
]

__version__ = "0.1.0"
