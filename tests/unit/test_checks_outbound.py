"""actors/checks/outbound.py: signing for the From domain, SRS, ARC sealing
of forwarded mail, decoding bounces."""

from fakedns import FakeDns

from estafeta.actors.checks import dkimkeys
from estafeta.actors.checks.arc import verify_arc
from estafeta.actors.checks.authresults import build
from estafeta.actors.checks.dkim_verify import verify_dkim
from estafeta.actors.checks.outbound import Outbound
from estafeta.actors.checks.spf import SpfResult
from estafeta.supervisor.config import parse_config


def msg(from_addr):
    return f"From: {from_addr}\r\nTo: x@example.net\r\nSubject: s\r\n\r\nbody\r\n".encode()


def config(tmp_path, extra=""):
    return parse_config(f'hostname: "mx.ours.test"\ndata_dir: "{tmp_path}"\n' + extra)


def test_signs_for_the_from_domain_or_its_organisational_domain(tmp_path):
    d = str(tmp_path)
    dkimkeys.write_key(d, "ours.test", "r", dkimkeys.RSA)
    dkimkeys.write_key(d, "ours.test", "e", dkimkeys.ED25519)
    out = Outbound.from_config(config(tmp_path))
    dns = FakeDns({k.record_name(): {"TXT": [k.record()]} for k in dkimkeys.load_keys(d, "ours.test")})
    m = msg("alice@ours.test")
    sig = out.dkim_signature(m)
    assert sig.count(b"DKIM-Signature:") == 2 and verify_dkim(dns, sig + m).trusted_domains() == ("ours.test",) * 2
    sub = msg("alice@news.ours.test")
    assert out.signing_domain(sub) == "ours.test" and b"d=ours.test" in out.dkim_signature(sub)
    assert out.dkim_signature(msg("alice@other.test")) == b""
    assert out.dkim_signature(b"Subject: no from\r\n\r\nx\r\n") == b""
    off = Outbound.from_config(config(tmp_path, "dkim_signing { enabled: false }\n"))
    assert off.dkim_signature(m) == b""


def test_forward_with_srs_and_arc_and_the_bounce(tmp_path):
    d = str(tmp_path)
    _, key = dkimkeys.write_key(d, "fwd.test", "arc", dkimkeys.RSA)
    out = Outbound.from_config(config(tmp_path, 'srs { enabled: true domain: "fwd.test" }\n'))
    assert (tmp_path / "srs.secret").exists()
    spf = SpfResult("pass", "mailfrom", "example.net", "alice@example.net", "h", "")
    arriving = build("mx.ours.test", spf=spf, arc=verify_arc(FakeDns(), msg("a@example.net"))) + msg("a@example.net")
    path, arc = out.forward(arriving, "alice@example.net", "fwd.test")
    assert path.startswith("SRS0=") and path.endswith("@fwd.test")
    assert arc.startswith(b"ARC-Seal: i=1;")
    sealed = verify_arc(FakeDns({key.record_name(): {"TXT": [key.record()]}}), arc + arriving)
    assert (sealed.result, sealed.sealer) == ("pass", "fwd.test")
    assert out.bounce_to(path) == "alice@example.net"
    assert out.bounce_to(path.replace("@fwd.test", "@elsewhere.test")) is None
    assert out.bounce_to("SRS0=xxxx=AA=example.net=alice@fwd.test") is None
    assert out.bounce_to("alice@fwd.test") is None
    assert out.forward(arriving, "", "fwd.test")[0] == ""
    # without SRS the reverse-path stays; without a key, no seal
    plain = Outbound.from_config(config(tmp_path))
    assert plain.forward(arriving, "alice@example.net", "nokey.test") == ("alice@example.net", b"")
    assert plain.bounce_to(path) is None
