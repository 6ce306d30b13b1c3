// A leader-following durio client: any number of endpoints, failover between
// them, and exactly-once write headers, over the generated Twirp client.
import type { PartialMessage } from "@protobuf-ts/runtime";
import { RpcError, UnaryCall, type RpcInterceptor, type RpcOptions } from "@protobuf-ts/runtime-rpc";
import { TwirpFetchTransport } from "@protobuf-ts/twirp-transport";
import { KVServiceClient } from "./gen/kv/v1/kv.client";
import {
  AppendRequest, ConditionKind, DeleteRequest, EventType, GetRequest, LeaseGrantRequest, LeaseRevokeRequest, ListRequest, PutRequest, TxnDelete, TxnPut, TxnRequest, WatchRequest,
  type AppendResponse, type Compare, type Condition, type DeleteResponse, type Event, type GetResponse, type KeyValue,
  type LeaseGrantResponse, type LeaseKeepAliveResponse, type LeaseRevokeResponse, type LeaseTimeToLiveResponse,
  type ListResponse, type PutResponse, type StatusResponse, type TxnResponse, type TxnWrite, type WatchResponse, type WriteHeader,
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
  /**
   * How long one attempt at one endpoint may take before the call goes on to
   * the next, in milliseconds (default 6000: just over a replica's default 5s
   * request timeout, so that its own answer arrives). A stopped or cut-off
   * replica costs this much, once: the next calls start at the next
   * endpoint. A watch's attempt gets its wait on top.
   */
  attemptTimeoutMs?: number;
  /** Pause after every endpoint has failed once, in milliseconds (default 50). */
  backoffMs?: number;
  /**
   * A bearer token for a cluster that authenticates its clients
   * (`durio serve --client-auth-file`): every request carries
   * `Authorization: Bearer <token>`. Visible ASCII only (no spaces or control
   * characters); the constructor throws otherwise. A cluster that refuses it
   * answers `unauthenticated` (unknown token) or `permission_denied` (its role
   * is too low), which no call retries. No error the client throws holds the
   * token, even if an answer echoed it.
   */
  token?: string;
}

/** A get request: only `key` is required. */
export type GetInput = PartialMessage<GetRequest> & { key: string };
/** A put or append request: `write` is filled in by the client if absent. */
export type WriteInput = PartialMessage<PutRequest> & { key: string; value: string };
/** A delete request. */
export type DeleteInput = PartialMessage<DeleteRequest> & { key: string };
/** A list request: every field optional (an empty prefix lists every key). */
export type ListInput = PartialMessage<ListRequest>;
/** A watch request: `key` (or a prefix with `prefix: true`) and `afterRevision`. */
export type WatchInput = PartialMessage<WatchRequest> & { key: string };
/** One condition of a txn: `condition` ({@link ifAbsent}, {@link ifModRevision}, ...) must hold for `key`. */
export type TxnCondition = PartialMessage<Compare> & { key: string; condition: PartialMessage<Condition> };
/**
 * One write of a txn: a put (`lease` as in {@link DurioClient.put}: none
 * detaches the key from its lease) or a delete (a missing key is no error).
 */
export type TxnOp = { put: { key: string; value: string; lease?: string } } | { delete: { key: string } };
/** A txn: `writes` (at least one) apply if every one of `conditions` holds; `write` is filled in by the client if absent. */
export interface TxnInput {
  conditions?: readonly TxnCondition[];
  writes: readonly TxnOp[];
  write?: PartialMessage<WriteHeader>;
}
/**
 * A txn's answer: `succeeded`, and if not, `failed` (the indexes in
 * `conditions` of those that did not hold) and `current` (every compared key
 * that existed, once each, in the order of conditions). `revision` is
 * `header.revision`: after the last write if it succeeded, else the revision
 * the conditions were checked at (where `current` was read).
 */
export interface TxnResult extends TxnResponse {
  revision: string;
}

