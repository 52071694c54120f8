from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiskRequest(_message.Message):
    __slots__ = ("id", "queue_write", "maildir", "ping")
    ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WRITE_FIELD_NUMBER: _ClassVar[int]
    MAILDIR_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    id: int
    queue_write: QueueWrite
    maildir: MaildirDelivery
    ping: Ping
    def __init__(self, id: _Optional[int] = ..., queue_write: _Optional[_Union[QueueWrite, _Mapping]] = ..., maildir: _Optional[_Union[MaildirDelivery, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueWrite(_message.Message):
    __slots__ = ("writes", "unlinks", "directory")
    WRITES_FIELD_NUMBER: _ClassVar[int]
    UNLINKS_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    writes: _containers.RepeatedCompositeFieldContainer[FileWrite]
    unlinks: _containers.RepeatedScalarFieldContainer[str]
    directory: str
    def __init__(self, writes: _Optional[_Iterable[_Union[FileWrite, _Mapping]]] = ..., unlinks: _Optional[_Iterable[str]] = ..., directory: _Optional[str] = ...) -> None: ...

class FileWrite(_message.Message):
    __slots__ = ("path", "data", "exclusive")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    exclusive: bool
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., exclusive: _Optional[bool] = ...) -> None: ...

class MaildirDelivery(_message.Message):
    __slots__ = ("root", "mailbox", "name", "header_prefix", "body", "body_path", "check_existing", "remove_after", "folder")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEADER_PREFIX_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_PATH_FIELD_NUMBER: _ClassVar[int]
    CHECK_EXISTING_FIELD_NUMBER: _ClassVar[int]
    REMOVE_AFTER_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    root: str
    mailbox: str
    name: str
    header_prefix: bytes
    body: bytes
    body_path: str
    check_existing: bool
    remove_after: QueueWrite
    folder: str
    def __init__(self, root: _Optional[str] = ..., mailbox: _Optional[str] = ..., name: _Optional[str] = ..., header_prefix: _Optional[bytes] = ..., body: _Optional[bytes] = ..., body_path: _Optional[str] = ..., check_existing: _Optional[bool] = ..., remove_after: _Optional[_Union[QueueWrite, _Mapping]] = ..., folder: _Optional[str] = ...) -> None: ...

class DiskReply(_message.Message):
    __slots__ = ("id", "error_type", "errno", "error", "path", "already_there", "removed")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALREADY_THERE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    id: int
    error_type: str
    errno: int
    error: str
    path: str
    already_there: bool
    removed: bool
    def __init__(self, id: _Optional[int] = ..., error_type: _Optional[str] = ..., errno: _Optional[int] = ..., error: _Optional[str] = ..., path: _Optional[str] = ..., already_there: _Optional[bool] = ..., removed: _Optional[bool] = ...) -> None: ...
