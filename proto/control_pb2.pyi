from estafeta.proto import supervision_pb2 as _supervision_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ControlRequest(_message.Message):
    __slots__ = ("queue", "tree")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    queue: QueueAction
    tree: TreeQuery
    def __init__(self, queue: _Optional[_Union[QueueAction, _Mapping]] = ..., tree: _Optional[_Union[TreeQuery, _Mapping]] = ...) -> None: ...

class QueueAction(_message.Message):
    __slots__ = ("action", "queue_ids", "bounce")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[QueueAction.Action]
        FLUSH: _ClassVar[QueueAction.Action]
        HOLD: _ClassVar[QueueAction.Action]
        RELEASE: _ClassVar[QueueAction.Action]
        DELETE: _ClassVar[QueueAction.Action]
    ACTION_UNSPECIFIED: QueueAction.Action
    FLUSH: QueueAction.Action
    HOLD: QueueAction.Action
    RELEASE: QueueAction.Action
    DELETE: QueueAction.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_IDS_FIELD_NUMBER: _ClassVar[int]
    BOUNCE_FIELD_NUMBER: _ClassVar[int]
    action: QueueAction.Action
    queue_ids: _containers.RepeatedScalarFieldContainer[str]
    bounce: bool
    def __init__(self, action: _Optional[_Union[QueueAction.Action, str]] = ..., queue_ids: _Optional[_Iterable[str]] = ..., bounce: _Optional[bool] = ...) -> None: ...

class QueueActionResult(_message.Message):
    __slots__ = ("queue_id", "ok", "error")
    QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    queue_id: str
    ok: bool
    error: str
    def __init__(self, queue_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class TreeQuery(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SupervisorNode(_message.Message):
    __slots__ = ("name", "strategy", "intensity", "period_seconds", "restarts_in_window", "children", "supervisors", "total_children", "last_crash", "crashes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    SUPERVISORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    LAST_CRASH_FIELD_NUMBER: _ClassVar[int]
    CRASHES_FIELD_NUMBER: _ClassVar[int]
    name: str
    strategy: str
    intensity: int
    period_seconds: float
    restarts_in_window: int
    children: _containers.RepeatedCompositeFieldContainer[_supervision_pb2.ChildInfo]
    supervisors: _containers.RepeatedCompositeFieldContainer[SupervisorNode]
    total_children: int
    last_crash: str
    crashes: int
    def __init__(self, name: _Optional[str] = ..., strategy: _Optional[str] = ..., intensity: _Optional[int] = ..., period_seconds: _Optional[float] = ..., restarts_in_window: _Optional[int] = ..., children: _Optional[_Iterable[_Union[_supervision_pb2.ChildInfo, _Mapping]]] = ..., supervisors: _Optional[_Iterable[_Union[SupervisorNode, _Mapping]]] = ..., total_children: _Optional[int] = ..., last_crash: _Optional[str] = ..., crashes: _Optional[int] = ...) -> None: ...

class ControlReply(_message.Message):
    __slots__ = ("error", "results", "tree", "process")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    error: str
    results: _containers.RepeatedCompositeFieldContainer[QueueActionResult]
    tree: SupervisorNode
    process: int
    def __init__(self, error: _Optional[str] = ..., results: _Optional[_Iterable[_Union[QueueActionResult, _Mapping]]] = ..., tree: _Optional[_Union[SupervisorNode, _Mapping]] = ..., process: _Optional[int] = ...) -> None: ...