/** ifAbsent is the condition of a write that applies only if the key does not exist (create). */
export function ifAbsent(): PartialMessage<Condition> {
  return { kind: ConditionKind.ABSENT };
}
/** ifModRevision: the write applies only if the key exists and was last changed at `rev` (its modRevision). */
export function ifModRevision(rev: string | bigint | number): PartialMessage<Condition> {
  return { kind: ConditionKind.MOD_REVISION, modRevision: String(rev) };
}
/** ifVersion: the write applies only if the key's version is `v` ("0": absent). */
export function ifVersion(v: string | bigint | number): PartialMessage<Condition> {
  return { kind: ConditionKind.VERSION, version: String(v) };
}
/** ifValue: the write applies only if the key exists with value `v`. */
export function ifValue(v: string): PartialMessage<Condition> {
  return { kind: ConditionKind.VALUE, value: v };
}

/**
 * ConditionFailed is what a conditional put or delete whose condition did not
 * hold rejects with (nothing was written): the key's current state (`current`,
 * undefined if absent) and the store revision. The underlying `RpcError` is
 * `cause`; its code is `failed_precondition`.
 */
export class ConditionFailed extends Error {
  constructor(readonly current: KeyValue | undefined, readonly revision: string, readonly cause: RpcError) {
    super(`durio: condition failed at revision ${revision}` + (current ? `: the key is at revision ${current.modRevision}` : ": the key is absent"));
    this.name = "ConditionFailed";
  }
}

/** conditionFailed turns the cluster's `failed_precondition`/`condition_failed` answer into a {@link ConditionFailed}. */
function conditionFailed(e: unknown, key: string): unknown {
  if (!(e instanceof RpcError) || e.code !== "failed_precondition" || e.meta["reason"] !== "condition_failed") return e;
  const m = (k: string) => String(e.meta[k] ?? "0");
  const current = e.meta["exists"] === "true"
    ? { key, value: String(e.meta["value"] ?? ""), createRevision: m("create_revision"), modRevision: m("mod_revision"), version: m("version"), lease: m("lease") }
    : undefined;
  return new ConditionFailed(current, m("revision"), e);
}

/** txnWrite is the message of one write of a txn; it throws unless `w` is exactly one of a put and a delete. */
function txnWrite(w: TxnOp): PartialMessage<TxnWrite> {
  const put = "put" in w ? w.put : undefined;
  const del = "delete" in w ? w.delete : undefined;
  if ((put === undefined) === (del === undefined)) throw new TypeError("durio: a txn write is { put: {...} } or { delete: {...} }, one of them");
  return { op: put ? { oneofKind: "put", put: TxnPut.create(put) } : { oneofKind: "delete", delete: TxnDelete.create(del) } };
}

/**
 * isRetryable reports whether another endpoint, or the same one later, may
 * succeed where a call failed: no answer at all (connection refused, reset,
 * DNS), `unavailable` (no leader reachable; nothing applied) and
 * `deadline_exceeded` (outcome unknown; a write is retried with the same
 * header, so it is applied at most once).
 */
export function isRetryable(e: unknown): boolean {
  if (!(e instanceof RpcError)) return false;
  // too_many_watchers: this replica is full of waiting watches; another may have room.
  return e.code === "unavailable" || e.code === "deadline_exceeded" || e.code === "UNKNOWN" || e.code === "unknown" ||
    (e.code === "resource_exhausted" && e.meta["reason"] === "too_many_watchers");
}

/** A key as a watch stream's JSON carries it. */
interface StreamKV { key?: string; value?: string; create_revision?: number; mod_revision?: number; version?: number; lease?: number }

const streamKeyValue = (kv: StreamKV): KeyValue => ({
  key: kv.key ?? "", value: kv.value ?? "", createRevision: String(kv.create_revision ?? 0),
  modRevision: String(kv.mod_revision ?? 0), version: String(kv.version ?? 0), lease: String(kv.lease ?? 0),
});

