from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

CONDITION_KIND_ABSENT: ConditionKind
CONDITION_KIND_MOD_REVISION: ConditionKind
CONDITION_KIND_UNSPECIFIED: ConditionKind
CONDITION_KIND_VALUE: ConditionKind
CONDITION_KIND_VERSION: ConditionKind
DESCRIPTOR: _descriptor.FileDescriptor
EVENT_TYPE_DELETE: EventType
EVENT_TYPE_PUT: EventType
EVENT_TYPE_UNSPECIFIED: EventType
READ_CONSISTENCY_LINEARIZABLE: ReadConsistency
READ_CONSISTENCY_STALE: ReadConsistency
READ_CONSISTENCY_UNSPECIFIED: ReadConsistency
RESULT_CODE_CONDITION_FAILED: ResultCode
RESULT_CODE_INVALID: ResultCode
RESULT_CODE_KILLED: ResultCode
RESULT_CODE_LEASE_NOT_FOUND: ResultCode
RESULT_CODE_NOT_LEADER: ResultCode
RESULT_CODE_NO_SESSION: ResultCode
RESULT_CODE_NO_SPACE: ResultCode
RESULT_CODE_OK: ResultCode
RESULT_CODE_OTHER: ResultCode
RESULT_CODE_STALE: ResultCode
RESULT_CODE_TIMEOUT: ResultCode
RESULT_CODE_TOO_LARGE: ResultCode
RESULT_CODE_TOO_MANY_PENDING: ResultCode
RESULT_CODE_UNSPECIFIED: ResultCode
ROLE_CANDIDATE: Role
ROLE_FOLLOWER: Role
ROLE_LEADER: Role
ROLE_PRE_CANDIDATE: Role
ROLE_UNSPECIFIED: Role

