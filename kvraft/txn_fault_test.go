package kvraft_test

import (
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// The bank: clients move money between accounts with read-then-Txn while
// the leader is cut off, servers crash and restart, and the network drops
// and delays messages; every listing must sum to the total, and at the end
// the balances, the revisions consumed and the history must match exactly
// the transfers the clients saw succeed (see kvtest.BankTest).

// TestTxnBank: partitions (the leader in a minority, or a random split)
// and crashes, of the leader half the time.
func TestTxnBank(t *testing.T) {
	kvtest.BankTest(t, kvtest.BankParams{Servers: 5, Accounts: 5, Clients: 4, Partitions: true, Crashes: true, RunFor: 4 * time.Second})
}

// TestTxnBankUnreliableSnapshots: the same on a network that is
// unreliable most of the time, with snapshots taken every kilobyte or so
// (so restarts and lagging followers install them mid-run).
func TestTxnBankUnreliableSnapshots(t *testing.T) {
	kvtest.BankTest(t, kvtest.BankParams{Servers: 5, Accounts: 5, Clients: 4, Unreliable: true, Partitions: true, Crashes: true, Flaky: true,
		MaxRaftState: 1000, RunFor: 4 * time.Second})
}

// TestTxnBankForwarded: the same with every write forwarded in batches
// through kvwire.Forwarders, as durio's frontend sends them (abandoned
// calls and unknown outcomes resolved by the clerk's retries).
func TestTxnBankForwarded(t *testing.T) {
	kvtest.BankTest(t, kvtest.BankParams{Servers: 5, Accounts: 5, Clients: 4, Partitions: true, Crashes: true, Flaky: true,
		MaxRaftState: 2000, Forward: true, RunFor: 4 * time.Second})
}

// TestTxnPartitionLinearizable: Txns over several keys (conditioned on
// mod revisions, versions, values and absence, putting and deleting)
// mixed with Gets, conditional Puts and Deletes and paged Lists, under
// random partitions; porcupine checks the history with the revision
// model, which knows Txns.
func TestTxnPartitionLinearizable(t *testing.T) {
	kvtest.RevTest(t, kvtest.RevParams{Servers: 5, Clients: 3, Partitions: true, Rounds: 2, RoundTime: 3 * time.Second, ListPage: 2, Txns: true})
}

// TestTxnForwardedLinearizable: the same with crashes of every server
// between rounds, snapshots, and writes forwarded in batches through
// kvwire.Forwarders. (The network is reliable: forwarded calls on the
// unreliable one are so slow that too little happens to judge; the
// forwarded bank test covers them.)
func TestTxnForwardedLinearizable(t *testing.T) {
	kvtest.RevTest(t, kvtest.RevParams{Servers: 5, Clients: 3, Crash: true, Partitions: true,
		MaxRaftState: 1000, Rounds: 2, RoundTime: 3 * time.Second, ListPage: 2, Txns: true, Forward: true})
}

// TestTxnUnreliableLinearizable: unreliable, partitions and crashes, the
// clerks' writes sent directly (their retries meet the session table).
func TestTxnUnreliableLinearizable(t *testing.T) {
	kvtest.RevTest(t, kvtest.RevParams{Servers: 5, Clients: 3, Unreliable: true, ShortDelays: true, Crash: true, Partitions: true,
		Rounds: 2, RoundTime: 3 * time.Second, ListPage: 2, Txns: true})
}
