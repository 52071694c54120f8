"""Loading, defaulting and checking estafeta.conf (message `Config`).

The file is text-format protobuf (proto/config.proto documents every field
and its default). Errors never surface as tracebacks: every problem is a
`ConfigError` whose message names the file, the line and the field, e.g.

    estafeta.conf:3:1: Message type "estafeta.Config" has no field named "hostnam".
    estafeta.conf:5: smtp_address "localhost" is not "host:port"
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass

import idna
from google.protobuf import text_format

from estafeta.proto import config_pb2

#: The defaults of repeated fields, which proto2 cannot express in the .proto.
DEFAULT_SMTP_ADDRESS = ("127.0.0.1:2525",)
DEFAULT_LOCAL_DOMAINS = ("localhost",)
#: Zero configuration (no smtp_address, no listener in the file): these
#: submission listeners besides DEFAULT_SMTP_ADDRESS, on loopback high ports.
DEFAULT_SUBMISSION_LISTENERS = (
    ("127.0.0.1:2587", config_pb2.Listener.SUBMISSION),
    ("127.0.0.1:2465", config_pb2.Listener.SUBMISSIONS),
)
#: Limits' per-level lists (mox's smtpserver and mox-/limitauth.go numbers).
DEFAULT_LIMITS = {
    "connections_per_minute": (300, 900, 2700),
    "connections_at_once": (30, 90, 270),
    "auth_failures_per_minute": (10, 30, 90),
    "auth_failures_per_day": (50, 150, 450),
}
#: SASL mechanisms estafeta implements (actors/auth), in the default order.
AUTH_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN")

#: Actor classes that `chaos { crash { actor: ... } }` may name.
CHAOS_ACTORS = frozenset(
    {
        "SmtpSession",
        "Listener",
        "Directory",
        "DnsResolver",
        "QueueManager",
        "QueueItem",
        "LocalCourier",
        "SmtpCourier",
        "MdaCourier",
        "Supervisor",
        "ControlServer",
        "HttpServer",
    }
)


class ConfigError(Exception):
    """A configuration problem; str() is the one-line message for the user."""


@dataclass(frozen=True)
class ListenAddress:
    """One parsed "host:port" of Config.smtp_address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """Parse "127.0.0.1:2525", "[::1]:2525" or "localhost:25".

    Raises ValueError with a readable reason.
    """
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise ValueError(f'"{text}" is not "host:port" (IPv6 as "[::1]:port")')
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f'"{text}": port {port} is out of range 1-65535')
    return ListenAddress(host, port)


def check_domain(name: str) -> str:
    """dns_domain(name) that is also a host name (RFC 1123 §2.1: letters,
    digits and hyphens; no underscore), as the hostname and local domains
    must be: "not a host name" and "exa mple" are refused. Raises
    ValueError with a readable reason."""
    norm = dns_domain(name)
    if "_" in norm:
        raise ValueError(f'"{name}" is not a host name (no underscores, RFC 1123 §2.1)')
    return norm


@dataclass(frozen=True)
class ListenerSpec:
    """One listening address and its mode (Config.smtp_address entries are
    SMTP listeners; Config.listener entries carry their own mode).

    name: "smtp", "submission", "submissions" when the mode has one address,
    else "<mode>.<address>" (the registry names "listener.<name>",
    "sessions.<name>"); text: the address as written; mode: a
    config_pb2.Listener.Mode value."""

    name: str
    text: str
    address: ListenAddress
    mode: int


_MODE_NAMES = {
    config_pb2.Listener.SMTP: "smtp",
    config_pb2.Listener.SUBMISSION: "submission",
    config_pb2.Listener.SUBMISSIONS: "submissions",
}


def listener_specs(cfg: config_pb2.Config) -> list[ListenerSpec]:
    """Every listener of `cfg`: smtp_address first (SMTP), then listener
    entries, in file order. Raises ValueError for a bad address."""
    pairs = [(a, config_pb2.Listener.SMTP) for a in cfg.smtp_address]
    pairs += [(entry.address, entry.mode) for entry in cfg.listener]
    per_mode: dict[int, int] = {}
    for _, mode in pairs:
        per_mode[mode] = per_mode.get(mode, 0) + 1
    out = []
    for text, mode in pairs:
        base = _MODE_NAMES[mode]
        name = base if per_mode[mode] == 1 else f"{base}.{text}"
        out.append(ListenerSpec(name, text, parse_listen_address(text), mode))
    return out


