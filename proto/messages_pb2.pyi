from estafeta.proto import common_pb2 as _common_pb2
from estafeta.proto import queue_pb2 as _queue_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
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

class Route(_message.Message):
    __slots__ = ("kind", "destination", "transport")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Route.Kind]
        MAILDIR: _ClassVar[Route.Kind]
        LMTP: _ClassVar[Route.Kind]
        MDA: _ClassVar[Route.Kind]
        SMTP: _ClassVar[Route.Kind]
    KIND_UNSPECIFIED: Route.Kind
    MAILDIR: Route.Kind
    LMTP: Route.Kind
    MDA: Route.Kind
    SMTP: Route.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    kind: Route.Kind
    destination: str
    transport: str
    def __init__(self, kind: _Optional[_Union[Route.Kind, str]] = ..., destination: _Optional[str] = ..., transport: _Optional[str] = ...) -> None: ...

class DeliverRecipient(_message.Message):
    __slots__ = ("index", "address", "mailbox", "notify", "original_recipient", "pipe_command", "folder")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    PIPE_COMMAND_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    index: int
    address: str
    mailbox: str
    notify: _containers.RepeatedScalarFieldContainer[str]
    original_recipient: str
    pipe_command: str
    folder: str
    def __init__(self, index: _Optional[int] = ..., address: _Optional[str] = ..., mailbox: _Optional[str] = ..., notify: _Optional[_Iterable[str]] = ..., original_recipient: _Optional[str] = ..., pipe_command: _Optional[str] = ..., folder: _Optional[str] = ...) -> None: ...

class Deliver(_message.Message):
    __slots__ = ("queue_id", "route", "recipients", "reverse_path", "created_at", "body_size", "smtputf8", "body_type", "dsn_ret", "dsn_envid", "check_existing", "finishes_item", "attempt", "trace")
    QUEUE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    REVERSE_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    SMTPUTF8_FIELD_NUMBER: _ClassVar[int]
    BODY_TYPE_FIELD_NUMBER: _ClassVar[int]
    DSN_RET_FIELD_NUMBER: _ClassVar[int]
    DSN_ENVID_FIELD_NUMBER: _ClassVar[int]
    CHECK_EXISTING_FIELD_NUMBER: _ClassVar[int]
    FINISHES_ITEM_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    queue_id: str
    route: Route
    recipients: _containers.RepeatedCompositeFieldContainer[DeliverRecipient]
    reverse_path: str
    created_at: float
    body_size: int
    smtputf8: bool
    body_type: str
    dsn_ret: str
    dsn_envid: str
    check_existing: bool
    finishes_item: bool
    attempt: int
    trace: _common_pb2.TraceContext
    def __init__(self, queue_id: _Optional[str] = ..., route: _Optional[_Union[Route, _Mapping]] = ..., recipients: _Optional[_Iterable[_Union[DeliverRecipient, _Mapping]]] = ..., reverse_path: _Optional[str] = ..., created_at: _Optional[float] = ..., body_size: _Optional[int] = ..., smtputf8: _Optional[bool] = ..., body_type: _Optional[str] = ..., dsn_ret: _Optional[str] = ..., dsn_envid: _Optional[str] = ..., check_existing: _Optional[bool] = ..., finishes_item: _Optional[bool] = ..., attempt: _Optional[int] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class RecipientResult(_message.Message):
    __slots__ = ("index", "outcome", "reply", "detail", "relayed_without_dsn")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RELAYED_WITHOUT_DSN_FIELD_NUMBER: _ClassVar[int]
    index: int
    outcome: Outcome
    reply: _common_pb2.Reply
    detail: str
    relayed_without_dsn: bool
    def __init__(self, index: _Optional[int] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., reply: _Optional[_Union[_common_pb2.Reply, _Mapping]] = ..., detail: _Optional[str] = ..., relayed_without_dsn: _Optional[bool] = ...) -> None: ...

class DeliveryResult(_message.Message):
    __slots__ = ("results", "item_removed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ITEM_REMOVED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RecipientResult]
    item_removed: bool
    def __init__(self, results: _Optional[_Iterable[_Union[RecipientResult, _Mapping]]] = ..., item_removed: _Optional[bool] = ...) -> None: ...

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
