// Package exepages gives back the pages of a process's own executable that
// only its start touched (Release), and the pages of its shared file
// mappings (ReleaseShared).
//
// Why: a Go binary's package inits (protobuf registries, metrics, the command
// tree, HTTP routes) and a server's start-up touch code and tables that
// serving never uses again, and they stay in the process's resident set:
// ~20 MiB of durio's 32 MiB binary in a replica under load, of which ~5 MiB
// are start-up only. A built-in persister plugin is its host's binary
// re-executed, so every init of the host runs in it too (~18 MiB resident, of
// which a badger plugin uses ~13). The pages are in the page cache, shared by every
// process running the binary, so releasing them frees no memory at once;
// it makes each process's RSS count only what it uses, and leaves the
// kernel pages that no process maps, which it can reclaim first. The same
// holds for the files a store maps and writes through (badger's tables and
// logs): their pages stay in the process's resident set after they were
// written until something unmaps them, so a persister plugin calls
// ReleaseShared from time to time.
package exepages
