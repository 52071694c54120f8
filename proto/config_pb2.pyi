from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("hostname", "data_dir", "smtp_address", "max_data_size_bytes", "max_recipients", "local_domain", "max_queue_items", "max_queue_bytes", "chaos", "max_connections", "idle_timeout_seconds", "data_timeout_seconds", "max_errors", "shutdown_timeout_seconds", "tracing", "retry", "local_delivery_concurrency", "quarantine_after_crashes", "log_level", "processes", "queue_sweep_seconds", "resolver", "dns")
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
    RESOLVER_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
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
    resolver: _containers.RepeatedScalarFieldContainer[str]
    dns: Dns
    def __init__(self, hostname: _Optional[str] = ..., data_dir: _Optional[str] = ..., smtp_address: _Optional[_Iterable[str]] = ..., max_data_size_bytes: _Optional[int] = ..., max_recipients: _Optional[int] = ..., local_domain: _Optional[_Iterable[_Union[LocalDomain, _Mapping]]] = ..., max_queue_items: _Optional[int] = ..., max_queue_bytes: _Optional[int] = ..., chaos: _Optional[_Union[Chaos, _Mapping]] = ..., max_connections: _Optional[int] = ..., idle_timeout_seconds: _Optional[float] = ..., data_timeout_seconds: _Optional[float] = ..., max_errors: _Optional[int] = ..., shutdown_timeout_seconds: _Optional[float] = ..., tracing: _Optional[_Union[Tracing, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., local_delivery_concurrency: _Optional[int] = ..., quarantine_after_crashes: _Optional[int] = ..., log_level: _Optional[str] = ..., processes: _Optional[int] = ..., queue_sweep_seconds: _Optional[float] = ..., resolver: _Optional[_Iterable[str]] = ..., dns: _Optional[_Union[Dns, _Mapping]] = ...) -> None: ...

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

class Dns(_message.Message):
    __slots__ = ("timeout_seconds", "attempts", "cache_size", "max_ttl_seconds", "max_negative_ttl_seconds", "failure_ttl_seconds", "purge_interval_seconds")
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEGATIVE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PURGE_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    timeout_seconds: float
    attempts: int
    cache_size: int
    max_ttl_seconds: float
    max_negative_ttl_seconds: float
    failure_ttl_seconds: float
    purge_interval_seconds: float
    def __init__(self, timeout_seconds: _Optional[float] = ..., attempts: _Optional[int] = ..., cache_size: _Optional[int] = ..., max_ttl_seconds: _Optional[float] = ..., max_negative_ttl_seconds: _Optional[float] = ..., failure_ttl_seconds: _Optional[float] = ..., purge_interval_seconds: _Optional[float] = ...) -> None: ...
