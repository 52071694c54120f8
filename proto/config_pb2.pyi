from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT: _ClassVar[LogFormat]
    JSON: _ClassVar[LogFormat]
TEXT: LogFormat
JSON: LogFormat

class Config(_message.Message):
    __slots__ = ("hostname", "data_dir", "smtp_address", "max_data_size_bytes", "max_recipients", "local_domain", "max_queue_items", "max_queue_bytes", "chaos", "max_connections", "idle_timeout_seconds", "data_timeout_seconds", "max_errors", "shutdown_timeout_seconds", "tracing", "retry", "local_delivery_concurrency", "quarantine_after_crashes", "log_level", "processes", "queue_sweep_seconds", "resolver", "dns", "relay_network", "remote_smtp_port", "transport", "route", "outbound", "dsn", "listener", "tls", "users_dir", "aliases_dir", "suffix_separators", "drop_characters", "limits", "user", "group", "directory_poll_seconds", "maildrop_poll_seconds", "auth", "checks", "dkim_signing", "srs", "http_address", "http_token_file", "log_format")
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
    RELAY_NETWORK_FIELD_NUMBER: _ClassVar[int]
    REMOTE_SMTP_PORT_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    DSN_FIELD_NUMBER: _ClassVar[int]
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
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    DKIM_SIGNING_FIELD_NUMBER: _ClassVar[int]
    SRS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_TOKEN_FILE_FIELD_NUMBER: _ClassVar[int]
    LOG_FORMAT_FIELD_NUMBER: _ClassVar[int]
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
    relay_network: _containers.RepeatedScalarFieldContainer[str]
    remote_smtp_port: int
    transport: _containers.RepeatedCompositeFieldContainer[Transport]
    route: _containers.RepeatedCompositeFieldContainer[RouteRule]
    outbound: Outbound
    dsn: Dsn
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
    checks: Checks
    dkim_signing: DkimSigning
    srs: Srs
    http_address: str
    http_token_file: str
    log_format: LogFormat
    def __init__(self, hostname: _Optional[str] = ..., data_dir: _Optional[str] = ..., smtp_address: _Optional[_Iterable[str]] = ..., max_data_size_bytes: _Optional[int] = ..., max_recipients: _Optional[int] = ..., local_domain: _Optional[_Iterable[_Union[LocalDomain, _Mapping]]] = ..., max_queue_items: _Optional[int] = ..., max_queue_bytes: _Optional[int] = ..., chaos: _Optional[_Union[Chaos, _Mapping]] = ..., max_connections: _Optional[int] = ..., idle_timeout_seconds: _Optional[float] = ..., data_timeout_seconds: _Optional[float] = ..., max_errors: _Optional[int] = ..., shutdown_timeout_seconds: _Optional[float] = ..., tracing: _Optional[_Union[Tracing, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., local_delivery_concurrency: _Optional[int] = ..., quarantine_after_crashes: _Optional[int] = ..., log_level: _Optional[str] = ..., processes: _Optional[int] = ..., queue_sweep_seconds: _Optional[float] = ..., resolver: _Optional[_Iterable[str]] = ..., dns: _Optional[_Union[Dns, _Mapping]] = ..., relay_network: _Optional[_Iterable[str]] = ..., remote_smtp_port: _Optional[int] = ..., transport: _Optional[_Iterable[_Union[Transport, _Mapping]]] = ..., route: _Optional[_Iterable[_Union[RouteRule, _Mapping]]] = ..., outbound: _Optional[_Union[Outbound, _Mapping]] = ..., dsn: _Optional[_Union[Dsn, _Mapping]] = ..., listener: _Optional[_Iterable[_Union[Listener, _Mapping]]] = ..., tls: _Optional[_Union[Tls, _Mapping]] = ..., users_dir: _Optional[str] = ..., aliases_dir: _Optional[str] = ..., suffix_separators: _Optional[str] = ..., drop_characters: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., user: _Optional[str] = ..., group: _Optional[str] = ..., directory_poll_seconds: _Optional[float] = ..., maildrop_poll_seconds: _Optional[float] = ..., auth: _Optional[_Union[Auth, _Mapping]] = ..., checks: _Optional[_Union[Checks, _Mapping]] = ..., dkim_signing: _Optional[_Union[DkimSigning, _Mapping]] = ..., srs: _Optional[_Union[Srs, _Mapping]] = ..., http_address: _Optional[str] = ..., http_token_file: _Optional[str] = ..., log_format: _Optional[_Union[LogFormat, str]] = ...) -> None: ...

class Transport(_message.Message):
    __slots__ = ("name", "smarthost", "lmtp", "mda")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SMARTHOST_FIELD_NUMBER: _ClassVar[int]
    LMTP_FIELD_NUMBER: _ClassVar[int]
    MDA_FIELD_NUMBER: _ClassVar[int]
    name: str
    smarthost: Smarthost
    lmtp: LmtpTransport
    mda: MdaTransport
    def __init__(self, name: _Optional[str] = ..., smarthost: _Optional[_Union[Smarthost, _Mapping]] = ..., lmtp: _Optional[_Union[LmtpTransport, _Mapping]] = ..., mda: _Optional[_Union[MdaTransport, _Mapping]] = ...) -> None: ...

class Smarthost(_message.Message):
    __slots__ = ("address", "require_tls", "auth_username", "auth_password_file")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_TLS_FIELD_NUMBER: _ClassVar[int]
    AUTH_USERNAME_FIELD_NUMBER: _ClassVar[int]
    AUTH_PASSWORD_FILE_FIELD_NUMBER: _ClassVar[int]
    address: str
    require_tls: bool
    auth_username: str
    auth_password_file: str
    def __init__(self, address: _Optional[str] = ..., require_tls: _Optional[bool] = ..., auth_username: _Optional[str] = ..., auth_password_file: _Optional[str] = ...) -> None: ...

class LmtpTransport(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class MdaTransport(_message.Message):
    __slots__ = ("command", "timeout_seconds")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    command: _containers.RepeatedScalarFieldContainer[str]
    timeout_seconds: float
    def __init__(self, command: _Optional[_Iterable[str]] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class RouteRule(_message.Message):
    __slots__ = ("domain", "transport")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    domain: str
    transport: str
    def __init__(self, domain: _Optional[str] = ..., transport: _Optional[str] = ...) -> None: ...

class Outbound(_message.Message):
    __slots__ = ("max_connections", "max_connections_per_destination", "max_recipients_per_transaction", "timeouts", "ca_file", "lmtp_concurrency", "mda_concurrency")
    MAX_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_PER_DESTINATION_FIELD_NUMBER: _ClassVar[int]
    MAX_RECIPIENTS_PER_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    CA_FILE_FIELD_NUMBER: _ClassVar[int]
    LMTP_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    MDA_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    max_connections: int
    max_connections_per_destination: int
    max_recipients_per_transaction: int
    timeouts: ClientTimeouts
    ca_file: str
    lmtp_concurrency: int
    mda_concurrency: int
    def __init__(self, max_connections: _Optional[int] = ..., max_connections_per_destination: _Optional[int] = ..., max_recipients_per_transaction: _Optional[int] = ..., timeouts: _Optional[_Union[ClientTimeouts, _Mapping]] = ..., ca_file: _Optional[str] = ..., lmtp_concurrency: _Optional[int] = ..., mda_concurrency: _Optional[int] = ...) -> None: ...

class ClientTimeouts(_message.Message):
    __slots__ = ("connect_seconds", "greeting_seconds", "ehlo_seconds", "mail_seconds", "rcpt_seconds", "data_seconds", "data_block_seconds", "data_done_seconds")
    CONNECT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GREETING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EHLO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAIL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RCPT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATA_BLOCK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATA_DONE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    connect_seconds: float
    greeting_seconds: float
    ehlo_seconds: float
    mail_seconds: float
    rcpt_seconds: float
    data_seconds: float
    data_block_seconds: float
    data_done_seconds: float
    def __init__(self, connect_seconds: _Optional[float] = ..., greeting_seconds: _Optional[float] = ..., ehlo_seconds: _Optional[float] = ..., mail_seconds: _Optional[float] = ..., rcpt_seconds: _Optional[float] = ..., data_seconds: _Optional[float] = ..., data_block_seconds: _Optional[float] = ..., data_done_seconds: _Optional[float] = ...) -> None: ...

class Dsn(_message.Message):
    __slots__ = ("max_full_message_bytes", "postmaster")
    MAX_FULL_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    POSTMASTER_FIELD_NUMBER: _ClassVar[int]
    max_full_message_bytes: int
    postmaster: str
    def __init__(self, max_full_message_bytes: _Optional[int] = ..., postmaster: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("initial_seconds", "max_seconds", "give_up_after_seconds", "delay_warning_seconds")
    INITIAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GIVE_UP_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DELAY_WARNING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    initial_seconds: float
    max_seconds: float
    give_up_after_seconds: float
    delay_warning_seconds: float
    def __init__(self, initial_seconds: _Optional[float] = ..., max_seconds: _Optional[float] = ..., give_up_after_seconds: _Optional[float] = ..., delay_warning_seconds: _Optional[float] = ...) -> None: ...

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
