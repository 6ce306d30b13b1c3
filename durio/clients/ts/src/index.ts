// A durio client for TypeScript, generated from rpc/kv/v1/kv.proto with
// protobuf-ts and carried over Twirp (protobuf or JSON).
import { TwirpFetchTransport } from "@protobuf-ts/twirp-transport";
import { KVServiceClient } from "./gen/kv/v1/kv.client";

export * from "./gen/kv/v1/kv";
export { KVServiceClient } from "./gen/kv/v1/kv.client";
export type { IKVServiceClient } from "./gen/kv/v1/kv.client";

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** Use Twirp's JSON encoding instead of protobuf. */
  json?: boolean;
}

/**
 * connect returns a KVService client for one durio replica's client URL, for
 * example "http://127.0.0.1:8001". Any replica forwards to the leader.
 */
export function connect(url: string, opts: ConnectOptions = {}): KVServiceClient {
  const baseUrl = url.replace(/\/+$/, "") + "/twirp";
  return new KVServiceClient(new TwirpFetchTransport({ baseUrl, sendJson: opts.json ?? false }));
}
