from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Config(_message.Message):
    __slots__ = ("hostname", "data_dir", "smtp_address", "max_data_size_bytes", "max_recipients", "local_domain", "max_queue_items", "max_queue_bytes", "chaos", "max_connections", "idle_timeout_seconds", "data_timeout_seconds", "max_errors", "shutdown_timeout_seconds", "tracing", "retry", "local_delivery_concurrency", "quarantine_after_crashes", "log_level", "processes", "queue_sweep_seconds", "checks", "dkim_signing", "srs")
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
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    DKIM_SIGNING_FIELD_NUMBER: _ClassVar[int]
    SRS_FIELD_NUMBER: _ClassVar[int]
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
    checks: Checks
    dkim_signing: DkimSigning
    srs: Srs
    def __init__(self, hostname: _Optional[str] = ..., data_dir: _Optional[str] = ..., smtp_address: _Optional[_Iterable[str]] = ..., max_data_size_bytes: _Optional[int] = ..., max_recipients: _Optional[int] = ..., local_domain: _Optional[_Iterable[_Union[LocalDomain, _Mapping]]] = ..., max_queue_items: _Optional[int] = ..., max_queue_bytes: _Optional[int] = ..., chaos: _Optional[_Union[Chaos, _Mapping]] = ..., max_connections: _Optional[int] = ..., idle_timeout_seconds: _Optional[float] = ..., data_timeout_seconds: _Optional[float] = ..., max_errors: _Optional[int] = ..., shutdown_timeout_seconds: _Optional[float] = ..., tracing: _Optional[_Union[Tracing, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., local_delivery_concurrency: _Optional[int] = ..., quarantine_after_crashes: _Optional[int] = ..., log_level: _Optional[str] = ..., processes: _Optional[int] = ..., queue_sweep_seconds: _Optional[float] = ..., checks: _Optional[_Union[Checks, _Mapping]] = ..., dkim_signing: _Optional[_Union[DkimSigning, _Mapping]] = ..., srs: _Optional[_Union[Srs, _Mapping]] = ...) -> None: ...

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

class Checks(_message.Message):
    __slots__ = ("enabled", "authserv_id", "spf", "dkim", "dmarc", "enforce_dmarc_reject", "dkim_trust_body_length", "dkim_min_rsa_bits", "iprev", "arc", "trusted_arc_sealer", "spf_timeout_seconds", "dnsbl", "dmarc_report_retention_seconds")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    AUTHSERV_ID_FIELD_NUMBER: _ClassVar[int]
    SPF_FIELD_NUMBER: _ClassVar[int]
    DKIM_FIELD_NUMBER: _ClassVar[int]
    DMARC_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_DMARC_REJECT_FIELD_NUMBER: _ClassVar[int]
    DKIM_TRUST_BODY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DKIM_MIN_RSA_BITS_FIELD_NUMBER: _ClassVar[int]
    IPREV_FIELD_NUMBER: _ClassVar[int]
    ARC_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_ARC_SEALER_FIELD_NUMBER: _ClassVar[int]
    SPF_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DNSBL_FIELD_NUMBER: _ClassVar[int]
    DMARC_REPORT_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    authserv_id: str
    spf: bool
    dkim: bool
    dmarc: bool
    enforce_dmarc_reject: bool
    dkim_trust_body_length: bool
    dkim_min_rsa_bits: int
    iprev: bool
    arc: bool
    trusted_arc_sealer: _containers.RepeatedScalarFieldContainer[str]
    spf_timeout_seconds: float
    dnsbl: Dnsbl
    dmarc_report_retention_seconds: float
    def __init__(self, enabled: _Optional[bool] = ..., authserv_id: _Optional[str] = ..., spf: _Optional[bool] = ..., dkim: _Optional[bool] = ..., dmarc: _Optional[bool] = ..., enforce_dmarc_reject: _Optional[bool] = ..., dkim_trust_body_length: _Optional[bool] = ..., dkim_min_rsa_bits: _Optional[int] = ..., iprev: _Optional[bool] = ..., arc: _Optional[bool] = ..., trusted_arc_sealer: _Optional[_Iterable[str]] = ..., spf_timeout_seconds: _Optional[float] = ..., dnsbl: _Optional[_Union[Dnsbl, _Mapping]] = ..., dmarc_report_retention_seconds: _Optional[float] = ...) -> None: ...

class Dnsbl(_message.Message):
    __slots__ = ("zone", "threshold")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    zone: _containers.RepeatedCompositeFieldContainer[DnsblZone]
    threshold: float
    def __init__(self, zone: _Optional[_Iterable[_Union[DnsblZone, _Mapping]]] = ..., threshold: _Optional[float] = ...) -> None: ...

class DnsblZone(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class DkimSigning(_message.Message):
    __slots__ = ("enabled", "arc_seal")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ARC_SEAL_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    arc_seal: bool
    def __init__(self, enabled: _Optional[bool] = ..., arc_seal: _Optional[bool] = ...) -> None: ...

class Srs(_message.Message):
    __slots__ = ("enabled", "domain", "hash_length", "max_age_days")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HASH_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_DAYS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    domain: str
    hash_length: int
    max_age_days: int
    def __init__(self, enabled: _Optional[bool] = ..., domain: _Optional[str] = ..., hash_length: _Optional[int] = ..., max_age_days: _Optional[int] = ...) -> None: ...
