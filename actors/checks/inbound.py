"""The checks of one SMTP session, in the order and at the points the RFCs
put them, each in its span — what the session calls (actors/session.py).

    checks = InboundChecks(CheckSettings.from_config(cfg), resolver, tracer)
    reply = checks.at_connect(client_ip, context)          # DNSBL, iprev
    checks.at_mail(helo, reverse_path, context)           # SPF (RFC 7208 §2.4)
    verdict = checks.at_end_of_data(message, context)     # DKIM, ARC, DMARC, Authentication-Results

- at connect: DNSBL (a listed client gets 554 5.7.1 instead of the
  greeting, RFC 5321 §3.1) and iprev (RFC 8601 §3: reported only);
- at MAIL FROM: SPF of the reverse-path, or of HELO for <> (RFC 7208
  §2.4: at MAIL, so its verdict is there for the rest; reported, not
  enforced: DMARC decides);
- at the end of DATA (the whole message is needed): incoming
  Authentication-Results claiming our authserv-id removed (RFC 8601 §5),
  DKIM, ARC, DMARC, our Authentication-Results prepended; the verdict
  says accept / quarantine (Junk) / reject (550 5.7.1), and carries the
  row to keep for DMARC reports.

Each check runs in a span ``check.<name>`` (a child of `context`, the
transaction's or the session's span context) with the result's
attributes; its DNS lookups are spans under it (the Resolver's). Only for
SMTP-mode listeners and unauthenticated clients: the session does not call
these for submission or relay_network clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from estafeta.actors.checks.arc import ArcResult, verify_arc
from estafeta.actors.checks.authresults import build, remove_ours
from estafeta.actors.checks.dkim_verify import DkimResult, verify_dkim
from estafeta.actors.checks.dmarc import DmarcResult, action, evaluate_dmarc, reject_reply
from estafeta.actors.checks.dnsbl import DnsblResult, DnsblZone, check_dnsbl
from estafeta.actors.checks.dnsport import DnsPort
from estafeta.actors.checks.iprev import IprevResult, check_iprev
from estafeta.actors.checks.message import FromError, from_domain
from estafeta.actors.checks.spf import SpfResult, check_spf
from estafeta.actors.smtp.replies import Reply
from estafeta.store.dmarcreports import row_of


@dataclass(frozen=True)
class CheckSettings:
    """Config.checks, as the checks use it (see proto/config.proto)."""

    authserv_id: str
    enabled: bool = True
    spf: bool = True
    dkim: bool = True
    dmarc: bool = True
    iprev: bool = True
    arc: bool = True
    enforce_dmarc_reject: bool = True
    dkim_trust_body_length: bool = False
    dkim_min_rsa_bits: int = 1024
    trusted_arc_sealers: tuple[str, ...] = ()
    spf_timeout_seconds: float = 20.0
    dnsbl_zones: tuple[DnsblZone, ...] = ()
    dnsbl_threshold: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> CheckSettings:
        c = cfg.checks
        return cls(
            authserv_id=c.authserv_id or cfg.hostname,
            enabled=c.enabled,
            spf=c.spf,
            dkim=c.dkim,
            dmarc=c.dmarc,
            iprev=c.iprev,
            arc=c.arc,
            enforce_dmarc_reject=c.enforce_dmarc_reject,
            dkim_trust_body_length=c.dkim_trust_body_length,
            dkim_min_rsa_bits=c.dkim_min_rsa_bits,
            trusted_arc_sealers=tuple(c.trusted_arc_sealer),
            spf_timeout_seconds=c.spf_timeout_seconds,
            dnsbl_zones=tuple(DnsblZone(z.name, z.weight) for z in c.dnsbl.zone),
            dnsbl_threshold=c.dnsbl.threshold,
        )


@dataclass(frozen=True)
class Verdict:
    """What the end of DATA decides.

    - message: the message to queue — incoming Authentication-Results with
      our authserv-id removed, ours prepended (the session then prepends
      its Received field above it);
    - action: "accept", "quarantine" (deliver to the recipients' Junk
      folder, marked) or "reject";
    - reply: 550 5.7.1 for "reject", else None;
    - dmarc, dkim, arc: the results (None for a check that did not run);
    - removed: how many forged Authentication-Results were removed.
    """

    message: bytes
    action: str = "accept"
    reply: Reply | None = None
    dmarc: DmarcResult | None = None
    dkim: DkimResult | None = None
    arc: ArcResult | None = None
    removed: int = 0

    def report_row(self, source_ip: str, envelope_from: str, envelope_to: str = "") -> dict | None:
        """The row to keep for DMARC aggregate reports
        (store.dmarcreports.DmarcReportStore.add), or None when there is
        nothing to report (DMARC off, or no policy published)."""
        if self.dmarc is None or self.dmarc.policy is None:
            return None
        return row_of(self.dmarc, self.dkim, source_ip=source_ip, envelope_from=envelope_from, envelope_to=envelope_to)


def run_check(tracer: trace.Tracer | None, context: Any, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run check `fn(*args, context=<span context>, **kwargs)` in a span
    ``check.<name>`` under `context`; the result's attributes() go on the
    span. Without a tracer the check runs with `context` as given."""
    if tracer is None:
        return fn(*args, context=context, **kwargs)
    span = tracer.start_span(f"check.{name}", context=context)
    try:
        result = fn(*args, context=trace.set_span_in_context(span, context), **kwargs)
        span.set_attributes(result.attributes())
        if getattr(result, "result", "") in ("temperror", "permerror"):
            span.set_status(Status(StatusCode.ERROR, f"{name}={result.result}"))
        return result
    finally:
        span.end()


