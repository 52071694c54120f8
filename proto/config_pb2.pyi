from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("hostname", "data_dir", "smtp_address", "max_data_size_bytes", "max_recipients", "local_domain", "max_queue_items", "max_queue_bytes", "chaos", "max_connections", "idle_timeout_seconds", "data_timeout_seconds", "max_errors", "shutdown_timeout_seconds", "tracing", "retry", "local_delivery_concurrency", "quarantine_after_crashes", "log_level", "processes", "queue_sweep_seconds", "listener", "tls", "users_dir", "aliases_dir", "suffix_separators", "drop_characters", "limits", "user", "group", "directory_poll_seconds", "maildrop_poll_seconds", "auth")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    SMTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_DATA_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHAOS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATA_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRACING_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    LOCAL_DELIVERY_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_AFTER_CRASHES_FIELD_NUMBER: _ClassVar[int]
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SWEEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    USERS_DIR_FIELD_NUMBER: _ClassVar[int]
    ALIASES_DIR_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_SEPARATORS_FIELD_NUMBER: _ClassVar[int]
    DROP_CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_POLL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAILDROP_POLL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    data_dir: str
    smtp_address: _containers.RepeatedScalarFieldContainer[str]
    max_data_size_bytes: int
    max_recipients: int
    local_domain: _containers.RepeatedCompositeFieldContainer[LocalDomain]
    max_queue_items: int
    max_queue_bytes: int
    chaos: Chaos
    max_connections: int
    idle_timeout_seconds: float
    data_timeout_seconds: float
    max_errors: int
    shutdown_timeout_seconds: float
    tracing: Tracing
    retry: Retry
    local_delivery_concurrency: int
    quarantine_after_crashes: int
    log_level: str
    processes: int
    queue_sweep_seconds: float
    listener: _containers.RepeatedCompositeFieldContainer[Listener]
    tls: Tls
    users_dir: str
    aliases_dir: str
    suffix_separators: str
    drop_characters: str
    limits: Limits
    user: str
    group: str
    directory_poll_seconds: float
    maildrop_poll_seconds: float
    auth: Auth
    def __init__(self, hostname: _Optional[str] = ..., data_dir: _Optional[str] = ..., smtp_address: _Optional[_Iterable[str]] = ..., max_data_size_bytes: _Optional[int] = ..., max_recipients: _Optional[int] = ..., local_domain: _Optional[_Iterable[_Union[LocalDomain, _Mapping]]] = ..., max_queue_items: _Optional[int] = ..., max_queue_bytes: _Optional[int] = ..., chaos: _Optional[_Union[Chaos, _Mapping]] = ..., max_connections: _Optional[int] = ..., idle_timeout_seconds: _Optional[float] = ..., data_timeout_seconds: _Optional[float] = ..., max_errors: _Optional[int] = ..., shutdown_timeout_seconds: _Optional[float] = ..., tracing: _Optional[_Union[Tracing, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., local_delivery_concurrency: _Optional[int] = ..., quarantine_after_crashes: _Optional[int] = ..., log_level: _Optional[str] = ..., processes: _Optional[int] = ..., queue_sweep_seconds: _Optional[float] = ..., listener: _Optional[_Iterable[_Union[Listener, _Mapping]]] = ..., tls: _Optional[_Union[Tls, _Mapping]] = ..., users_dir: _Optional[str] = ..., aliases_dir: _Optional[str] = ..., suffix_separators: _Optional[str] = ..., drop_characters: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., user: _Optional[str] = ..., group: _Optional[str] = ..., directory_poll_seconds: _Optional[float] = ..., maildrop_poll_seconds: _Optional[float] = ..., auth: _Optional[_Union[Auth, _Mapping]] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("address", "mode")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SMTP: _ClassVar[Listener.Mode]
        SUBMISSION: _ClassVar[Listener.Mode]
        SUBMISSIONS: _ClassVar[Listener.Mode]
    SMTP: Listener.Mode
    SUBMISSION: Listener.Mode
    SUBMISSIONS: Listener.Mode
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    address: str
    mode: Listener.Mode
    def __init__(self, address: _Optional[str] = ..., mode: _Optional[_Union[Listener.Mode, str]] = ...) -> None: ...

class Tls(_message.Message):
    __slots__ = ("cert_dir", "self_signed", "reload_poll_seconds")
    CERT_DIR_FIELD_NUMBER: _ClassVar[int]
    SELF_SIGNED_FIELD_NUMBER: _ClassVar[int]
    RELOAD_POLL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    cert_dir: str
    self_signed: bool
    reload_poll_seconds: float
    def __init__(self, cert_dir: _Optional[str] = ..., self_signed: _Optional[bool] = ..., reload_poll_seconds: _Optional[float] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("connections_per_minute", "connections_at_once", "auth_failures_per_minute", "auth_failures_per_day", "auth_failures_before_delay", "auth_failure_delay_seconds", "messages_per_user_hour", "recipients_per_user_hour", "exempt_loopback")
    CONNECTIONS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_AT_ONCE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FAILURES_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FAILURES_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    AUTH_FAILURES_BEFORE_DELAY_FIELD_NUMBER: _ClassVar[int]
    AUTH_FAILURE_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_PER_USER_HOUR_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_PER_USER_HOUR_FIELD_NUMBER: _ClassVar[int]
    EXEMPT_LOOPBACK_FIELD_NUMBER: _ClassVar[int]
    connections_per_minute: _containers.RepeatedScalarFieldContainer[int]
    connections_at_once: _containers.RepeatedScalarFieldContainer[int]
    auth_failures_per_minute: _containers.RepeatedScalarFieldContainer[int]
    auth_failures_per_day: _containers.RepeatedScalarFieldContainer[int]
    auth_failures_before_delay: int
    auth_failure_delay_seconds: float
    messages_per_user_hour: int
    recipients_per_user_hour: int
    exempt_loopback: bool
    def __init__(self, connections_per_minute: _Optional[_Iterable[int]] = ..., connections_at_once: _Optional[_Iterable[int]] = ..., auth_failures_per_minute: _Optional[_Iterable[int]] = ..., auth_failures_per_day: _Optional[_Iterable[int]] = ..., auth_failures_before_delay: _Optional[int] = ..., auth_failure_delay_seconds: _Optional[float] = ..., messages_per_user_hour: _Optional[int] = ..., recipients_per_user_hour: _Optional[int] = ..., exempt_loopback: _Optional[bool] = ...) -> None: ...

class Auth(_message.Message):
    __slots__ = ("mechanism",)
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    mechanism: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mechanism: _Optional[_Iterable[str]] = ...) -> None: ...

class LocalDomain(_message.Message):
    __slots__ = ("name", "user")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    name: str
    user: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., user: _Optional[_Iterable[str]] = ...) -> None: ...

class Chaos(_message.Message):
    __slots__ = ("crash",)
    CRASH_FIELD_NUMBER: _ClassVar[int]
    crash: _containers.RepeatedCompositeFieldContainer[Crash]
    def __init__(self, crash: _Optional[_Iterable[_Union[Crash, _Mapping]]] = ...) -> None: ...

class Crash(_message.Message):
    __slots__ = ("actor", "probability")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    actor: str
    probability: float
    def __init__(self, actor: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Tracing(_message.Message):
    __slots__ = ("enabled", "retention_seconds", "max_store_bytes", "otlp_endpoint", "max_buffered_spans", "flush_interval_seconds")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OTLP_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MAX_BUFFERED_SPANS_FIELD_NUMBER: _ClassVar[int]
    FLUSH_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    retention_seconds: float
    max_store_bytes: int
    otlp_endpoint: str
    max_buffered_spans: int
    flush_interval_seconds: float
    def __init__(self, enabled: _Optional[bool] = ..., retention_seconds: _Optional[float] = ..., max_store_bytes: _Optional[int] = ..., otlp_endpoint: _Optional[str] = ..., max_buffered_spans: _Optional[int] = ..., flush_interval_seconds: _Optional[float] = ...) -> None: ...

class Retry(_message.Message):
    __slots__ = ("initial_seconds", "max_seconds", "give_up_after_seconds")
    INITIAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GIVE_UP_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    initial_seconds: float
    max_seconds: float
    give_up_after_seconds: float
    def __init__(self, initial_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ..., give_up_after_seconds: _Optional[float] = ...) -> None: ...
