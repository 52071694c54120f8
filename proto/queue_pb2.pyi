from estafeta.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ITEM_STATE_UNSPECIFIED: _ClassVar[ItemState]
    QUEUED: _ClassVar[ItemState]
    QUARANTINED: _ClassVar[ItemState]
    DONE: _ClassVar[ItemState]
    HELD: _ClassVar[ItemState]

class RecipientStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECIPIENT_STATUS_UNSPECIFIED: _ClassVar[RecipientStatus]
    PENDING: _ClassVar[RecipientStatus]
    DELIVERED: _ClassVar[RecipientStatus]
    FAILED: _ClassVar[RecipientStatus]
ITEM_STATE_UNSPECIFIED: ItemState
QUEUED: ItemState
QUARANTINED: ItemState
DONE: ItemState
HELD: ItemState
RECIPIENT_STATUS_UNSPECIFIED: RecipientStatus
PENDING: RecipientStatus
DELIVERED: RecipientStatus
FAILED: RecipientStatus

class Recipient(_message.Message):
    __slots__ = ("address", "mailbox", "status", "attempts", "last_error", "done_at", "original_recipient", "notify", "last_detail", "last_attempt_at", "dsn_due", "pipe_command", "folder", "forwarded_by", "reverse_path")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DONE_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    LAST_DETAIL_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    DSN_DUE_FIELD_NUMBER: _ClassVar[int]
    PIPE_COMMAND_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_BY_FIELD_NUMBER: _ClassVar[int]
    REVERSE_PATH_FIELD_NUMBER: _ClassVar[int]
    address: str
    mailbox: str
    status: RecipientStatus
    attempts: int
    last_error: str
    done_at: float
    original_recipient: str
    notify: _containers.RepeatedScalarFieldContainer[str]
    last_detail: str
    last_attempt_at: float
    dsn_due: str
    pipe_command: str
    folder: str
    forwarded_by: str
    reverse_path: str
    def __init__(self, address: _Optional[str] = ..., mailbox: _Optional[str] = ..., status: _Optional[_Union[RecipientStatus, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., done_at: _Optional[float] = ..., original_recipient: _Optional[str] = ..., notify: _Optional[_Iterable[str]] = ..., last_detail: _Optional[str] = ..., last_attempt_at: _Optional[float] = ..., dsn_due: _Optional[str] = ..., pipe_command: _Optional[str] = ..., folder: _Optional[str] = ..., forwarded_by: _Optional[str] = ..., reverse_path: _Optional[str] = ...) -> None: ...

class QueueItem(_message.Message):
    __slots__ = ("id", "state", "reverse_path", "recipients", "created_at", "body_size", "message_id", "trace", "client_address", "helo", "protocol", "smtputf8", "body_type", "attempts", "next_attempt_at", "last_error", "crashes", "last_crash", "quarantine_reason", "dsn_ret", "dsn_envid", "crash_streak", "delay_dsn_sent_at", "kind", "dsn_for", "hold_reason", "auth")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_MESSAGE: _ClassVar[QueueItem.Kind]
        KIND_DSN: _ClassVar[QueueItem.Kind]
        KIND_DOUBLE_BOUNCE: _ClassVar[QueueItem.Kind]
    KIND_MESSAGE: QueueItem.Kind
    KIND_DSN: QueueItem.Kind
    KIND_DOUBLE_BOUNCE: QueueItem.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REVERSE_PATH_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HELO_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    SMTPUTF8_FIELD_NUMBER: _ClassVar[int]
    BODY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CRASHES_FIELD_NUMBER: _ClassVar[int]
    LAST_CRASH_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_REASON_FIELD_NUMBER: _ClassVar[int]
    DSN_RET_FIELD_NUMBER: _ClassVar[int]
    DSN_ENVID_FIELD_NUMBER: _ClassVar[int]
    CRASH_STREAK_FIELD_NUMBER: _ClassVar[int]
    DELAY_DSN_SENT_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DSN_FOR_FIELD_NUMBER: _ClassVar[int]
    HOLD_REASON_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: ItemState
    reverse_path: str
    recipients: _containers.RepeatedCompositeFieldContainer[Recipient]
    created_at: float
    body_size: int
    message_id: str
    trace: _common_pb2.TraceContext
    client_address: str
    helo: str
    protocol: str
    smtputf8: bool
    body_type: str
    attempts: int
    next_attempt_at: float
    last_error: str
    crashes: int
    last_crash: str
    quarantine_reason: str
    dsn_ret: str
    dsn_envid: str
    crash_streak: int
    delay_dsn_sent_at: float
    kind: QueueItem.Kind
    dsn_for: str
    hold_reason: str
    auth: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[ItemState, str]] = ..., reverse_path: _Optional[str] = ..., recipients: _Optional[_Iterable[_Union[Recipient, _Mapping]]] = ..., created_at: _Optional[float] = ..., body_size: _Optional[int] = ..., message_id: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ..., client_address: _Optional[str] = ..., helo: _Optional[str] = ..., protocol: _Optional[str] = ..., smtputf8: _Optional[bool] = ..., body_type: _Optional[str] = ..., attempts: _Optional[int] = ..., next_attempt_at: _Optional[float] = ..., last_error: _Optional[str] = ..., crashes: _Optional[int] = ..., last_crash: _Optional[str] = ..., quarantine_reason: _Optional[str] = ..., dsn_ret: _Optional[str] = ..., dsn_envid: _Optional[str] = ..., crash_streak: _Optional[int] = ..., delay_dsn_sent_at: _Optional[float] = ..., kind: _Optional[_Union[QueueItem.Kind, str]] = ..., dsn_for: _Optional[str] = ..., hold_reason: _Optional[str] = ..., auth: _Optional[str] = ...) -> None: ...