class InboundChecks:
    """The checks of one session (see the module docstring). Not shared
    between sessions: it keeps the connect and MAIL results for the end of
    DATA."""

    def __init__(self, settings: CheckSettings, resolver: DnsPort, tracer: trace.Tracer | None = None) -> None:
        self.settings = settings
        self.resolver = resolver
        self.tracer = tracer
        self.client_ip = ""
        self.helo = ""
        self.iprev: IprevResult | None = None
        self.dnsbl: DnsblResult | None = None
        self.spf: SpfResult | None = None

    def at_connect(self, client_ip: str, context: Any = None) -> Reply | None:
        """DNSBL then iprev for the client at `client_ip`. Returns the
        554 5.7.1 reply for a listed client (say it instead of the greeting
        and close), else None."""
        s = self.settings
        self.client_ip = client_ip
        if not s.enabled:
            return None
        if s.dnsbl_zones:
            self.dnsbl = run_check(
                self.tracer, context, "dnsbl", check_dnsbl, self.resolver, client_ip, s.dnsbl_zones, s.dnsbl_threshold
            )
            reply = self.dnsbl.reply()
            if reply is not None:
                return reply
        if s.iprev:
            self.iprev = run_check(self.tracer, context, "iprev", check_iprev, self.resolver, client_ip)
        return None

    def at_mail(self, helo: str, reverse_path: str, context: Any = None) -> SpfResult | None:
        """SPF for MAIL FROM:<reverse_path> ("" for <>) after HELO/EHLO
        `helo`; kept for the end of DATA (each MAIL replaces it)."""
        self.helo = helo
        self.spf = None
        s = self.settings
        if s.enabled and s.spf:
            self.spf = run_check(
                self.tracer,
                context,
                "spf",
                check_spf,
                self.resolver,
                self.client_ip,
                helo,
                reverse_path,
                receiver=s.authserv_id,
                timeout=s.spf_timeout_seconds,
            )
        return self.spf

    def at_end_of_data(self, message: bytes, context: Any = None) -> Verdict:
        """DKIM, ARC, DMARC over `message` (as received, CRLF line ends,
        without our Received field); see Verdict."""
        s = self.settings
        if not s.enabled:
            return Verdict(message)
        message, removed = remove_ours(message, s.authserv_id)
        dkim = arc = dmarc = None
        if s.dkim or s.dmarc:
            dkim = run_check(
                self.tracer, context, "dkim", verify_dkim, self.resolver, message, min_rsa_bits=s.dkim_min_rsa_bits
            )
        if s.arc:
            arc = run_check(
                self.tracer, context, "arc", verify_arc, self.resolver, message, min_rsa_bits=s.dkim_min_rsa_bits
            )
        if s.dmarc:
            try:
                domain = from_domain(message)
            except FromError:
                domain = ""
            dmarc = run_check(
                self.tracer,
                context,
                "dmarc",
                evaluate_dmarc,
                self.resolver,
                domain,
                spf=self.spf,
                dkim=dkim,
                arc=arc,
                trusted_sealers=s.trusted_arc_sealers,
                trust_body_length=s.dkim_trust_body_length,
            )
        header = build(
            s.authserv_id,
            iprev=self.iprev,
            spf=self.spf,
            dkim=dkim if s.dkim else None,
            arc=arc,
            dmarc=dmarc,
        )
        what = action(dmarc, s.enforce_dmarc_reject) if dmarc is not None else "accept"
        reply = reject_reply(dmarc) if what == "reject" and dmarc is not None else None
        return Verdict(header + message, what, reply, dmarc, dkim, arc, removed)
