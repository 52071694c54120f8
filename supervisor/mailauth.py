"""Mail authentication in the application's tree (supervisor/app.py): the
pieces of actors/checks/ one serving process shares.

    parts = mail_auth(cfg, data_dir, dns_view, tracer, process)
    parts.outbound   Outbound: DKIM keys, SRS, ARC sealing (the Enqueuer's)
    parts.checks     MailAuth: the sessions' checks (None: Config.checks off)
    parts.reports    ReportBuffer: DMARC evaluations, written by ...
    parts.children   ... the "reports" actor (actors/reports.py), a root
                     child after "dns" (it must outlive the sessions)

The checks take the DnsResolver's DnsView as their DNS port: every lookup
goes through the process's caching Resolver and is a dns.* span under its
check's span.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from opentelemetry import trace

from estafeta.actors.checks.dmarc import org_domain
from estafeta.actors.checks.outbound import Outbound
from estafeta.actors.checks.session import MailAuth
from estafeta.actors.dns import DnsView
from estafeta.actors.reports import DmarcReports, ReportBuffer
from estafeta.proto import config_pb2
from estafeta.store.dmarcreports import FILE_NAME
from estafeta.supervisor import registry
from estafeta.supervisor.tree import ChildSpec


@dataclass
class MailAuthParts:
    """What mail_auth() builds (see the module docstring)."""

    outbound: Outbound
    checks: MailAuth | None
    reports: ReportBuffer
    children: list[ChildSpec] = field(default_factory=list)


def mail_auth(
    cfg: config_pb2.Config, data_dir: str, dns_view: DnsView, tracer: trace.Tracer, process: int = 0
) -> MailAuthParts:
    """The mail authentication of serving process `process` (only process
    0 trims the report store). Raises OSError when the SRS secret cannot be
    made or read (Config.srs.enabled)."""
    outbound = Outbound.from_config(cfg)
    # The Public Suffix List (DMARC's and the signer's organisational
    # domains) is parsed now, not by the first message (~50 ms).
    org_domain("example.com")
    reports = ReportBuffer()
    checks = MailAuth.from_config(cfg, dns_view, tracer, reports)
    children = []
    if checks is not None and cfg.checks.dmarc:
        path = os.path.join(os.path.abspath(data_dir), FILE_NAME)
        retention = cfg.checks.dmarc_report_retention_seconds

        def start(link, _args):
            ref = DmarcReports.start(link, path, reports, retention, trims=process == 0)
            return registry.register("reports", ref)

        children.append(ChildSpec(id="reports", start=start, restart="permanent", shutdown=5.0))
    return MailAuthParts(outbound, checks, reports, children)
