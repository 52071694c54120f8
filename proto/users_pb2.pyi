from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserDb(_message.Message):
    __slots__ = ("domain", "user")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    domain: str
    user: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, domain: _Optional[str] = ..., user: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "password_hash", "scram_sha256", "admin_of", "password_set_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_HASH_FIELD_NUMBER: _ClassVar[int]
    SCRAM_SHA256_FIELD_NUMBER: _ClassVar[int]
    ADMIN_OF_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_SET_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    password_hash: str
    scram_sha256: ScramCredential
    admin_of: _containers.RepeatedScalarFieldContainer[str]
    password_set_at: float
    def __init__(self, name: _Optional[str] = ..., password_hash: _Optional[str] = ..., scram_sha256: _Optional[_Union[ScramCredential, _Mapping]] = ..., admin_of: _Optional[_Iterable[str]] = ..., password_set_at: _Optional[float] = ...) -> None: ...

class ScramCredential(_message.Message):
    __slots__ = ("salt", "iterations", "stored_key", "server_key")
    SALT_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    STORED_KEY_FIELD_NUMBER: _ClassVar[int]
    SERVER_KEY_FIELD_NUMBER: _ClassVar[int]
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    def __init__(self, salt: _Optional[bytes] = ..., iterations: _Optional[int] = ..., stored_key: _Optional[bytes] = ..., server_key: _Optional[bytes] = ...) -> None: ...
