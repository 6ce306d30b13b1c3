// A leader-following durio client: any number of endpoints, failover between
// them, and exactly-once write headers, over the generated Twirp client.
import type { PartialMessage } from "@protobuf-ts/runtime";
import { RpcError, type RpcOptions } from "@protobuf-ts/runtime-rpc";
import { TwirpFetchTransport } from "@protobuf-ts/twirp-transport";
import { KVServiceClient } from "./gen/kv/v1/kv.client";
import {
  AppendRequest, DeleteRequest, GetRequest, PutRequest,
  type AppendResponse, type DeleteResponse, type GetResponse, type PutResponse, type StatusResponse,
  type WriteHeader,
} from "./gen/kv/v1/kv";

/** Options for {@link DurioClient} and {@link connect}. */
export interface ClientOptions {
  /** Use Twirp's JSON encoding instead of protobuf. */
  json?: boolean;
  /**
   * How long one call may take, retries included, in milliseconds (default
   * 12000: longer than a replica's default 5s request timeout, so the
   * cluster's own answer, such as `unavailable`, reaches the caller).
   */
  timeoutMs?: number;
  /** Pause after every endpoint has failed once, in milliseconds (default 50). */
  backoffMs?: number;
}

/** A get request: only `key` is required. */
export type GetInput = PartialMessage<GetRequest> & { key: string };
/** A put or append request: `write` is filled in by the client if absent. */
export type WriteInput = PartialMessage<PutRequest> & { key: string; value: string };
/** A delete request. */
export type DeleteInput = PartialMessage<DeleteRequest> & { key: string };

/**
 * isRetryable reports whether another endpoint, or the same one later, may
 * succeed where a call failed: no answer at all (connection refused, reset,
 * DNS), `unavailable` (no leader reachable; nothing applied) and
 * `deadline_exceeded` (outcome unknown; a write is retried with the same
 * header, so it is applied at most once).
 */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof RpcError)) return false;
  return e.code === "unavailable" || e.code === "deadline_exceeded" || e.code === "UNKNOWN" || e.code === "unknown";
}

function randomClientId(): string {
  const b = new Uint8Array(8);
  globalThis.crypto.getRandomValues(b);
  let id = 0n;
  for (const x of b) id = (id << 8n) | BigInt(x);
  return (id | 1n).toString(); // never 0, which means unset
}

/**
 * DurioClient talks to a durio cluster through any of its replicas' client
 * URLs. A call goes to the endpoint that last worked; on a connection error,
 * `unavailable` or `deadline_exceeded` it moves to the leader a replica names
 * (`meta.leader_id`) or the next endpoint, until it succeeds, fails for good,
 * or `timeoutMs` passes. Every write carries `{clientId, sequence, ack}`, so
 * a write retried after a lost answer is applied at most once.
 */
export class DurioClient {
  readonly endpoints: readonly string[];
  readonly clientId: string;
  private readonly kv: KVServiceClient[];
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  private cur = 0;
  private lastSeq = 0n;
  private readonly open = new Set<bigint>();

  constructor(endpoints: string | readonly string[], opts: ClientOptions = {}) {
    const list = (typeof endpoints === "string" ? endpoints.split(",") : [...endpoints]).map((e) => e.trim()).filter(Boolean);
    if (list.length === 0) throw new Error("durio: no endpoints");
    this.endpoints = list.map((e) => (e.includes("://") ? e : "http://" + e).replace(/\/+$/, ""));
    this.kv = this.endpoints.map((e) => new KVServiceClient(new TwirpFetchTransport({ baseUrl: e + "/twirp", sendJson: opts.json ?? false })));
    this.clientId = randomClientId();
    this.timeoutMs = opts.timeoutMs ?? 12000;
    this.backoffMs = opts.backoffMs ?? 50;
  }

  /** get returns a key's value (linearizable unless `consistency` says stale); `not_found` if missing. */
  async get(req: GetInput): Promise<GetResponse> {
    const msg = GetRequest.create(req);
    return this.call((kv, o) => kv.get(msg, o).response);
  }

  /** put sets a key. */
  async put(req: WriteInput): Promise<PutResponse> {
    return this.write(req.write, (write) => {
      const msg = PutRequest.create({ ...req, write });
      return this.call((kv, o) => kv.put(msg, o).response);
    });
  }

  /** append appends to a key's value. */
  async append(req: WriteInput): Promise<AppendResponse> {
    return this.write(req.write, (write) => {
      const msg = AppendRequest.create({ ...req, write });
      return this.call((kv, o) => kv.append(msg, o).response);
    });
  }

  /** delete removes a key; `existed` says whether it was there. */
  async delete(req: DeleteInput): Promise<DeleteResponse> {
    return this.write(req.write, (write) => {
      const msg = DeleteRequest.create({ ...req, write });
      return this.call((kv, o) => kv.delete(msg, o).response);
    });
  }

  /** status asks one endpoint (by position, default the current one) for its status, without failover. */
  async status(endpoint = this.cur): Promise<StatusResponse> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    return this.kv[endpoint].status({}, { abort: signal }).response;
  }

  /** write runs a write with the caller's header, or a fresh one it then closes. */
  private async write<T>(given: PartialMessage<WriteHeader> | undefined, run: (w: PartialMessage<WriteHeader>) => Promise<T>): Promise<T> {
    if (given && given.clientId && given.clientId !== "0") return run(given);
    const seq = ++this.lastSeq;
    this.open.add(seq);
    let ack = seq;
    for (const s of this.open) if (s < ack) ack = s;
    try {
      return await run({ clientId: this.clientId, sequence: seq.toString(), ack: ack.toString() });
    } finally {
      this.open.delete(seq);
    }
  }

  private async call<T>(op: (kv: KVServiceClient, o: RpcOptions) => Promise<T>): Promise<T> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const n = this.kv.length;
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && attempt % n === 0) {
        await new Promise((r) => setTimeout(r, this.backoffMs));
      }
      if (signal.aborted) {
        if (last instanceof RpcError && last.code !== "UNKNOWN" && last.code !== "cancelled") throw last; // the cluster's answer
        throw new RpcError(`durio: no answer within ${this.timeoutMs} ms (last error: ${last})`, "deadline_exceeded");
      }
      const i = this.cur;
      try {
        return await op(this.kv[i], { abort: signal });
      } catch (e) {
        if (signal.aborted) {
          last ??= e; // keep an earlier answer from the cluster over our own cut-off
          continue;
        }
        if (!isRetryable(e)) throw e;
        last = e;
        let next = (i + 1) % n;
        const hint = e instanceof RpcError ? Number(e.meta["leader_id"]) : NaN;
        if (Number.isInteger(hint) && hint >= 0 && hint < n && hint !== i) next = hint;
        this.cur = next;
      }
    }
  }
}

/**
 * connect returns a {@link DurioClient} for one or more client URLs (an
 * array, or a comma-separated string such as "http://127.0.0.1:8001,http://127.0.0.1:8002").
 */
export function connect(endpoints: string | readonly string[], opts: ClientOptions = {}): DurioClient {
  return new DurioClient(endpoints, opts);
}