def parse_resolver_address(text: str) -> ListenAddress:
    """Parse one Config.resolver entry: "127.0.0.1:53" or "[::1]:53" (the
    host must be an IP address: a resolver's name would need a resolver).
    Raises ValueError with a readable reason."""
    addr = parse_listen_address(text)
    try:
        ipaddress.ip_address(addr.host)
    except ValueError:
        raise ValueError(f'"{text}": the host must be an IP address, not "{addr.host}"') from None
    return addr


def normalize_domain(name: str) -> str:
    """A domain as compared everywhere: IDNA2008/UTS 46 A-label, lower case,
    no trailing dot. Raises ValueError for a name IDNA rejects."""
    name = name.strip().rstrip(".")
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as e:
        raise ValueError(f'"{name}" is not a valid domain name: {e}') from None


def _fill_defaults(msg) -> None:
    """Set every scalar field of `msg` (recursively) to its current value,
    so that presence is explicit and text_format prints it."""
    for field in msg.DESCRIPTOR.fields:
        if field.is_repeated:
            if field.message_type is not None:
                for sub in getattr(msg, field.name):
                    _fill_defaults(sub)
            continue
        if field.message_type is not None:
            _fill_defaults(getattr(msg, field.name))
        elif field.has_presence and field.name != "otlp_endpoint":
            setattr(msg, field.name, getattr(msg, field.name))


def apply_defaults(cfg: config_pb2.Config) -> config_pb2.Config:
    """Fill what the .proto cannot default: hostname (the OS's), the
    repeated smtp_address (and, with no listener either, the zero-config
    submission listeners), local_domain, the Limits lists and the AUTH
    mechanisms; returns cfg."""
    if not cfg.HasField("hostname") or not cfg.hostname:
        cfg.hostname = socket.getfqdn() or "localhost"
    if not cfg.smtp_address and not cfg.listener:
        cfg.smtp_address.extend(DEFAULT_SMTP_ADDRESS)
        for address, mode in DEFAULT_SUBMISSION_LISTENERS:
            cfg.listener.add(address=address, mode=mode)
    for name, levels in DEFAULT_LIMITS.items():
        values = getattr(cfg.limits, name)
        if not values:
            values.extend(levels)
    if not cfg.auth.mechanism:
        cfg.auth.mechanism.extend(AUTH_MECHANISMS)
    if not cfg.local_domain:
        for name in DEFAULT_LOCAL_DOMAINS:
            cfg.local_domain.add(name=name)
    if not cfg.checks.authserv_id:
        cfg.checks.authserv_id = cfg.hostname
    if not cfg.srs.domain:
        cfg.srs.domain = cfg.hostname
    return cfg


def default_config() -> config_pb2.Config:
    """The whole default configuration, every field explicit."""
    cfg = apply_defaults(config_pb2.Config())
    _fill_defaults(cfg)
    return cfg


def format_config(cfg: config_pb2.Config) -> str:
    """Text-format rendering (what `estafeta config defaults` prints)."""
    return text_format.MessageToString(cfg, as_utf8=True)


def _line_of(text: str, field: str, value: str | None = None) -> int:
    """Best-effort line number of `field` (with `value`) in the file text."""
    for no, line in enumerate(text.splitlines(), 1):
        if re.search(rf"\b{re.escape(field)}\b", line) and (value is None or value in line):
            return no
    return 0


def _check(cfg: config_pb2.Config, where: str, text: str) -> None:
    """Semantic checks text_format cannot make. Raises ConfigError."""

    def fail(field: str, value: str | None, why: str) -> None:
        line = _line_of(text, field, value)
        loc = f"{where}:{line}" if line else where
        raise ConfigError(f"{loc}: {field}: {why}")

    if not cfg.hostname.strip():
        fail("hostname", None, "must not be empty")
    try:
        check_domain(cfg.hostname)
    except ValueError as e:
        fail("hostname", cfg.hostname, str(e))
    if not cfg.data_dir.strip():
        fail("data_dir", None, "must not be empty (a directory path)")
    _check_addresses(cfg, fail)
    _check_users(cfg, fail)
    _check_local_domains(cfg, fail)
    _check_chaos(cfg, fail)
    _check_numbers(cfg, fail)
    _check_dns(cfg, fail)
    if cfg.log_level.lower() not in ("debug", "info", "warning", "error"):
        fail("log_level", cfg.log_level, f'"{cfg.log_level}" is not one of debug, info, warning, error')
    _check_auth(cfg, fail)


