from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TraceContext(_message.Message):
    __slots__ = ("traceparent", "tracestate")
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    traceparent: str
    tracestate: str
    def __init__(self, traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("code", "enhanced", "text")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ENHANCED_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    code: int
    enhanced: str
    text: str
    def __init__(self, code: _Optional[int] = ..., enhanced: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
