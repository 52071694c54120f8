"""Microbenchmark: the cost of each mail-authentication check per message
(actors/checks/), against a private Knot DNS on loopback
(tests/peers/dns_server.py) through estafeta's Resolver — cold (no cache:
every lookup goes to knot) and warm (the Resolver's cache, as in the
daemon once a sender's records are known).

    .venv/bin/python tests/bench/checks.py [N]

For each check: µs per message, best of 3 rounds of N messages (default
300), in one greenlet. The message is 1 KiB, signed by its domain with
rsa-sha256 and ed25519-sha256 (the dual signatures estafeta makes). Not a
test: numbers go to docs/PERFORMANCE.md.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from peers.dns_server import DnsServer  # noqa: E402

from estafeta.actors.checks import dkimkeys  # noqa: E402
from estafeta.actors.checks.arc import seal, verify_arc  # noqa: E402
from estafeta.actors.checks.authresults import build, remove_ours  # noqa: E402
from estafeta.actors.checks.dkim_sign import sign  # noqa: E402
from estafeta.actors.checks.dkim_verify import verify_dkim  # noqa: E402
from estafeta.actors.checks.dmarc import evaluate_dmarc  # noqa: E402
from estafeta.actors.checks.dnsbl import DnsblZone, check_dnsbl  # noqa: E402
from estafeta.actors.checks.iprev import check_iprev  # noqa: E402
from estafeta.actors.checks.message import from_domain  # noqa: E402
from estafeta.actors.checks.spf import check_spf  # noqa: E402
from estafeta.actors.checks.srs import Srs  # noqa: E402
from estafeta.actors.dns import Resolver  # noqa: E402

ROUNDS = 3
CLIENT = "192.0.2.10"
BODY = ("The quick brown fox jumps over the lazy dog. " * 20 + "\r\n") * 1


def message() -> bytes:
    head = (
        "From: Alice <alice@sender.test>\r\nTo: bob@example.org\r\nSubject: bench\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <bench@sender.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
    )
    body = BODY
    while len(head) + len(body) < 1024:
        body += "More text for a kilobyte of message.\r\n"
    return (head + body).encode()


def zones(data_dir: str) -> dict[str, str]:
    keys = "\n".join(k.zone_line() for k in dkimkeys.load_keys(data_dir, "sender.test"))
    return {
        "sender.test": (
            '@ TXT "v=spf1 include:_spf.sender.test -all"\n'
            '_spf TXT "v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.0/24 -all"\n'
            '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@sender.test"\n'
            "mx A 192.0.2.10\n" + keys
        ),
        "2.0.192.in-addr.arpa": "10 PTR mx.sender.test.",
        "bl.test": "",
    }


def bench(name: str, fn, n: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    data_dir = tempfile.mkdtemp(prefix="estafeta-bench-checks-")
    dkimkeys.write_key(data_dir, "sender.test", "rsa", dkimkeys.RSA)
    dkimkeys.write_key(data_dir, "sender.test", "ed", dkimkeys.ED25519)
    keys = dkimkeys.load_keys(data_dir, "sender.test")
    msg = message()
    signed = sign(msg, "sender.test", keys) + msg
    server = DnsServer()
    for origin, text in zones(data_dir).items():
        server.set_zone(origin, text)
    with server:
        cold = Resolver([server.address], cache_size=0)
        warm = Resolver([server.address])
        spf = check_spf(warm, CLIENT, "mx.sender.test", "alice@sender.test")
        dkim = verify_dkim(warm, signed)
        dmarc = evaluate_dmarc(warm, "sender.test", spf=spf, dkim=dkim)
        arc = verify_arc(warm, signed)
        assert (spf.result, dkim.result, dmarc.result) == ("pass", "pass", "pass")
        ar = build("mx.example.org", spf=spf, dkim=dkim, arc=arc, dmarc=dmarc)
        sealed = seal(ar + signed, "sender.test", keys[0], "mx.example.org") + ar + signed
        srs = Srs([b"secret"], "fwd.example.org")
        rows = []
        for label, r in (("cold", cold), ("warm", warm)):
            rows += [
                (
                    f"spf ({label}; include: 2 TXT)",
                    lambda r=r: check_spf(r, CLIENT, "mx.sender.test", "alice@sender.test"),
                ),
                (f"dkim verify, 2 signatures ({label})", lambda r=r: verify_dkim(r, signed)),
                (
                    f"dmarc ({label}; 1 TXT)",
                    lambda r=r: evaluate_dmarc(r, from_domain(signed), spf=spf, dkim=dkim),
                ),
                (f"iprev ({label}; PTR + A)", lambda r=r: check_iprev(r, CLIENT)),
                (f"arc verify, 1 set ({label})", lambda r=r: verify_arc(r, sealed)),
                (f"dnsbl, 1 zone ({label})", lambda r=r: check_dnsbl(r, CLIENT, [DnsblZone("bl.test")])),
            ]
        rows += [
            ("arc verify, no ARC headers", lambda: verify_arc(warm, signed)),
            ("Authentication-Results build", lambda: build("mx.example.org", spf=spf, dkim=dkim, arc=arc, dmarc=dmarc)),
            ("Authentication-Results remove_ours", lambda: remove_ours(ar + signed, "mx.example.org")),
            ("dkim sign rsa-sha256 + ed25519-sha256", lambda: sign(msg, "sender.test", keys)),
            ("dkim sign ed25519-sha256 only", lambda: sign(msg, "sender.test", keys[1:])),
            ("arc seal", lambda: seal(ar + signed, "sender.test", keys[0], "mx.example.org")),
            ("srs forward + reverse", lambda: srs.reverse(srs.forward("alice@sender.test"))),
        ]
        print(f"{'check':<42} {'µs/msg':>9}   (best of {ROUNDS} × {n}, 1 KiB message, knot on loopback)")
        for name, fn in rows:
            print(f"{name:<42} {bench(name, fn, n):9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
