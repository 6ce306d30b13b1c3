// A durio client for TypeScript, generated from rpc/kv/v1/kv.proto with
// protobuf-ts and carried over Twirp (protobuf or JSON).
export * from "./gen/kv/v1/kv";
export { KVServiceClient } from "./gen/kv/v1/kv.client";
export type { IKVServiceClient } from "./gen/kv/v1/kv.client";
export { RpcError } from "@protobuf-ts/runtime-rpc";
export { DurioClient, MAX_PENDING, connect, isRetryable, ConditionFailed, ifAbsent, ifModRevision, ifVersion, ifValue } from "./client";
export type { ClientOptions, GetInput, WriteInput, DeleteInput, ListInput, WatchInput, TxnInput, TxnCondition, TxnOp, TxnResult } from "./client";
