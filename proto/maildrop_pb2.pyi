from estafeta.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MaildropEnvelope(_message.Message):
    __slots__ = ("reverse_path", "recipient", "submitted_at", "uid", "login", "size", "eight_bit", "smtputf8")
    REVERSE_PATH_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    EIGHT_BIT_FIELD_NUMBER: _ClassVar[int]
    SMTPUTF8_FIELD_NUMBER: _ClassVar[int]
    reverse_path: str
    recipient: _containers.RepeatedScalarFieldContainer[str]
    submitted_at: float
    uid: int
    login: str
    size: int
    eight_bit: bool
    smtputf8: bool
    def __init__(self, reverse_path: _Optional[str] = ..., recipient: _Optional[_Iterable[str]] = ..., submitted_at: _Optional[float] = ..., uid: _Optional[int] = ..., login: _Optional[str] = ..., size: _Optional[int] = ..., eight_bit: _Optional[bool] = ..., smtputf8: _Optional[bool] = ...) -> None: ...

class PickupDue(_message.Message):
    __slots__ = ("trace",)
    TRACE_FIELD_NUMBER: _ClassVar[int]
    trace: _common_pb2.TraceContext
    def __init__(self, trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...