/** streamEvent turns a watch stream's data (`{"type","kv","prev_kv"}`) into an {@link Event}. */
function streamEvent(d: { type?: string; kv?: StreamKV; prev_kv?: StreamKV }): Event {
  return {
    type: d.type === "delete" ? EventType.DELETE : EventType.PUT,
    kv: streamKeyValue(d.kv ?? {}),
    prevKv: d.prev_kv ? streamKeyValue(d.prev_kv) : undefined,
  };
}

/**
 * checkToken returns `token` if an Authorization header can carry it as is,
 * and throws, without saying what the token is, if not: fetch would trim
 * its spaces, or throw at every request with the header in the message.
 */
function checkToken(token: unknown): string {
  if (typeof token !== "string") throw new TypeError("durio: the token must be a string");
  if (token === "") throw new Error("durio: the token is empty");
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new Error("durio: the token may hold only visible ASCII characters (no space, tab, CR, LF or other control or non-ASCII character)");
  }
  return token;
}

/**
 * blankToken returns e, or a copy of it with `token` blanked out of its
 * message and meta should a replica, or a proxy in front of one, have
 * echoed it.
 */
function blankToken(e: unknown, token: string): unknown {
  if (!(e instanceof RpcError) || token === "") return e;
  const blank = (s: unknown) => String(s).replaceAll(token, "<token>");
  const meta = Object.fromEntries(Object.entries(e.meta).map(([k, v]) => [blank(k), Array.isArray(v) ? v.map(blank) : blank(v)]));
  if (!e.message.includes(token) && JSON.stringify(meta) === JSON.stringify(e.meta)) return e;
  const copy = new RpcError(blank(e.message), e.code, meta);
  copy.methodName = e.methodName;
  copy.serviceName = e.serviceName;
  return copy;
}

/**
 * isAuthRefusal reports the cluster's refusal of the client's token
 * (`unauthenticated`: missing or unknown) or of what its role allows
 * (`permission_denied`): every endpoint would answer the same, so nothing
 * retries it.
 */
function isAuthRefusal(e: unknown): boolean {
  return e instanceof RpcError && (e.code === "unauthenticated" || e.code === "permission_denied");
}

/** The Twirp code of a watch stream's refusal by its HTTP status, whatever its body says. */
const streamRefusals: Record<number, string> = { 400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 410: "out_of_range" };

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
 * MAX_PENDING is the most writes of one session at or above its ack (running,
 * or finished after one still running) that a replica keeps results for; it
 * refuses more (`too_many_pending`). The client opens another session
 * instead, as the Go client does.
 */
export const MAX_PENDING = 256;

/** Session is one exactly-once session: its id, last sequence number and running writes. */
class Session {
  lastSeq = 0n;
  readonly open = new Set<bigint>();
  constructor(readonly id: string) {}

  /** ack is the lowest sequence number still running (every one below it has finished), or the next one. */
  ack(): bigint {
    let ack = this.lastSeq + 1n;
    for (const s of this.open) if (s < ack) ack = s;
    return ack;
  }

  /** hasRoom reports whether the replicas keep the result of one more write. */
  hasRoom(): boolean {
    return this.lastSeq + 1n - this.ack() < BigInt(MAX_PENDING);
  }

  /** begin takes the next sequence number, or undefined if the session has no room. */
  begin(): bigint | undefined {
    if (!this.hasRoom()) return undefined;
    this.open.add(++this.lastSeq);
    return this.lastSeq;
  }
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
 * With a `token` every request carries it; a refusal (`unauthenticated`:
 * missing or unknown token, `permission_denied`: its role is too low) fails
 * the call, follow or stream at once, at no other endpoint.
 */
export class DurioClient {
  readonly endpoints: readonly string[];
  private readonly kv: KVServiceClient[];
  /**
   * The token ("" without one) and the headers every request carries
   * besides its own (the token's). They are only here and in the Twirp
   * interceptor's closure (not in the transports' options), so that logging
   * the client (util.inspect) shows no token.
   */
  readonly #token: string;
  readonly #auth: Readonly<Record<string, string>>;
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly backoffMs: number;
  private cur = 0;
  /** The session new writes take their sequence numbers in (none before the first write). */
  private current: Session | undefined;
  private opening: Promise<Session> | undefined;

