// Package kvtest is the test harness of kvraft, after the MIT lab's config:
// replicas on the simulated network of internal/simnet, crash and restart
// from a copy of each replica's memory store, partitions, clerks that reach
// chosen servers, the lab's generic KV test, and linearizability checks with
// porcupine.
//
// Its fault API is rafttest's, with the same names and meaning
// (rafttest.Links): Partition, Heal, Disconnect, Connect, SetLink,
// SetUnreliable, Crash and Restart (disconnected until Connect or Heal),
// plus CrashAll and RestartAll.
package kvtest