class AppendRequest(_message.Message):
    __slots__ = ["key", "value", "write"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    write: WriteHeader
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ["header"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ["condition", "key"]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    key: str
    def __init__(self, key: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ["kind", "mod_revision", "value", "version"]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: ConditionKind
    mod_revision: int
    value: str
    version: int
    def __init__(self, kind: _Optional[_Union[ConditionKind, str]] = ..., mod_revision: _Optional[int] = ..., version: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ["condition", "key", "write"]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    key: str
    write: WriteHeader
    def __init__(self, key: _Optional[str] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ["existed", "header"]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    header: ResponseHeader
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., existed: bool = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ["kv", "prev_kv", "type"]
    KV_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    kv: KeyValue
    prev_kv: KeyValue
    type: EventType
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., kv: _Optional[_Union[KeyValue, _Mapping]] = ..., prev_kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ["consistency", "key"]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    consistency: ReadConsistency
    key: str
    def __init__(self, key: _Optional[str] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ["create_revision", "header", "key", "lease", "mod_revision", "value", "version"]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    create_revision: int
    header: ResponseHeader
    key: str
    lease: int
    mod_revision: int
    value: str
    version: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., version: _Optional[int] = ..., lease: _Optional[int] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ["create_revision", "key", "lease", "mod_revision", "value", "version"]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    create_revision: int
    key: str
    lease: int
    mod_revision: int
    value: str
    version: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., version: _Optional[int] = ..., lease: _Optional[int] = ...) -> None: ...

class LeaseGrantRequest(_message.Message):
    __slots__ = ["ttl_ms", "write"]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    write: WriteHeader
    def __init__(self, ttl_ms: _Optional[int] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ...) -> None: ...

class LeaseGrantResponse(_message.Message):
    __slots__ = ["header", "id", "ttl_ms"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    id: int
    ttl_ms: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., id: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class LeaseKeepAliveRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class LeaseKeepAliveResponse(_message.Message):
    __slots__ = ["header", "id", "ttl_ms"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    id: int
    ttl_ms: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., id: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class LeaseRevokeRequest(_message.Message):
    __slots__ = ["id", "write"]
    ID_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    id: int
    write: WriteHeader
    def __init__(self, id: _Optional[int] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ...) -> None: ...

class LeaseRevokeResponse(_message.Message):
    __slots__ = ["existed", "header"]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    header: ResponseHeader
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., existed: bool = ...) -> None: ...

class LeaseTimeToLiveRequest(_message.Message):
    __slots__ = ["id", "keys"]
    ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    id: int
    keys: bool
    def __init__(self, id: _Optional[int] = ..., keys: bool = ...) -> None: ...

class LeaseTimeToLiveResponse(_message.Message):
    __slots__ = ["header", "id", "keys", "more_keys", "remaining_ms", "ttl_ms"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MORE_KEYS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    id: int
    keys: _containers.RepeatedScalarFieldContainer[str]
    more_keys: bool
    remaining_ms: int
    ttl_ms: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., id: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., remaining_ms: _Optional[int] = ..., keys: _Optional[_Iterable[str]] = ..., more_keys: bool = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ["after", "consistency", "keys_only", "limit", "prefix", "revision"]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    after: str
    consistency: ReadConsistency
    keys_only: bool
    limit: int
    prefix: str
    revision: int
    def __init__(self, prefix: _Optional[str] = ..., after: _Optional[str] = ..., limit: _Optional[int] = ..., keys_only: bool = ..., revision: _Optional[int] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ["header", "kvs", "more", "revision"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    kvs: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    revision: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., kvs: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: bool = ..., revision: _Optional[int] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ["client_id", "header", "idle_timeout_seconds"]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    header: ResponseHeader
    idle_timeout_seconds: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., client_id: _Optional[int] = ..., idle_timeout_seconds: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ["condition", "key", "lease", "value", "write"]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    key: str
    lease: int
    value: str
    write: WriteHeader
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ..., lease: _Optional[int] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ["header"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class ResponseHeader(_message.Message):
    __slots__ = ["leader_id", "replica_id", "revision", "term"]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    replica_id: int
    revision: int
    term: int
    def __init__(self, replica_id: _Optional[int] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ["applied_index", "apply_level", "commit_index", "compact_revision", "error", "last_log_index", "leader_id", "leader_known", "leader_url", "leases", "log_size_bytes", "max_apply_level", "quota_bytes", "removed", "replica_id", "revision", "role", "sessions", "snapshot_index", "state_bytes", "term"]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_KNOWN_FIELD_NUMBER: _ClassVar[int]
    LEADER_URL_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_APPLY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    apply_level: int
    commit_index: int
    compact_revision: int
    error: str
    last_log_index: int
    leader_id: int
    leader_known: bool
    leader_url: str
    leases: int
    log_size_bytes: int
    max_apply_level: int
    quota_bytes: int
    removed: bool
    replica_id: int
    revision: int
    role: Role
    sessions: int
    snapshot_index: int
    state_bytes: int
    term: int
    def __init__(self, replica_id: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_known: bool = ..., leader_url: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_log_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., log_size_bytes: _Optional[int] = ..., error: _Optional[str] = ..., sessions: _Optional[int] = ..., revision: _Optional[int] = ..., compact_revision: _Optional[int] = ..., leases: _Optional[int] = ..., removed: bool = ..., apply_level: _Optional[int] = ..., max_apply_level: _Optional[int] = ..., state_bytes: _Optional[int] = ..., quota_bytes: _Optional[int] = ...) -> None: ...

class TxnDelete(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class TxnPut(_message.Message):
    __slots__ = ["key", "lease", "value"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    lease: int
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., lease: _Optional[int] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ["conditions", "write", "writes"]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Compare]
    write: WriteHeader
    writes: _containers.RepeatedCompositeFieldContainer[TxnWrite]
    def __init__(self, conditions: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[TxnWrite, _Mapping]]] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ...) -> None: ...

class TxnResponse(_message.Message):
    __slots__ = ["current", "failed", "header", "succeeded"]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    current: _containers.RepeatedCompositeFieldContainer[KeyValue]
    failed: _containers.RepeatedScalarFieldContainer[int]
    header: ResponseHeader
    succeeded: bool
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., succeeded: bool = ..., failed: _Optional[_Iterable[int]] = ..., current: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ...) -> None: ...

class TxnWrite(_message.Message):
    __slots__ = ["delete", "put"]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    delete: TxnDelete
    put: TxnPut
    def __init__(self, put: _Optional[_Union[TxnPut, _Mapping]] = ..., delete: _Optional[_Union[TxnDelete, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ["after_revision", "key", "limit", "prefix", "prev_kv", "wait_ms"]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    after_revision: int
    key: str
    limit: int
    prefix: bool
    prev_kv: bool
    wait_ms: int
    def __init__(self, key: _Optional[str] = ..., prefix: bool = ..., after_revision: _Optional[int] = ..., wait_ms: _Optional[int] = ..., limit: _Optional[int] = ..., prev_kv: bool = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ["compact_revision", "compacted", "events", "header", "next_after_revision"]
    COMPACTED_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    compact_revision: int
    compacted: bool
    events: _containers.RepeatedCompositeFieldContainer[Event]
    header: ResponseHeader
    next_after_revision: int
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_after_revision: _Optional[int] = ..., compacted: bool = ..., compact_revision: _Optional[int] = ...) -> None: ...

class WriteBatchRequest(_message.Message):
    __slots__ = ["ops"]
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[WriteOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[WriteOp, _Mapping]]] = ...) -> None: ...

class WriteBatchResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[WriteResult]
    def __init__(self, results: _Optional[_Iterable[_Union[WriteResult, _Mapping]]] = ...) -> None: ...

class WriteHeader(_message.Message):
    __slots__ = ["ack", "client_id", "sequence"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ack: int
    client_id: int
    sequence: int
    def __init__(self, client_id: _Optional[int] = ..., sequence: _Optional[int] = ..., ack: _Optional[int] = ...) -> None: ...

class WriteOp(_message.Message):
    __slots__ = ["append", "delete", "put", "request_id", "txn"]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    append: AppendRequest
    delete: DeleteRequest
    put: PutRequest
    request_id: str
    txn: TxnRequest
    def __init__(self, put: _Optional[_Union[PutRequest, _Mapping]] = ..., append: _Optional[_Union[AppendRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ..., txn: _Optional[_Union[TxnRequest, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class WriteResult(_message.Message):
    __slots__ = ["code", "current", "existed", "header", "leader_id", "leader_known", "message", "proposed", "revision", "txn"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_KNOWN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    code: ResultCode
    current: KeyValue
    existed: bool
    header: ResponseHeader
    leader_id: int
    leader_known: bool
    message: str
    proposed: bool
    revision: int
    txn: TxnResponse
    def __init__(self, code: _Optional[_Union[ResultCode, str]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., existed: bool = ..., leader_known: bool = ..., leader_id: _Optional[int] = ..., proposed: bool = ..., message: _Optional[str] = ..., current: _Optional[_Union[KeyValue, _Mapping]] = ..., revision: _Optional[int] = ..., txn: _Optional[_Union[TxnResponse, _Mapping]] = ...) -> None: ...

class ResultCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReadConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ConditionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