  constructor(endpoints: string | readonly string[], opts: ClientOptions = {}) {
    const list = (typeof endpoints === "string" ? endpoints.split(",") : [...endpoints]).map((e) => e.trim()).filter(Boolean);
    if (list.length === 0) throw new Error("durio: no endpoints");
    this.endpoints = list.map((e) => (e.includes("://") ? e : "http://" + e).replace(/\/+$/, ""));
    const token = opts.token === undefined ? "" : checkToken(opts.token);
    const auth: Record<string, string> = token === "" ? {} : { authorization: `Bearer ${token}` };
    this.#token = token;
    this.#auth = auth;
    // A Twirp call carries the token, and its error says nothing of it.
    const withToken: RpcInterceptor = {
      interceptUnary: (next, method, input, o) => {
        const c = next(method, input, { ...o, meta: { ...o.meta, ...auth } });
        const response = c.response.catch((e: unknown) => { throw blankToken(e, token); });
        return new UnaryCall(c.method, c.requestHeaders, c.request, c.headers, response, c.status, c.trailers);
      },
    };
    this.kv = this.endpoints.map((e) => new KVServiceClient(new TwirpFetchTransport({ baseUrl: e + "/twirp", sendJson: opts.json ?? false, interceptors: [withToken] })));
    this.timeoutMs = opts.timeoutMs ?? 12000;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 6000;
    this.backoffMs = opts.backoffMs ?? 50;
  }

  /** get returns a key's value (linearizable unless `consistency` says stale); `not_found` if missing. */
  async get(req: GetInput): Promise<GetResponse> {
    const msg = GetRequest.create(req);
    return this.call((kv, o) => kv.get(msg, o).response);
  }

  /**
   * put sets a key; `header.revision` of the answer is its new modRevision.
   * With `condition` (see {@link ifModRevision} and the others) it is a
   * compare-and-swap that rejects with {@link ConditionFailed} if the
   * condition does not hold; with `lease` the key ends with the lease.
   */
  async put(req: WriteInput): Promise<PutResponse> {
    return this.write(req.write, (write, track) => {
      const msg = PutRequest.create({ ...req, write });
      return this.call((kv, o) => kv.put(msg, o).response, track);
    }).catch((e) => { throw conditionFailed(e, req.key); });
  }

  /** append appends to a key's value. */
  async append(req: WriteInput): Promise<AppendResponse> {
    return this.write(req.write, (write, track) => {
      const msg = AppendRequest.create({ ...req, write });
      return this.call((kv, o) => kv.append(msg, o).response, track);
    });
  }

  /** delete removes a key; `existed` says whether it was there. A `condition` works as in {@link put}. */
  async delete(req: DeleteInput): Promise<DeleteResponse> {
    return this.write(req.write, (write, track) => {
      const msg = DeleteRequest.create({ ...req, write });
      return this.call((kv, o) => kv.delete(msg, o).response, track);
    }).catch((e) => { throw conditionFailed(e, req.key); });
  }

  /**
   * txn writes several keys atomically if every condition holds when it is
   * applied: all of `writes`, in order, or none. A condition that does not
   * hold is an answer, not an error: `succeeded` is false, with `failed` and
   * `current` (see {@link TxnResult}). Without conditions the writes always
   * apply. Like {@link put} it is applied exactly once under the client's
   * session header (or `write`), retried across endpoints with the same
   * header. The cluster refuses with `invalid_argument` a txn with no write,
   * more than 128 conditions or writes, an empty key, a key written twice or
   * a condition without a kind; a put naming a lease that does not exist
   * fails it whole (meta reason `lease_not_found`), applying nothing.
   */
  async txn(req: TxnInput): Promise<TxnResult> {
    const conditions = [...(req.conditions ?? [])];
    const writes = (req.writes ?? []).map(txnWrite);
    const resp = await this.write(req.write, (write, track) => {
      const msg = TxnRequest.create({ conditions, writes, write });
      return this.call((kv, o) => kv.txn(msg, o).response, track);
    });
    return { ...resp, revision: resp.header?.revision ?? "0" };
  }

