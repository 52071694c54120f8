from estafeta.proto import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlushDmarcReports(_message.Message):
    __slots__ = ("trace",)
    TRACE_FIELD_NUMBER: _ClassVar[int]
    trace: _common_pb2.TraceContext
    def __init__(self, trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...

class TrimDmarcReports(_message.Message):
    __slots__ = ("trace",)
    TRACE_FIELD_NUMBER: _ClassVar[int]
    trace: _common_pb2.TraceContext
    def __init__(self, trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ...) -> None: ...