def _check_addresses(cfg: config_pb2.Config, fail) -> None:
    """smtp_address, relay_network, http_address and http_token_file."""
    for addr in cfg.smtp_address:
        try:
            parse_listen_address(addr)
        except ValueError as e:
            fail("smtp_address", addr, str(e))
    for net in cfg.relay_network:
        try:  # as actors/policy.py RelayPolicy reads it
            ipaddress.ip_network(net.strip(), strict=False)
        except ValueError:
            fail("relay_network", net, f'"{net}" is not an IP network ("192.0.2.0/24", "2001:db8::/32", "127.0.0.1")')
    if cfg.http_address:
        try:
            parse_listen_address(cfg.http_address)
        except ValueError as e:
            fail("http_address", cfg.http_address, str(e))
        if cfg.http_address in cfg.smtp_address:
            fail("http_address", cfg.http_address, "is also an smtp_address")
    if not cfg.http_token_file.strip() or "\0" in cfg.http_token_file:
        fail("http_token_file", None, "must name a file")


def _check_local_domains(cfg: config_pb2.Config, fail) -> None:
    """Every local_domain named, a domain name, listed once; its users
    local parts."""
    seen = set()
    for d in cfg.local_domain:
        if not d.name:
            fail("local_domain", None, "every local_domain needs a name")
        try:
            norm = check_domain(d.name)
        except ValueError as e:
            fail("name", d.name, str(e))
        if norm in seen:
            fail("name", d.name, f'domain "{d.name}" is listed twice')
        seen.add(norm)
        for user in d.user:
            if not user or "@" in user or "/" in user:
                fail("user", user, f'"{user}" is not a local part')


def _check_chaos(cfg: config_pb2.Config, fail) -> None:
    """Config.chaos: known actor classes, probabilities in [0, 1]."""
    for c in cfg.chaos.crash:
        if c.actor not in CHAOS_ACTORS:
            fail("actor", c.actor, f'unknown actor class "{c.actor}" (one of: {", ".join(sorted(CHAOS_ACTORS))})')
        if not 0.0 <= c.probability <= 1.0:
            fail("probability", None, f"{c.probability} is not between 0 and 1")


def _check_numbers(cfg: config_pb2.Config, fail) -> None:
    """Sizes, counts and timeouts that must be positive; processes at most
    MAX_PROCESSES."""
    positive = {
        "max_data_size_bytes": cfg.max_data_size_bytes,
        "max_recipients": cfg.max_recipients,
        "max_connections": cfg.max_connections,
        "idle_timeout_seconds": cfg.idle_timeout_seconds,
        "data_timeout_seconds": cfg.data_timeout_seconds,
        "local_delivery_concurrency": cfg.local_delivery_concurrency,
        "quarantine_after_crashes": cfg.quarantine_after_crashes,
        "queue_sweep_seconds": cfg.queue_sweep_seconds,
        "initial_seconds": cfg.retry.initial_seconds,
        "max_seconds": cfg.retry.max_seconds,
    }
    for name, value in positive.items():
        if value <= 0:
            fail(name, None, f"must be greater than 0, not {value}")
    if cfg.processes > MAX_PROCESSES:
        fail("processes", None, f"{cfg.processes} is more than {MAX_PROCESSES}")


# RFC 8601 §2.2: authserv-id is a "value" (RFC 2045 token or quoted-string);
# we take a token, as every implementation writes a host name there.
_AUTHSERV_ID = re.compile(r"[!#-'*+.0-9A-Z^-~-]+")


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def dns_domain(name: str) -> str:
    """`name` normalised (normalize_domain) and checked as a DNS name: labels
    of 1-63 letters, digits, hyphens (not first or last) or underscores,
    253 octets at most (RFC 1035 §2.3.4). Raises ValueError."""
    norm = normalize_domain(name)
    if not norm or len(norm) > 253 or not all(_LABEL.fullmatch(label) for label in norm.split(".")):
        raise ValueError(f'"{name}" is not a domain name')
    return norm


