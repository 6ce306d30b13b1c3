// Package durio is the replicated key-value service: the client API (Twirp and
// REST), the Raft transport between replicas, and the durio command's parts.
package durio
