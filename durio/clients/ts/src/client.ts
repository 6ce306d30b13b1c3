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

/** Attempts records, across the attempts of one write, whether any may have taken effect. */
interface Attempts {
  maybeApplied: boolean;
}

/** isNoSession reports the cluster's refusal of a write whose session it does not know (expired). */
function isNoSession(e: unknown): boolean {
  return e instanceof RpcError && e.code === "failed_precondition" && e.meta["reason"] === "no_session";
}

/** maybeApplied reports whether a failed attempt at a write may have taken effect. */
function maybeApplied(e: unknown): boolean {
  if (!(e instanceof RpcError)) return true; // no answer: the request may have arrived
  return e.code === "deadline_exceeded" || e.code === "UNKNOWN" || e.code === "unknown" || e.meta["proposed"] === "true";
}

/**
 * DurioClient talks to a durio cluster through any of its replicas' client
 * URLs. A call goes to the endpoint that last worked; on a connection error,
 * `unavailable` or `deadline_exceeded` it moves to the leader a replica names
 * (`meta.leader_id`) or the next endpoint, until it succeeds, fails for good,
 * or `timeoutMs` passes. On its first write the client opens an
 * exactly-once session with the cluster (`OpenSession`); every write carries
 * `{clientId, sequence, ack}` of that session, so a write retried after a lost
 * answer is applied at most once. If the session expired, a write that
 * certainly never applied is renumbered in a new session; one whose outcome
 * was unknown fails with `deadline_exceeded` rather than risk applying twice.
 */
export class DurioClient {
  readonly endpoints: readonly string[];
  private readonly kv: KVServiceClient[];
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  private cur = 0;
  private lastSeq = 0n;
  private readonly open = new Set<bigint>();
  /** The session's client id once opened ("" before the first write). */
  private session = "";
  private opening: Promise<string> | undefined;

  constructor(endpoints: string | readonly string[], opts: ClientOptions = {}) {
    const list = (typeof endpoints === "string" ? endpoints.split(",") : [...endpoints]).map((e) => e.trim()).filter(Boolean);
    if (list.length === 0) throw new Error("durio: no endpoints");
    this.endpoints = list.map((e) => (e.includes("://") ? e : "http://" + e).replace(/\/+$/, ""));
    this.kv = this.endpoints.map((e) => new KVServiceClient(new TwirpFetchTransport({ baseUrl: e + "/twirp", sendJson: opts.json ?? false })));
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
    return this.write(req.write, (write, track) => {
      const msg = PutRequest.create({ ...req, write });
      return this.call((kv, o) => kv.put(msg, o).response, track);
    });
  }

  /** append appends to a key's value. */
  async append(req: WriteInput): Promise<AppendResponse> {
    return this.write(req.write, (write, track) => {
      const msg = AppendRequest.create({ ...req, write });
      return this.call((kv, o) => kv.append(msg, o).response, track);
    });
  }

  /** delete removes a key; `existed` says whether it was there. */
  async delete(req: DeleteInput): Promise<DeleteResponse> {
    return this.write(req.write, (write, track) => {
      const msg = DeleteRequest.create({ ...req, write });
      return this.call((kv, o) => kv.delete(msg, o).response, track);
    });
  }

  /** status asks one endpoint (by position, default the current one) for its status, without failover. */
  async status(endpoint = this.cur): Promise<StatusResponse> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    return this.kv[endpoint].status({}, { abort: signal }).response;
  }

  /** clientId is the id of the client's exactly-once session ("" until its first write opens one). */
  get clientId(): string {
    return this.session;
  }

  /** openSession opens a session (once, however many writes wait for it); expired is the id the cluster forgot. */
  private sessionId(expired = ""): Promise<string> {
    if (this.session !== "" && this.session !== expired) return Promise.resolve(this.session);
    this.opening ??= this.call((kv, o) => kv.openSession({}, o).response)
      .then((r) => {
        this.session = r.clientId;
        this.lastSeq = 0n;
        this.open.clear();
        return r.clientId;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  /** write runs a write with the caller's header, or one of the client's session it then closes. */
  private async write<T>(given: PartialMessage<WriteHeader> | undefined, run: (w: PartialMessage<WriteHeader>, track: Attempts) => Promise<T>): Promise<T> {
    if (given && given.clientId && given.clientId !== "0") return run(given, { maybeApplied: false });
    let expired = "";
    for (let lost = 0; ; lost++) {
      const session = await this.sessionId(expired);
      const seq = ++this.lastSeq;
      this.open.add(seq);
      let ack = seq;
      for (const s of this.open) if (s < ack) ack = s;
      const attempts: Attempts = { maybeApplied: false };
      try {
        return await run({ clientId: session, sequence: seq.toString(), ack: ack.toString() }, attempts);
      } catch (e) {
        if (!isNoSession(e) || lost >= 2) throw e;
        if (attempts.maybeApplied) {
          throw new RpcError("durio: the write's session expired while its outcome was unknown; it was applied at most once", "deadline_exceeded");
        }
        expired = session; // never applied under the old session: renumber it in a new one
      } finally {
        this.open.delete(seq);
      }
    }
  }

  private async call<T>(op: (kv: KVServiceClient, o: RpcOptions) => Promise<T>, track?: Attempts): Promise<T> {
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
          if (track) track.maybeApplied = true; // cut off mid-call: it may have arrived
          last ??= e; // keep an earlier answer from the cluster over our own cut-off
          continue;
        }
        if (!isRetryable(e)) throw e;
        if (track && maybeApplied(e)) track.maybeApplied = true;
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
