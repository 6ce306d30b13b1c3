from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
READ_CONSISTENCY_LINEARIZABLE: ReadConsistency
READ_CONSISTENCY_STALE: ReadConsistency
READ_CONSISTENCY_UNSPECIFIED: ReadConsistency
RESULT_CODE_INVALID: ResultCode
RESULT_CODE_KILLED: ResultCode
RESULT_CODE_NOT_LEADER: ResultCode
RESULT_CODE_NO_SESSION: ResultCode
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

class DeleteRequest(_message.Message):
    __slots__ = ["key", "write"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    key: str
    write: WriteHeader
    def __init__(self, key: _Optional[str] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ["existed", "header"]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    header: ResponseHeader
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., existed: bool = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ["consistency", "key"]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    consistency: ReadConsistency
    key: str
    def __init__(self, key: _Optional[str] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ["header", "key", "value"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    key: str
    value: str
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

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
    __slots__ = ["key", "value", "write"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    write: WriteHeader
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., write: _Optional[_Union[WriteHeader, _Mapping]] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ["header"]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class ResponseHeader(_message.Message):
    __slots__ = ["leader_id", "replica_id", "term"]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    replica_id: int
    term: int
    def __init__(self, replica_id: _Optional[int] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ["applied_index", "commit_index", "error", "last_log_index", "leader_id", "leader_known", "leader_url", "log_size_bytes", "replica_id", "role", "sessions", "snapshot_index", "term"]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_KNOWN_FIELD_NUMBER: _ClassVar[int]
    LEADER_URL_FIELD_NUMBER: _ClassVar[int]
    LOG_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    commit_index: int
    error: str
    last_log_index: int
    leader_id: int
    leader_known: bool
    leader_url: str
    log_size_bytes: int
    replica_id: int
    role: Role
    sessions: int
    snapshot_index: int
    term: int
    def __init__(self, replica_id: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_known: bool = ..., leader_url: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_log_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., log_size_bytes: _Optional[int] = ..., error: _Optional[str] = ..., sessions: _Optional[int] = ...) -> None: ...

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
    __slots__ = ["append", "delete", "put"]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    append: AppendRequest
    delete: DeleteRequest
    put: PutRequest
    def __init__(self, put: _Optional[_Union[PutRequest, _Mapping]] = ..., append: _Optional[_Union[AppendRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ...) -> None: ...

class WriteResult(_message.Message):
    __slots__ = ["code", "existed", "header", "leader_id", "leader_known", "message", "proposed"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_KNOWN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    code: ResultCode
    existed: bool
    header: ResponseHeader
    leader_id: int
    leader_known: bool
    message: str
    proposed: bool
    def __init__(self, code: _Optional[_Union[ResultCode, str]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., existed: bool = ..., leader_known: bool = ..., leader_id: _Optional[int] = ..., proposed: bool = ..., message: _Optional[str] = ...) -> None: ...

class ResultCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReadConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
