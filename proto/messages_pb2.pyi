from estafeta.proto import common_pb2 as _common_pb2
from estafeta.proto import disk_pb2 as _disk_pb2
from estafeta.proto import queue_pb2 as _queue_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_DELIVERED: _ClassVar[Outcome]
    OUTCOME_TEMPORARY_FAILURE: _ClassVar[Outcome]
    OUTCOME_PERMANENT_FAILURE: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_DELIVERED: Outcome
OUTCOME_TEMPORARY_FAILURE: Outcome
OUTCOME_PERMANENT_FAILURE: Outcome

class StartSession(_message.Message):
    __slots__ = ("fd", "peer_address", "peer_port", "local_address", "local_port", "listener", "trace")
    FD_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PEER_PORT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PORT_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    fd: int
    peer_address: str
    peer_port: int
    local_address: str
    local_port: int
    listener: str
    trace: _common_pb2.TraceContext
    def __init__(self, fd: _Optional[int] = ..., peer_address: _Optional[str] = ..., peer_port: _Optional[int] = ..., local_address: _Optional[str] = ..., local_port: _Optional[int] = ..., listener: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class RecipientVerdict(_message.Message):
    __slots__ = ("accepted", "reply", "mailbox")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reply: _common_pb2.Reply
    mailbox: str
    def __init__(self, accepted: _Optional[bool] = ..., reply: _Optional[_Union[_common_pb2.Reply, _Mapping]] = ..., mailbox: _Optional[str] = ...) -> None: ...

class Enqueued(_message.Message):
    __slots__ = ("item", "trace")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    item: _queue_pb2.QueueItem
    trace: _common_pb2.TraceContext
    def __init__(self, item: _Optional[_Union[_queue_pb2.QueueItem, _Mapping]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class QueueItemArgs(_message.Message):
    __slots__ = ("queue_id", "item", "trace")
    QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    queue_id: str
    item: _queue_pb2.QueueItem
    trace: _common_pb2.TraceContext
    def __init__(self, queue_id: _Optional[str] = ..., item: _Optional[_Union[_queue_pb2.QueueItem, _Mapping]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class AttemptDue(_message.Message):
    __slots__ = ("trace",)
    TRACE_FIELD_NUMBER: _ClassVar[int]
    trace: _common_pb2.TraceContext
    def __init__(self, trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class ItemFinished(_message.Message):
    __slots__ = ("queue_id", "state", "body_size", "trace")
    QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    queue_id: str
    state: _queue_pb2.ItemState
    body_size: int
    trace: _common_pb2.TraceContext
    def __init__(self, queue_id: _Optional[str] = ..., state: _Optional[_Union[_queue_pb2.ItemState, str]] = ..., body_size: _Optional[int] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class DeliverLocal(_message.Message):
    __slots__ = ("queue_id", "recipient_index", "recipient", "reverse_path", "created_at", "body_path", "check_existing", "link_body", "remove_after", "trace")
    QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    REVERSE_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    BODY_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECK_EXISTING_FIELD_NUMBER: _ClassVar[int]
    LINK_BODY_FIELD_NUMBER: _ClassVar[int]
    REMOVE_AFTER_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    queue_id: str
    recipient_index: int
    recipient: _queue_pb2.Recipient
    reverse_path: str
    created_at: float
    body_path: str
    check_existing: bool
    link_body: bool
    remove_after: _disk_pb2.QueueWrite
    trace: _common_pb2.TraceContext
    def __init__(self, queue_id: _Optional[str] = ..., recipient_index: _Optional[int] = ..., recipient: _Optional[_Union[_queue_pb2.Recipient, _Mapping]] = ..., reverse_path: _Optional[str] = ..., created_at: _Optional[float] = ..., body_path: _Optional[str] = ..., check_existing: _Optional[bool] = ..., link_body: _Optional[bool] = ..., remove_after: _Optional[_Union[_disk_pb2.QueueWrite, _Mapping]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class DeliveryResult(_message.Message):
    __slots__ = ("outcome", "reply", "path", "removed")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    reply: _common_pb2.Reply
    path: str
    removed: bool
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., reply: _Optional[_Union[_common_pb2.Reply, _Mapping]] = ..., path: _Optional[str] = ..., removed: _Optional[bool] = ...) -> None: ...

class DiskWorkerExited(_message.Message):
    __slots__ = ("pid", "reason", "trace")
    PID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    reason: str
    trace: _common_pb2.TraceContext
    def __init__(self, pid: _Optional[int] = ..., reason: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class ServingProcessExited(_message.Message):
    __slots__ = ("pid", "status", "trace")
    PID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    status: int
    trace: _common_pb2.TraceContext
    def __init__(self, pid: _Optional[int] = ..., status: _Optional[int] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...
