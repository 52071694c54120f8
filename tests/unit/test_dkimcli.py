"""`estafeta dkim keygen | check` (supervisor/dkimcli.py), DNS faked; the
same against a real DNS server is in tests/e2e/test_checks_dns.py."""

import io
import os

from fakedns import FakeDns

from estafeta.actors.checks import dkimkeys
from estafeta.supervisor import cli, dkimcli
from estafeta.supervisor.config import load_config


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(argv)
    cfg = load_config(None, args.data_dir)
    return dkimcli.run(args, cfg, out, err), out.getvalue(), err.getvalue()


def test_keygen_both_and_one(tmp_path):
    rc, out, err = run(["dkim", "keygen", "Example.ORG", "--data-dir", str(tmp_path)])
    assert rc == 0, err
    keys = dkimkeys.load_keys(str(tmp_path), "example.org")
    assert [k.algorithm for k in keys] == [dkimkeys.RSA, dkimkeys.ED25519]
    for k in keys:
        assert k.zone_line() in out
        assert os.stat(dkimkeys.key_path(str(tmp_path), "example.org", k.selector)).st_mode & 0o777 == 0o600
    rc, out, err = run(
        ["dkim", "keygen", "example.org", "--selector", "s2", "--algorithm", "ed25519", "--data-dir", str(tmp_path)]
    )
    assert rc == 0 and "s2._domainkey.example.org. IN TXT" in out
    rc, out, err = run(
        ["dkim", "keygen", "example.org", "--selector", "s2", "--algorithm", "rsa", "--data-dir", str(tmp_path)]
    )
    assert rc == 1 and "exists" in err
    rc, out, err = run(["dkim", "keygen", "example.org", "--selector", "s3", "--data-dir", str(tmp_path)])
    assert rc == 2 and "--algorithm" in err
    rc, out, err = run(["dkim", "keygen", "bad..name", "--data-dir", str(tmp_path)])
    assert rc == 2 and "not a domain name" in err
    assert not os.path.exists(tmp_path / "dkim" / "bad..name")


def test_check_reports_each_key(tmp_path):
    d = str(tmp_path)
    _, good = dkimkeys.write_key(d, "example.org", "good", dkimkeys.ED25519)
    _, other = dkimkeys.write_key(d, "example.org", "other", dkimkeys.RSA)
    _, gone = dkimkeys.write_key(d, "example.org", "gone", dkimkeys.ED25519)
    _, down = dkimkeys.write_key(d, "example.org", "down", dkimkeys.ED25519)
    dns = FakeDns(
        {
            good.record_name(): {"TXT": [good.record().replace("; ", ";")]},
            other.record_name(): {"TXT": [good.record()]},
            down.record_name(): "SERVFAIL",
        }
    )
    out = io.StringIO()
    assert dkimcli.cmd_check(d, "example.org", dns, out) == 1
    lines = out.getvalue().splitlines()
    status = {line.split()[1]: (line.split()[0], line) for line in lines if not line.startswith(" ")}
    assert status["good._domainkey.example.org"][0] == "ok"
    assert (
        status["other._domainkey.example.org"][0] == "FAIL"
        and "another key" in status["other._domainkey.example.org"][1]
    )
    assert "not published (NXDOMAIN)" in status["gone._domainkey.example.org"][1]
    assert "DNS SERVFAIL" in status["down._domainkey.example.org"][1]
    assert sum(1 for line in lines if line.startswith("      publish: ")) == 3
    only_good = FakeDns({good.record_name(): {"TXT": [good.record()]}})
    for k in (other, gone, down):
        os.unlink(dkimkeys.key_path(d, "example.org", k.selector))
    assert dkimcli.cmd_check(d, "example.org", only_good, io.StringIO()) == 0
    err = io.StringIO()
    assert dkimcli.cmd_check(d, "none.example", only_good, io.StringIO(), err) == 2 and "no DKIM keys" in err.getvalue()


def test_nameserver_option():
    cfg = load_config(None)
    cfg.resolver.append("192.0.2.1:53")
    assert dkimcli.resolver_for(cfg, None).nameservers == ("192.0.2.1:53",)
    for text, want in (
        ("192.0.2.53", "192.0.2.53:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        ("[::1]:54", "[::1]:54"),
        ("::1", "[::1]:53"),
    ):
        assert dkimcli.resolver_for(cfg, text).nameservers == (want,)
