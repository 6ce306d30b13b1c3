"""Put, get, append, delete and a transaction against a durio cluster, and what a retry looks like.

Start a cluster first (`go run ./cmd/durio dev` from the repository), then:

    python3 examples/example.py [http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003]
"""

from __future__ import annotations

import sys

from durio_client import Client, Compare, Delete, KVServiceClient, NotFound, OutcomeUnknown, Put, Unavailable, kv_pb2

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

    # A transaction: move a job from the queue to a worker only if it is
    # still queued; the second claim finds it gone and writes nothing.
    kv.put("queue/job-1", "queued")
    for worker in ("ann", "bob"):
        r = kv.txn([Compare("queue/job-1", if_value="queued")], [Delete("queue/job-1"), Put(f"running/{worker}", "job-1")])
        print(f"{worker} claims job-1:", r.succeeded, "failed conditions:", r.failed)
    kv.delete("running/ann")

    try:
        kv.put("k", "v")
    except OutcomeUnknown:
        print("the cluster did not confirm in time; read the key to learn whether it was applied")
    except Unavailable:
        print("no replica could take the write; it was not applied")