def _check_auth(cfg: config_pb2.Config, fail) -> None:
    """Checks of Config.checks, Config.dkim_signing and Config.srs."""
    c = cfg.checks
    if not _AUTHSERV_ID.fullmatch(c.authserv_id):
        fail("authserv_id", c.authserv_id, f'"{c.authserv_id}" is not a token (RFC 8601 §2.2), e.g. a host name')
    for sealer in c.trusted_arc_sealer:
        try:
            dns_domain(sealer)
        except ValueError as e:
            fail("trusted_arc_sealer", sealer, str(e))
    if c.dkim_min_rsa_bits < 1024:
        fail("dkim_min_rsa_bits", None, f"{c.dkim_min_rsa_bits} is less than 1024 (RFC 8301 §3.2)")
    for name, value in (
        ("spf_timeout_seconds", c.spf_timeout_seconds),
        ("dmarc_report_retention_seconds", c.dmarc_report_retention_seconds),
        ("threshold", c.dnsbl.threshold),
    ):
        if value <= 0:
            fail(name, None, f"must be greater than 0, not {value}")
    for z in c.dnsbl.zone:
        if not z.name.strip():
            fail("zone", None, "every dnsbl zone needs a name")
        try:
            dns_domain(z.name)
        except ValueError as e:
            fail("name", z.name, str(e))
        if z.weight <= 0:
            fail("weight", None, f"must be greater than 0, not {z.weight}")
    s = cfg.srs
    try:
        dns_domain(s.domain)
    except ValueError as e:
        fail("domain", s.domain, str(e))
    if "." not in s.domain.strip(".") and s.enabled:
        fail("domain", s.domain, f'"{s.domain}" is not a fully qualified domain (bounces must reach it)')
    if not 4 <= s.hash_length <= 27:
        fail("hash_length", None, f"{s.hash_length} is not between 4 and 27")
    if not 1 <= s.max_age_days <= 1023:
        fail("max_age_days", None, f"{s.max_age_days} is not between 1 and 1023")


def _check_dns(cfg: config_pb2.Config, fail) -> None:
    """Config.resolver and Config.dns (actors/dns.py)."""
    for addr in cfg.resolver:
        try:
            parse_resolver_address(addr)
        except ValueError as e:
            fail("resolver", addr, str(e))
    d = cfg.dns
    if d.timeout_seconds <= 0:
        fail("timeout_seconds", None, f"must be greater than 0, not {d.timeout_seconds}")
    if d.attempts < 1:
        fail("attempts", None, "must be at least 1")
    for name in ("max_ttl_seconds", "max_negative_ttl_seconds"):
        if getattr(d, name) < 0:
            fail(name, None, f"must not be negative, not {getattr(d, name)}")
    if d.purge_interval_seconds <= 0:
        fail("purge_interval_seconds", None, f"must be greater than 0, not {d.purge_interval_seconds}")
    # RFC 9520 §3.2: a resolution failure is cached at most 5 minutes.
    if not 0 <= d.failure_ttl_seconds <= 300:
        fail("failure_ttl_seconds", None, f"must be between 0 and 300, not {d.failure_ttl_seconds}")


