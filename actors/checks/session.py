"""The checks as an SMTP session runs them, and what it does with their
verdicts (actors/session.py, actors/transaction.py call these):

    auth = MailAuth.from_config(cfg, dns_view, tracer, reports)   # one per serving process; None: checks off
    checks = auth.for_session(mode, relay)                        # None: this session is not checked
    reply = checks.at_connect(client_ip, session_span)            # DNSBL, iprev: a 554 greeting, or None
    checks.at_mail(helo, reverse_path, transaction_span)          # SPF
    outcome = checks.at_end_of_data(message, reverse_path, forward_paths, transaction_span)
        # outcome.message: what to queue (below our Received field)
        # outcome.reply: 550 5.7.1 for a DMARC reject, else None
        # outcome.folder: "Junk" for a quarantined message, else ""

Who is checked: clients of SMTP-mode listeners (the MX) that are not in
relay_network; submission listeners' clients (authenticated) and
relay_network clients are ours and are not (their mail is DKIM-signed at
enqueue instead: actors/enqueue.py). Mail from our own domains arriving
from anyone else is checked like any other, so it fails our own DMARC
when it is not from our servers.

Verdicts (RFC 7489 §6.6.4, §6.7, with Config.checks.enforce_dmarc_reject):

- reject: 550 5.7.1 at the end of DATA (the message is not queued),
  counted as refused "dmarc_reject", the transaction's span marked
  estafeta.refused="dmarc_reject";
- quarantine: queued with our mark `X-Spam-Flag: YES` on top (the
  SpamAssassin field mail readers and sieve scripts know) and every local
  recipient's copy delivered into the Maildir++ folder "Junk" of its
  mailbox (Recipient.folder; store/maildir.py);
- accept: queued with our Authentication-Results.

Every checked message's DMARC evaluation (one with a published policy)
goes to the ReportBuffer, which the "reports" actor writes to
<data_dir>/dmarc.db (actors/reports.py). Each check is a span
``check.<name>`` under the session's span (at connect) or the
transaction's (MAIL, end of DATA), with its DNS lookups under it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from estafeta.actors.checks.dnsport import DnsPort
from estafeta.actors.checks.inbound import CheckSettings, InboundChecks
from estafeta.actors.reports import ReportBuffer
from estafeta.actors.smtp.params import Mode
from estafeta.actors.smtp.replies import Reply
from estafeta.supervisor import metrics
from estafeta.supervisor.log import kv

log = logging.getLogger("estafeta.checks")

#: The Maildir++ folder of quarantined mail (RFC 7489 §6.3 "quarantine":
#: "place into spam folder").
JUNK = "Junk"
#: The mark a quarantined message gets on top (SpamAssassin's field).
JUNK_MARK = b"X-Spam-Flag: YES\r\n"
#: The refusal reason of a DMARC reject (metrics, estafeta.refused).
DMARC_REJECT = "dmarc_reject"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the end of DATA does with a checked message: queue `message`
    (our Authentication-Results on top, forged ones removed; the Junk mark
    when quarantined), with each local recipient's `folder` ("Junk" or
    ""), or refuse it with `reply` (550 5.7.1)."""

    message: bytes
    folder: str = ""
    reply: Reply | None = None


class MailAuth:
    """The checks of one serving process: their settings (Config.checks),
    the DNS port (the DnsResolver's DnsView), the tracer, where DMARC
    evaluations go. Makes a SessionChecks for each session that is
    checked."""

    def __init__(
        self,
        settings: CheckSettings,
        resolver: DnsPort,
        tracer: trace.Tracer | None = None,
        reports: ReportBuffer | None = None,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.tracer = tracer
        self.reports = reports

    @classmethod
    def from_config(
        cls, cfg: Any, resolver: DnsPort, tracer: trace.Tracer | None = None, reports: ReportBuffer | None = None
    ) -> MailAuth | None:
        """From Config.checks; None when the checks are off (enabled: false)."""
        if not cfg.checks.enabled:
            return None
        return cls(CheckSettings.from_config(cfg), resolver, tracer, reports)

    def for_session(self, mode: Mode, relay: bool) -> SessionChecks | None:
        """The checks of a new session on a listener of `mode`, whose client
        is (`relay`) or is not in relay_network; None when it is not
        checked (a submission listener, a relay_network client)."""
        if mode is not Mode.SMTP or relay:
            return None
        return SessionChecks(self)


class SessionChecks:
    """The checks of one session (not shared: it keeps the connect and
    MAIL results for the end of DATA). See the module docstring."""

    __slots__ = ("auth", "inbound")

    def __init__(self, auth: MailAuth) -> None:
        self.auth = auth
        self.inbound = InboundChecks(auth.settings, auth.resolver, auth.tracer)

    def at_connect(self, client_ip: str, span: trace.Span | None = None) -> Reply | None:
        """DNSBL, then iprev, of the client at `client_ip` (RFC 8601 §3),
        under `span` (the session's). Returns the 554 5.7.1 to greet a
        listed client with (RFC 5321 §3.1: then only QUIT), else None."""
        reply = self.inbound.at_connect(client_ip, _context(span))
        if reply is not None:
            metrics.count_refused("dnsbl")
            if span is not None:
                span.set_attribute("estafeta.refused", "dnsbl")
            log.info("refused from=%s reply=%s", client_ip, kv(str(reply)))
        return reply

    def at_mail(self, helo: str, reverse_path: str, span: trace.Span | None = None) -> None:
        """SPF of MAIL FROM:<reverse_path> ("" for <>: of `helo`), RFC
        7208 §2.4, under `span` (the transaction's); kept for DMARC."""
        self.inbound.at_mail(helo, reverse_path, _context(span))

    def at_end_of_data(
        self, message: bytes, reverse_path: str, recipients: list[str], span: trace.Span | None = None
    ) -> Outcome:
        """DKIM, ARC, DMARC and our Authentication-Results over `message`
        (the message as received, without our Received field), for the
        transaction's reverse-path and forward-paths, under `span`. See
        Outcome; a reject is counted and put on `span` here."""
        inbound = self.inbound
        verdict = inbound.at_end_of_data(message, _context(span))
        reports = self.auth.reports
        if reports is not None and verdict.dmarc is not None:
            row = verdict.report_row(inbound.client_ip, reverse_path, recipients[0] if recipients else "")
            if row is not None:
                reports.add(row)
        what = verdict.action
        if span is not None:
            attrs: dict[str, Any] = {"estafeta.checks.action": what}
            if verdict.removed:
                attrs["estafeta.checks.removed_authentication_results"] = verdict.removed
            span.set_attributes(attrs)
        if what == "reject" and verdict.reply is not None:
            metrics.count_refused(DMARC_REJECT)
            if span is not None:
                span.set_attribute("estafeta.refused", DMARC_REJECT)
                span.set_status(Status(StatusCode.ERROR, str(verdict.reply)))
            log.info("refused from=%s mail=<%s> reply=%s", inbound.client_ip, reverse_path, kv(str(verdict.reply)))
            return Outcome(verdict.message, reply=verdict.reply)
        if what == "quarantine":
            return Outcome(JUNK_MARK + verdict.message, folder=JUNK)
        return Outcome(verdict.message)


def _context(span: trace.Span | None) -> Any:
    return trace.set_span_in_context(span) if span is not None else None
