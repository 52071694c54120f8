from google.protobuf import any_pb2 as _any_pb2
from estafeta.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExitReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXIT_REASON_UNSPECIFIED: _ClassVar[ExitReason]
    NORMAL: _ClassVar[ExitReason]
    SHUTDOWN: _ClassVar[ExitReason]
    CRASH: _ClassVar[ExitReason]
    KILLED: _ClassVar[ExitReason]
EXIT_REASON_UNSPECIFIED: ExitReason
NORMAL: ExitReason
SHUTDOWN: ExitReason
CRASH: ExitReason
KILLED: ExitReason

class ChildExited(_message.Message):
    __slots__ = ("child_id", "actor_urn", "reason", "error", "trace")
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_URN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    child_id: str
    actor_urn: str
    reason: ExitReason
    error: str
    trace: _common_pb2.TraceContext
    def __init__(self, child_id: _Optional[str] = ..., actor_urn: _Optional[str] = ..., reason: _Optional[_Union[ExitReason, str]] = ..., error: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class StartChild(_message.Message):
    __slots__ = ("args", "trace")
    ARGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    args: _any_pb2.Any
    trace: _common_pb2.TraceContext
    def __init__(self, args: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class StartChildReply(_message.Message):
    __slots__ = ("ok", "child_id", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    child_id: str
    error: str
    def __init__(self, ok: _Optional[bool] = ..., child_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class StopChild(_message.Message):
    __slots__ = ("child_id", "trace")
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    child_id: str
    trace: _common_pb2.TraceContext
    def __init__(self, child_id: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class WhichChildren(_message.Message):
    __slots__ = ("limit", "trace")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    trace: _common_pb2.TraceContext
    def __init__(self, limit: _Optional[int] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class ChildInfo(_message.Message):
    __slots__ = ("child_id", "actor_class", "alive", "restart", "restarts", "supervisor", "restarts_in_window", "last_error", "state", "actor_urn")
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_URN_FIELD_NUMBER: _ClassVar[int]
    child_id: str
    actor_class: str
    alive: bool
    restart: str
    restarts: int
    supervisor: bool
    restarts_in_window: int
    last_error: str
    state: str
    actor_urn: str
    def __init__(self, child_id: _Optional[str] = ..., actor_class: _Optional[str] = ..., alive: _Optional[bool] = ..., restart: _Optional[str] = ..., restarts: _Optional[int] = ..., supervisor: _Optional[bool] = ..., restarts_in_window: _Optional[int] = ..., last_error: _Optional[str] = ..., state: _Optional[str] = ..., actor_urn: _Optional[str] = ...) -> None: ...

class Children(_message.Message):
    __slots__ = ("children", "name", "strategy", "intensity", "period_seconds", "restarts_in_window", "total", "last_crash", "crashes")
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_CRASH_FIELD_NUMBER: _ClassVar[int]
    CRASHES_FIELD_NUMBER: _ClassVar[int]
    children: _containers.RepeatedCompositeFieldContainer[ChildInfo]
    name: str
    strategy: str
    intensity: int
    period_seconds: float
    restarts_in_window: int
    total: int
    last_crash: str
    crashes: int
    def __init__(self, children: _Optional[_Iterable[_Union[ChildInfo, _Mapping]]] = ..., name: _Optional[str] = ..., strategy: _Optional[str] = ..., intensity: _Optional[int] = ..., period_seconds: _Optional[float] = ..., restarts_in_window: _Optional[int] = ..., total: _Optional[int] = ..., last_crash: _Optional[str] = ..., crashes: _Optional[int] = ...) -> None: ...

class RestartDue(_message.Message):
    __slots__ = ("child_id", "trace")
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    child_id: str
    trace: _common_pb2.TraceContext
    def __init__(self, child_id: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...