def _check_users(cfg: config_pb2.Config, fail) -> None:
    """Semantic checks of the fields 50-69 (listeners, TLS, users, aliases,
    limits, AUTH, privileges); `fail(field, value, why)` raises."""
    bound: dict[tuple[str, int], str] = {}
    for entry in cfg.listener:
        if not entry.address:
            fail("listener", None, "every listener needs an address")
        try:
            parse_listen_address(entry.address)
        except ValueError as e:
            fail("address", entry.address, str(e))
    for spec in listener_specs(cfg):
        key = (spec.address.host, spec.address.port)
        if key in bound:
            fail(
                "address" if spec.text not in cfg.smtp_address else "smtp_address",
                spec.text,
                f"{spec.text} is listed twice (as {bound[key]} and {spec.name})",
            )
        bound[key] = spec.name
    for name in ("directory_poll_seconds", "maildrop_poll_seconds"):
        if getattr(cfg, name) <= 0:
            fail(name, None, f"must be greater than 0, not {getattr(cfg, name)}")
    if cfg.tls.reload_poll_seconds <= 0:
        fail("reload_poll_seconds", None, f"must be greater than 0, not {cfg.tls.reload_poll_seconds}")
    if cfg.tls.cert_dir and not os.path.isdir(cfg.tls.cert_dir):
        fail("cert_dir", cfg.tls.cert_dir, f'"{cfg.tls.cert_dir}" is not a directory')
    both = set(cfg.suffix_separators) & set(cfg.drop_characters)
    if both:
        name = "drop_characters" if cfg.HasField("drop_characters") else "suffix_separators"
        fail(name, None, f"{''.join(sorted(both))!r} is both a drop character and a suffix separator")
    for chars, field in ((cfg.suffix_separators, "suffix_separators"), (cfg.drop_characters, "drop_characters")):
        bad = [c for c in chars if c in '@"\\ ' or not c.isprintable() or not c.isascii()]
        if bad:
            fail(field, None, f"{bad[0]!r} cannot be used (printable ASCII other than @, quote, backslash, space)")
    for name in DEFAULT_LIMITS:
        values = getattr(cfg.limits, name)
        if len(values) != 3:
            fail(name, None, f"needs 3 numbers (the /32, /26, /21 and /64, /48, /32 levels), not {len(values)}")
    if cfg.limits.auth_failure_delay_seconds < 0:
        fail("auth_failure_delay_seconds", None, "must not be negative")
    for mech in cfg.auth.mechanism:
        if mech.upper() not in AUTH_MECHANISMS:
            fail("mechanism", mech, f'unknown SASL mechanism "{mech}" (one of: {", ".join(AUTH_MECHANISMS)})')
    if cfg.group and not cfg.user:
        fail("group", cfg.group, "needs `user` too")
    if cfg.user:
        import pwd

        try:
            pwd.getpwuid(int(cfg.user)) if cfg.user.isdigit() else pwd.getpwnam(cfg.user)
        except (KeyError, OverflowError):
            fail("user", cfg.user, f'no such user "{cfg.user}"')
    if cfg.group:
        import grp

        try:
            grp.getgrgid(int(cfg.group)) if cfg.group.isdigit() else grp.getgrnam(cfg.group)
        except (KeyError, OverflowError):
            fail("group", cfg.group, f'no such group "{cfg.group}"')


#: Most serving processes (Config.processes): a queue id names its process
#: in one hex digit.
MAX_PROCESSES = 16
#: Config.processes 0 means one per CPU, but at most this many.
AUTO_PROCESSES_MAX = 4


def process_count(cfg: config_pb2.Config) -> int:
    """How many serving processes Config.processes asks for (0: one per
    CPU, at most AUTO_PROCESSES_MAX)."""
    if cfg.processes:
        return min(cfg.processes, MAX_PROCESSES)
    return max(1, min(os.cpu_count() or 1, AUTO_PROCESSES_MAX))


def parse_config(text: str, where: str = "<config>") -> config_pb2.Config:
    """Parse and check config text; defaults applied. Raises ConfigError."""
    cfg = config_pb2.Config()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        # ParseError's str() is "line:col : message"; keep the location.
        line, col = e.GetLine(), e.GetColumn()
        msg = str(e)
        msg = re.sub(r"^\d+:\d+ : ", "", msg)
        loc = f"{where}:{line}:{col}" if line else where
        raise ConfigError(f"{loc}: {msg}") from None
    apply_defaults(cfg)
    _check(cfg, where, text)
    return cfg


def load_config(path: str | None, data_dir: str | None = None) -> config_pb2.Config:
    """Read the config file at `path` (None: embedded defaults), then apply
    the --data-dir override. Raises ConfigError naming the file."""
    if path is None:
        cfg = apply_defaults(config_pb2.Config())
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
        cfg = parse_config(text, path)
    if data_dir:
        cfg.data_dir = data_dir
    return cfg
