"""Put, get, append and delete against a durio cluster, and what a retry looks like.

Start a cluster first (`go run ./cmd/durio dev` from the repository), then:

    python3 examples/example.py [http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003]
"""

from __future__ import annotations

import sys

from durio_client import Client, KVServiceClient, NotFound, OutcomeUnknown, Unavailable, kv_pb2

endpoints = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"

with Client(endpoints, timeout=10) as kv:
    kv.put("config/greeting", "hello")
    kv.append("config/greeting", ", world")
    print("get:", kv.get("config/greeting"))
    print("stale get:", kv.get("config/greeting", stale=True))
    print("deleted:", kv.delete("config/greeting"))
    try:
        kv.get("config/greeting")
    except NotFound:
        print("gone, as expected")
    print("with a default:", kv.get("config/greeting", "(none)"))

    # Writes are exactly-once: Client retries a write whose answer was lost
    # with the same write id. The same thing by hand, with the generated
    # client: one session, one write id, sent twice, applied once.
    raw = KVServiceClient(kv.endpoints[0], timeout=10)
    session = raw.open_session(kv_pb2.OpenSessionRequest()).client_id
    write = kv_pb2.WriteHeader(client_id=session, sequence=1)
    for attempt in (1, 2):
        raw.append(kv_pb2.AppendRequest(key="counter/visits", value="I", write=write))
    print("appended twice with one id:", kv.get("counter/visits"))  # "I", not "II"
    kv.delete("counter/visits")

    try:
        kv.put("k", "v")
    except OutcomeUnknown:
        print("the cluster did not confirm in time; read the key to learn whether it was applied")
    except Unavailable:
        print("no replica could take the write; it was not applied")
