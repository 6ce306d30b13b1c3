// Package twirptransport carries raft's peer RPCs over HTTP with Twirp
// (protobuf bodies), for applications that embed the raft package and run
// their nodes in separate processes.
//
// The client side is a raft.Transport ([New]); the server side is an
// http.Handler ([NewHandler]) that hands each RPC to a local *raft.Node. Peers
// should authenticate one another, since an unauthenticated peer RPC can
// write any entry or move leadership: either with mutual TLS ([MutualTLS]
// gives both sides' tls.Config from PEM files, and https peer URLs) or with a
// shared bearer token ([Options.Token] on the client, [RequireToken] on the
// server). [LimitBody] bounds what an authenticated peer may send.
//
// By default the RPCs travel over a peer stream: one persistent connection
// per peer, upgraded from an HTTP request to [StreamPath] (so it passes the
// same authentication), that carries many calls at once as length-prefixed
// protobuf frames instead of one HTTP/1.1 exchange per RPC. Serve it with a
// [StreamServer] ([StreamServer.HandleRaft]) mounted next to NewHandler; a
// peer that does not offer it is reached over the Twirp routes, and
// [Options.DisableStream] turns it off. [CallStream] carries other services'
// calls on the same connections ([StreamPool]).
//
// See the package example for a three-node cluster on 127.0.0.1.
package twirptransport