  /**
   * list returns one page of the keys under `prefix`, in byte order. For the
   * next page pass `after` = the last key and `revision` = the page's
   * `revision`, so every page shows the store at one revision.
   */
  async list(req: ListInput = {}): Promise<ListResponse> {
    const msg = ListRequest.create(req);
    return this.call((kv, o) => kv.list(msg, o).response);
  }

  /** listAll yields every key under `prefix`, page after page at one revision. */
  async *listAll(prefix = "", opts: { keysOnly?: boolean; pageSize?: number } = {}): AsyncGenerator<KeyValue> {
    let after = "";
    let revision = "0";
    for (;;) {
      const page = await this.list({ prefix, after, revision, keysOnly: opts.keysOnly ?? false, limit: opts.pageSize ?? 0 });
      yield* page.kvs;
      if (!page.more || page.kvs.length === 0) return;
      after = page.kvs[page.kvs.length - 1].key;
      revision = page.revision;
    }
  }

  /** revision is the store revision a linearizable read sees now: where {@link follow} starts by default. */
  async revision(): Promise<string> {
    const page = await this.list({ limit: 1, keysOnly: true });
    return page.revision;
  }

  /**
   * watch is one long poll: it answers as soon as the key (or, with `prefix`,
   * any key under it) changed after `afterRevision` (every such event), or
   * with no events after `waitMs`, or with `compacted`. Any replica answers;
   * a failed attempt is retried elsewhere with the same revision.
   */
  async watch(req: WatchInput): Promise<WatchResponse> {
    const msg = WatchRequest.create(req);
    return this.call((kv, o) => kv.watch(msg, o).response, undefined, Number(msg.waitMs) + this.timeoutMs,
      Number(msg.waitMs) + this.attemptTimeoutMs);
  }

