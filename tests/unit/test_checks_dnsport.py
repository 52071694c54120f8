"""actors/checks/dnsport.py: the Recorder in front of the resolver."""

from fakedns import FakeDns

from estafeta.actors.checks.dkim_verify import verify_dkim
from estafeta.actors.checks.dnsport import Recorder, is_temporary_rcode


class Refusing(FakeDns):
    """Like actors.dns.Resolver: ValueError for a name that cannot be one."""

    def query(self, name, rdtype, *, context=None, trace_cached=True):
        if ".." in name or len(name) > 253:
            raise ValueError(f"{name!r} is not a valid domain name")
        return super().query(name, rdtype, context=context)


def test_recorder_records_and_passes_the_context():
    seen = []

    class Spy(FakeDns):
        def query(self, name, rdtype, *, context=None, trace_cached=True):
            seen.append(context)
            return super().query(name, rdtype, context=context)

    r = Recorder(Spy({"a.example": {"TXT": ["x"]}}), context="ctx")
    assert r.query("A.Example.", "TXT").records == ("x",)
    assert [str(x) for x in r.recorded()] == ["TXT a.example NOERROR 1"] and seen == ["ctx"]


def test_a_name_the_resolver_refuses_is_no_such_name():
    r = Recorder(Refusing())
    a = r.query("bad..name", "TXT")
    assert (a.rcode, a.records) == ("NXDOMAIN", ())
    assert [str(x) for x in r.recorded()] == ["TXT bad..name BADNAME 0"]
    # a DKIM signature whose selector makes no domain name: permerror, no crash
    msg = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=bad.; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.org\r\n\r\nx\r\n"
    res = verify_dkim(Refusing(), msg)
    assert res.signatures[0].result == "permerror"


def test_temporary_rcodes():
    assert not is_temporary_rcode("NOERROR") and not is_temporary_rcode("NXDOMAIN")
    assert all(is_temporary_rcode(x) for x in ("SERVFAIL", "TIMEOUT", "REFUSED", "FORMERR"))
