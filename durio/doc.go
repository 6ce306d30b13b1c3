// Package durio is one replica of the durio key-value service: a raft node
// and a kvraft server, a peer listener the replicas talk to each other on,
// and a client listener serving the Twirp and REST APIs, metrics, health and
// the status page. The durio command (package durio/cli, built by
// cmd/durio) starts it with Serve; tests and embedders call StartReplica.
//
// # Using it
//
//	cfg := durio.DefaultConfig()
//	cfg.Peers = []string{"http://10.0.0.1:7001", "http://10.0.0.2:7001", "http://10.0.0.3:7001"}
//	cfg.ID, cfg.ListenClient, cfg.DataDir = 0, ":8001", "/var/lib/durio"
//	lock, err := durio.LockDataDir(cfg.DataDir) // one process per data folder
//	defer lock.Release()
//	store, err := durio.OpenStore(ctx, cfg, logger, durio.WithDataDirLock(lock)) // the persister (a plugin subprocess)
//	r, err := durio.StartReplica(cfg, store, logger)
//	err = <-r.Failed()          // a fatal store error or a listener that died
//	err = r.Close(shutdownCtx)  // client listener, kvraft and raft, peer listener, store
//
// # Assembly
//
// StartReplica (replica.go) builds a replica in one readable order:
// validate the Config, settle the cluster id (bootstrapped or joined,
// join.go), open both listeners behind their guards, then the three layers
// explicitly: kvraft.NewStateMachine, raft.New with it as the application
// and a twirptransport that records AppendEntries in the history, and
// kvraft.StartServer on both. Then the address book (members.go), the
// frontend, the HTTP handlers of both listeners, and the goroutines that
// follow the node's events (followEvents: forwarding, metrics, history and
// the address book share one subscription). Close takes it down from the
// client side: the client listener, kvraft and raft, the peer listener, then
// the store.
//
// # Where each concept lives
//
//   - Configuration: config.go (Config, flags, the YAML file, Validate; every
//     refusal names its field and wraps ErrConfig; ErrUsage is the CLI's
//     equivalent for a bad command line); serve.go (Serve: logging, the
//     data folder's lock, the store, run until the context ends or the
//     replica fails; OpenStore); datadir.go (LockDataDir);
//     logging.go.
//   - The peer plane: peer.go (the pooled peer HTTP client), the raft RPCs
//     of twirptransport, forwarded requests (kvwire's KVService and
//     ForwardService), peer status and history, and the membership service,
//     all on the peer listener; certs.go writes the CA and the per-replica
//     certificates for its mutual TLS (`durio certs`).
//   - The client plane: frontend.go (every client request goes through a
//     kvclient.Clerk over the local server and a forwarder per other
//     replica: writes go to the leader, reads start here; leaderWatch);
//     client_http.go (the Twirp server, the REST routes, input validation
//     and Limits); rest.go and rest_watch.go (the REST routes, lists,
//     watches, leases); longpoll.go (blocking queries and watches, which
//     Close ends first).
//   - Guards for an exposed listener: guard.go (connection caps, the
//     in-flight cap, request ids, the browser policy, JSON-only writes,
//     public errors without internals); limits.go (request bodies).
//   - Membership: members.go (the address book of members' peer and client
//     URLs kept in step with raft's configuration; MemberJSON);
//     member_service.go (the MembershipService API and its refusals);
//     join.go (the cluster id, `serve --join`).
//   - Observability: metrics.go (Prometheus, the metered store); history.go
//     (the bounded in-memory history behind GET /status/history);
//     statuspage.go and web/status.html (GET /status and the page); the
//     Status RPC (Replica.status in replica.go).
//   - Fail-stop: health.go (/healthz, /readyz, a failed store or a panicked
//     node stops the replica: Failed, Fail).
//   - Backups: snapshot_handler.go serves GET /admin/snapshot on the
//     leader; the snapshot file format and the save, verify and restore
//     tools are package durio/backup.
//
// # Tests
//
// Unit tests run handlers and replicas in process (httptest, StartReplica
// on loopback with port 0). The end-to-end tests (*_e2e_test.go) build
// cmd/durio once (e2e_test.go's TestMain) and run real processes with the
// cluster harness in e2e_test.go; cli_e2e_test.go and dev_e2e_test.go
// drive the command's client commands and `durio dev` that way.
package durio