  /**
   * follow yields every change of `key` (or of every key under it, with
   * `prefix`) after `afterRevision` (default: now), in revision order, across
   * replica failures and leader changes, none lost and none twice, until
   * `signal` aborts (then it returns). It throws an `out_of_range` RpcError if
   * the cluster no longer keeps the history after the revision it resumes from.
   */
  async *follow(key: string, opts: { prefix?: boolean; afterRevision?: string; waitMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<Event> {
    let after = opts.afterRevision ?? (await this.revision());
    const waitMs = opts.waitMs ?? 30000;
    while (!opts.signal?.aborted) {
      let resp: WatchResponse;
      try {
        resp = await this.watch({ key, prefix: opts.prefix ?? false, afterRevision: after, waitMs: String(waitMs) });
      } catch (e) {
        if (opts.signal?.aborted) return;
        if (!isRetryable(e)) throw e;
        await new Promise((r) => setTimeout(r, this.backoffMs));
        continue;
      }
      if (resp.compacted) {
        throw new RpcError(`durio: events after revision ${after} were compacted (oldest kept: ${resp.compactRevision})`, "out_of_range",
          { reason: "compacted", compact_revision: resp.compactRevision });
      }
      for (const ev of resp.events) {
        if (opts.signal?.aborted) return;
        yield ev;
      }
      if (BigInt(resp.nextAfterRevision) > BigInt(after)) after = resp.nextAfterRevision;
    }
  }

  /**
   * followStream is {@link follow} over a replica's watch stream (server-sent
   * events on `GET /kvstore/watch/...`): one long-lived request per replica
   * instead of one long poll per batch of changes, which costs the replicas
   * about half the CPU per change. Same contract: every change after
   * `afterRevision` (default: now), in order, none lost and none twice, across
   * replica failures; it returns when `signal` aborts and throws an
   * `out_of_range` RpcError when the history it needs is gone. A stream that
   * sends nothing for `idleMs` (default 40000; replicas send a heartbeat at
   * least every 15 s) is left for the next replica. It uses the REST route
   * (JSON), whatever the client's encoding. A key that is exactly "." or ".."
   * cannot be a URL path segment (fetch turns it into a path step), so it is
   * followed with {@link follow} instead, and so is everything after a
   * replica from before watch streams answers with a long poll. A refusal
   * every replica would repeat (a 4xx other than 408 and 429, such as 401
   * `unauthenticated` or 403 `permission_denied`) throws an RpcError.
   */
  async *followStream(key: string, opts: { prefix?: boolean; afterRevision?: string; idleMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<Event> {
    if (key === "." || key === "..") {
      yield* this.follow(key, { prefix: opts.prefix, afterRevision: opts.afterRevision, signal: opts.signal });
      return;
    }
    let after = BigInt(opts.afterRevision ?? (await this.revision()));
    const idleMs = opts.idleMs ?? 40000;
    const maxMessage = 64 << 20; // characters of one message, or of a line not yet ended
    let failed = 0;
    for (let i = this.cur; !opts.signal?.aborted; i++) {
      const base = this.endpoints[i % this.endpoints.length];
      const stream = new AbortController();
      const stop = () => stream.abort();
      opts.signal?.addEventListener("abort", stop);
      let idle = setTimeout(stop, idleMs);
      let progressed = false, legacy = false;
      try {
        // stream=true: a proxy may drop Accept. wait: the longest silence
        // wanted, so that a replica from before streams answers its long
        // poll well before idleMs.
        const wait = Math.max(1, Math.floor(Math.min(10000, idleMs / 2)));
        const url = `${base}/kvstore/watch/${encodeURIComponent(key)}?index=${after}${opts.prefix ? "&prefix=true" : ""}&stream=true&wait=${wait}ms`;
        const resp = await fetch(url, { headers: { ...this.#auth, Accept: "text/event-stream" }, signal: stream.signal });
        if (resp.status >= 400 && resp.status < 500 && resp.status !== 408 && resp.status !== 429) {
          const body = await resp.json().catch(() => ({})) as { code?: string; msg?: string; meta?: Record<string, string> };
          const code = streamRefusals[resp.status] ?? body.code ?? "unknown";
          throw blankToken(new RpcError(body.msg ?? `durio: watch stream ${resp.status}`, code, body.meta ?? {}), this.#token);
        }
        // A replica from before watch streams answers with a long poll.
        legacy = resp.ok && (resp.headers.get("content-type") ?? "").startsWith("application/json");
        if (resp.ok && resp.body && (resp.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
          const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          let pending = "", id: string | undefined, event = "", data = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            clearTimeout(idle);
            idle = setTimeout(stop, idleMs);
            pending += value;
            if (pending.length > maxMessage) throw new Error("durio: a watch stream line is too long");
            let pos = 0, nl: number;
            for (; (nl = pending.indexOf("\n", pos)) >= 0; pos = nl + 1) {
              const line = pending.slice(pos, nl).replace(/\r$/, "");
              if (line !== "") {
                const colon = line.indexOf(":");
                const field = colon < 0 ? line : line.slice(0, colon);
                const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
                if (field === "id") id = val;
                else if (field === "event") event = val;
                else if (field === "data") data = data === "" ? val : data + "\n" + val;
                if (data.length > maxMessage) throw new Error("durio: a watch stream message is too long");
                continue;
              }
              // A blank line ends a message.
              if (event === "compacted") {
                const body = JSON.parse(data || "{}") as { msg?: string; meta?: Record<string, string> };
                throw new RpcError(body.msg ?? `durio: events after revision ${after} were compacted`, "out_of_range", body.meta ?? { reason: "compacted" });
              }
              if (id !== undefined && /^[0-9]+$/.test(id)) {
                const rev = BigInt(id);
                if (data === "") {
                  // The stream's start, or a heartbeat: nothing matched up to rev.
                  if (rev > after) { after = rev; progressed = true; }
                } else if (rev > after) {
                  const ev = streamEvent(JSON.parse(data));
                  progressed = true;
                  if (opts.signal?.aborted) return;
                  clearTimeout(idle); // the idle clock measures the replica's silence, not the consumer's
                  yield ev;
                  idle = setTimeout(stop, idleMs);
                  after = rev;
                }
              }
              id = undefined; event = ""; data = "";
            }
            pending = pending.slice(pos);
          }
        }
      } catch (e) {
        if (opts.signal?.aborted) return;
        if (e instanceof RpcError) throw e;
        // No answer, a broken or silent stream, a malformed message: next replica.
      } finally {
        clearTimeout(idle);
        opts.signal?.removeEventListener("abort", stop);
        stream.abort();
      }
      if (legacy) {
        // Go on with long polls from where the stream left off.
        yield* this.follow(key, { prefix: opts.prefix, afterRevision: String(after), signal: opts.signal });
        return;
      }
      if (progressed) failed = 0;
      else if (++failed >= this.endpoints.length) {
        // Every replica failed in turn: pause (until aborted) before the next round.
        failed = 0;
        await new Promise<void>((r) => {
          const t = setTimeout(done, 1000);
          function done() { clearTimeout(t); opts.signal?.removeEventListener("abort", done); r(); }
          opts.signal?.addEventListener("abort", done);
        });
      }
    }
  }

  /** leaseGrant creates a lease of `ttlMs` (at least 1000); keys put with its id end with it. */
  async leaseGrant(ttlMs: number): Promise<LeaseGrantResponse> {
    return this.write(undefined, (write, track) =>
      this.call((kv, o) => kv.leaseGrant(LeaseGrantRequest.create({ ttlMs: String(ttlMs), write }), o).response, track));
  }

  /** leaseKeepAlive restarts the lease's TTL; rejects with `failed_precondition` (reason `lease_not_found`) if it ended. */
  async leaseKeepAlive(id: string, timeoutMs = this.timeoutMs): Promise<LeaseKeepAliveResponse> {
    return this.call((kv, o) => kv.leaseKeepAlive({ id }, o).response, undefined, timeoutMs, Math.min(timeoutMs, this.attemptTimeoutMs));
  }

  /** leaseRevoke ends the lease now and deletes its keys. */
  async leaseRevoke(id: string): Promise<LeaseRevokeResponse> {
    return this.write(undefined, (write, track) =>
      this.call((kv, o) => kv.leaseRevoke(LeaseRevokeRequest.create({ id, write }), o).response, track));
  }

  /** leaseTimeToLive describes the lease (with its keys if `keys`). */
  async leaseTimeToLive(id: string, keys = false): Promise<LeaseTimeToLiveResponse> {
    return this.call((kv, o) => kv.leaseTimeToLive({ id, keys }, o).response);
  }

  /**
   * keepAlive refreshes the lease every third of its TTL until `signal`
   * aborts (then it resolves), or the lease is lost or the token refused
   * (then it rejects).
   */
  async keepAlive(id: string, ttlMs: number, signal: AbortSignal): Promise<void> {
    let lastOk = Date.now();
    const every = Math.max(ttlMs / 3, 100);
    while (!signal.aborted) {
      await new Promise<void>((r) => {
        // The listener goes with the pause: one per pause would pile up on
        // the signal for as long as the lease is kept.
        const done = () => { clearTimeout(t); signal.removeEventListener("abort", done); r(); };
        const t = setTimeout(done, every);
        signal.addEventListener("abort", done, { once: true });
      });
      if (signal.aborted) return;
      try {
        // A refresh takes at most the pause: one stuck at a stopped replica
        // must leave time for the next, elsewhere, within the TTL.
        await this.leaseKeepAlive(id, every);
        lastOk = Date.now();
      } catch (e) {
        if (isAuthRefusal(e) || (e instanceof RpcError && e.meta["reason"] === "lease_not_found")) throw e;
        if (Date.now() - lastOk >= ttlMs) throw e;
      }
    }
  }

  /** status asks one endpoint (by position, default the current one) for its status, without failover. */
  async status(endpoint = this.cur): Promise<StatusResponse> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    return this.kv[endpoint].status({}, { abort: signal }).response;
  }

  /** clientId is the id of the session new writes go in ("" until the first write opens one). */
  get clientId(): string {
    return this.current?.id ?? "";
  }

  /**
   * session returns the session for a new write: the current one unless it
   * is `avoid` (the cluster forgot it, or it has no room) or has no room,
   * else a new one, opened once however many writes wait for it. A session
   * that is replaced keeps its open writes.
   */
  private session(avoid?: Session): Promise<Session> {
    const cur = this.current;
    if (cur !== undefined && cur !== avoid && cur.hasRoom()) return Promise.resolve(cur);
    this.opening ??= this.call((kv, o) => kv.openSession({}, o).response)
      .then((r) => (this.current = new Session(r.clientId)))
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  /** write runs a write with the caller's header, or one of the client's session it then closes. */
  private async write<T>(given: PartialMessage<WriteHeader> | undefined, run: (w: PartialMessage<WriteHeader>, track: Attempts) => Promise<T>): Promise<T> {
    if (given && given.clientId && given.clientId !== "0") return run(given, { maybeApplied: false });
    let avoid: Session | undefined;
    for (let lost = 0; ; ) {
      const s = await this.session(avoid);
      const seq = s.begin();
      if (seq === undefined) {
        avoid = s; // other writes took its last room while this one waited
        continue;
      }
      const attempts: Attempts = { maybeApplied: false };
      try {
        return await run({ clientId: s.id, sequence: seq.toString(), ack: s.ack().toString() }, attempts);
      } catch (e) {
        if (!isNoSession(e) || lost >= 2) throw e;
        lost++;
        if (attempts.maybeApplied) {
          throw new RpcError("durio: the write's session expired while its outcome was unknown; it was applied at most once", "deadline_exceeded");
        }
        avoid = s; // never applied under the old session: renumber it in a new one
      } finally {
        s.open.delete(seq);
      }
    }
  }

  private async call<T>(op: (kv: KVServiceClient, o: RpcOptions) => Promise<T>, track?: Attempts, timeoutMs = this.timeoutMs,
    attemptMs = this.attemptTimeoutMs): Promise<T> {
    const signal = AbortSignal.timeout(timeoutMs);
    const n = this.kv.length;
    let last: unknown;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0 && attempt % n === 0) {
        await new Promise((r) => setTimeout(r, this.backoffMs));
      }
      if (signal.aborted) {
        if (last instanceof RpcError && last.code !== "UNKNOWN" && last.code !== "cancelled") throw last; // the cluster's answer
        throw new RpcError(`durio: no answer within ${timeoutMs} ms (last error: ${last})`, "deadline_exceeded");
      }
      const i = this.cur;
      const attemptSignal = AbortSignal.any([signal, AbortSignal.timeout(attemptMs)]);
      try {
        return await op(this.kv[i], { abort: attemptSignal });
      } catch (e) {
        if (attemptSignal.aborted) {
          if (track) track.maybeApplied = true; // cut off mid-call: it may have arrived
          last ??= e; // keep an earlier answer from the cluster over our own cut-off
          // The endpoint did not answer in time (stopped, cut off): this
          // call's next attempt, and the next calls, start at the next one.
          if (this.cur === i) this.cur = (i + 1) % n;
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
