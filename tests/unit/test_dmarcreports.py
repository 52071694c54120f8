"""The DMARC evaluations kept for aggregate reports (store/dmarcreports.py)."""

import sqlite3

from fakedns import FakeDns

from estafeta.actors.checks.dkim_verify import DkimResult, DkimSignature
from estafeta.actors.checks.dmarc import evaluate_dmarc
from estafeta.actors.checks.spf import SpfResult
from estafeta.store.dmarcreports import DmarcReportStore, row_of


def evaluation(from_domain="example.com", spf_domain="other.example"):
    dns = FakeDns({"_dmarc.example.com": {"TXT": ["v=DMARC1; p=quarantine; sp=reject; adkim=s; pct=50"]}})
    spf = SpfResult("pass", "mailfrom", spf_domain, f"b@{spf_domain}", "h", "")
    dkim = DkimResult((DkimSignature("pass", "example.com", "sel", "rsa-sha256", "", None, "b"),))
    return evaluate_dmarc(dns, from_domain, spf=spf, dkim=dkim, sample=0), dkim


def test_rows_keep_what_an_aggregate_report_needs(tmp_path):
    store = DmarcReportStore.in_data_dir(str(tmp_path), retention_seconds=3600)
    result, dkim = evaluation()
    store.add(
        row_of(
            result,
            dkim,
            source_ip="192.0.2.1",
            envelope_from="B@Other.Example",
            envelope_to="x@Our.Example",
            now=1000.0,
        )
    )
    fail, _ = evaluation(from_domain="news.example.com", spf_domain="news.example.com")
    store.add_many([row_of(fail, None, source_ip="2001:db8::1", envelope_from="", now=2000.0)])
    rows = list(store.evaluations())
    assert len(rows) == 2
    a, b = rows
    assert (a.time, a.source_ip, a.header_from, a.envelope_from, a.envelope_to) == (
        1000.0,
        "192.0.2.1",
        "example.com",
        "other.example",
        "our.example",
    )
    assert (a.policy_domain, a.p, a.sp, a.adkim, a.aspf, a.pct) == ("example.com", "quarantine", "reject", "s", "r", 50)
    assert (a.result, a.disposition, a.spf_aligned, a.dkim_aligned) == ("pass", "none", False, True)
    assert a.dkim == [{"domain": "example.com", "selector": "sel", "result": "pass"}]
    assert (b.result, b.disposition, b.header_from, b.spf_aligned) == ("pass", "none", "news.example.com", True)
    assert [r.id for r in store.evaluations(since=1500)] == [b.id]
    assert [r.id for r in store.evaluations(header_from="Example.com")] == [a.id]
    assert store.trim(now=1000.0 + 3600 + 1) == 1
    assert [r.id for r in store.evaluations()] == [b.id]
    store.close()
    # WAL mode: a reader sees the rows while the writer is open
    again = DmarcReportStore.in_data_dir(str(tmp_path))
    assert sqlite3.connect(str(tmp_path / "dmarc.db")).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(list(again.evaluations())) == 1


def test_a_failure_without_policy_fields(tmp_path):
    store = DmarcReportStore(str(tmp_path / "sub" / "d.db"))
    none = evaluate_dmarc(FakeDns(), "example.net", spf=None, dkim=None)
    store.add(row_of(none, None, source_ip="192.0.2.2", envelope_from="a@example.net"))
    (r,) = store.evaluations()
    assert (r.result, r.policy_domain, r.p, r.pct, r.dkim) == ("none", "", "", None, [])
