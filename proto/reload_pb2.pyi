from estafeta.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reload(_message.Message):
    __slots__ = ("trace",)
    TRACE_FIELD_NUMBER: _ClassVar[int]
    trace: _common_pb2.TraceContext
    def __init__(self, trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class ReloadResult(_message.Message):
    __slots__ = ("reloaded", "error", "trace")
    RELOADED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    reloaded: _containers.RepeatedScalarFieldContainer[str]
    error: _containers.RepeatedScalarFieldContainer[str]
    trace: _common_pb2.TraceContext
    def __init__(self, reloaded: _Optional[_Iterable[str]] = ..., error: _Optional[_Iterable[str]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...
