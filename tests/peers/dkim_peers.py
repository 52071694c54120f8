"""Independent DKIM signers and verifiers, to check ours against:

- OpenDKIM (Debian's opendkim, its documented test mode `opendkim -t`,
  the milter's own code path): signs rsa-sha256 and ed25519-sha256;
  verifies with the keys given as its TestDNSData data set (OpenDKIM's
  facility for automated tests: libopendkim resolves through libunbound,
  which will not query a server on loopback).
- Mail::DKIM (Debian's libmail-dkim-perl, the Perl implementation
  SpamAssassin and amavis use): signs and verifies rsa-sha256 (this
  version has no ed25519), its key lookups sent to a DNS server we name
  (the knot of tests/peers/dns_server.py).
- dkimpy's command-line tools `dkimsign` and `dkimverify` (the library
  estafeta uses, through its own front end); `dkimverify` asks the system
  resolver, so it runs in a namespace of its own where knot serves the
  keys on port 53 (tests/peers/netns_dns.py).

Keys are estafeta's key files (PKCS#8 PEM, actors/checks/dkimkeys.py).
Every run is bounded in time. Results are (result, algorithm, domain,
selector) tuples, result as RFC 8601 names it ("pass", "fail", ...).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from peers.netns_dns import run_with_dns

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
#: Seconds one run of a peer may take.
TIMEOUT = 60

_SIGN_PL = r"""
use strict; use warnings;
use Mail::DKIM::Signer; use Mail::DKIM::PrivateKey;
my ($domain, $selector, $keyfile, $algorithm) = @ARGV;
my $key = Mail::DKIM::PrivateKey->load(File => $keyfile);
my $signer = Mail::DKIM::Signer->new(Algorithm => $algorithm, Method => 'relaxed', Domain => $domain,
    Selector => $selector, Key => $key, Headers => 'from:to:subject:date:message-id');
binmode STDIN; binmode STDOUT;
while (<STDIN>) { s/\r?\n\z/\r\n/; $signer->PRINT($_); }
$signer->CLOSE;
print $signer->signature->as_string, "\r\n";
"""

_VERIFY_PL = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS::Resolver;
my ($host, $port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => [$host], port => $port, recurse => 0,
    udp_timeout => 5, tcp_timeout => 5, retry => 1));
my $v = Mail::DKIM::Verifier->new;
binmode STDIN;
while (<STDIN>) { s/\r?\n\z/\r\n/; $v->PRINT($_); }
$v->CLOSE;
foreach my $s ($v->signatures) {
    printf "%s %s %s %s\n", $s->result, $s->algorithm, $s->domain, $s->selector;
}
"""


def _run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    r = subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return r


# ------------------------------------------------------------------ OpenDKIM
def _opendkim_headers(stdout: str, name: str) -> list[str]:
    """The fields test mode says it would insert: "### INSHEADER: idx=0
    hname='NAME' hvalue='VALUE'" (VALUE folded with LF + tab)."""
    return re.findall(rf"### INSHEADER: idx=\d+ hname='{re.escape(name)}' hvalue='(.*?)'\n", stdout, re.S)


def opendkim_sign(message: bytes, domain: str, selector: str, key_path: str, algorithm: str) -> bytes:
    """The DKIM-Signature field OpenDKIM makes for `message` (relaxed/
    relaxed, `algorithm` "rsa-sha256" or "ed25519-sha256", From over-signed),
    CRLF line ends, to prepend."""
    with tempfile.TemporaryDirectory(prefix="estafeta-opendkim-") as d:
        conf = Path(d, "opendkim.conf")
        conf.write_text(
            f"Mode s\nSyslog no\nDomain {domain}\nSelector {selector}\nKeyFile {key_path}\n"
            f"SignatureAlgorithm {algorithm}\nCanonicalization relaxed/relaxed\nOversignHeaders From\n"
            "RequireSafeKeys false\n"
        )
        msg = Path(d, "message")
        msg.write_bytes(message)
        out = _run([OPENDKIM, "-x", str(conf), "-t", str(msg), "-vvv"]).stdout.decode()
    (value,) = _opendkim_headers(out, "DKIM-Signature")
    return b"DKIM-Signature: " + value.replace("\n", "\r\n").encode() + b"\r\n"


def opendkim_verify(message: bytes, records: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """OpenDKIM's verdict on every signature of `message`, the key records
    given as {"sel._domainkey.example.test": "v=DKIM1; k=...; p=..."}."""
    with tempfile.TemporaryDirectory(prefix="estafeta-opendkim-") as d:
        keys = Path(d, "keys")
        keys.write_text("".join(f"{name} {text}\n" for name, text in records.items()))
        conf = Path(d, "opendkim.conf")
        conf.write_text(f"Mode v\nSyslog no\nTestDNSData file:{keys}\nMinimumKeyBits 1024\n")
        msg = Path(d, "message")
        msg.write_bytes(message)
        out = _run([OPENDKIM, "-x", str(conf), "-t", str(msg), "-vvv"]).stdout.decode()
    results = []
    for field in _opendkim_headers(out, "Authentication-Results"):
        for part in field.replace("\n", " ").split(";"):
            m = re.match(r"\s*dkim=(\w+)", part)
            if m:
                props = dict(re.findall(r"header\.(\w+)=(\S+)", part))
                results.append((m.group(1), props.get("a", ""), props.get("d", ""), props.get("s", "")))
    return results


# ----------------------------------------------------------------- Mail::DKIM
def maildkim_sign(message: bytes, domain: str, selector: str, key_path: str) -> bytes:
    """Mail::DKIM's rsa-sha256 relaxed/relaxed signature of `message`, to prepend."""
    with tempfile.TemporaryDirectory(prefix="estafeta-maildkim-") as d:
        script = Path(d, "sign.pl")
        script.write_text(_SIGN_PL)
        # Mail::DKIM reads PKCS#1 ("BEGIN RSA PRIVATE KEY") PEM.
        pkcs1 = Path(d, "key.pem")
        _run(["openssl", "pkey", "-in", key_path, "-traditional", "-out", str(pkcs1)])
        out = _run(["perl", str(script), domain, selector, str(pkcs1), "rsa-sha256"], message).stdout
    return out


def maildkim_verify(message: bytes, dns_address: str) -> list[tuple[str, str, str, str]]:
    """Mail::DKIM's verdict on every signature, keys looked up at the DNS
    server `dns_address` ("127.0.0.1:port")."""
    host, _, port = dns_address.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="estafeta-maildkim-") as d:
        script = Path(d, "verify.pl")
        script.write_text(_VERIFY_PL)
        out = _run(["perl", str(script), host, port], message).stdout.decode()
    return [tuple(line.split()[:4]) for line in out.splitlines() if line.strip()]  # type: ignore[misc]


# ------------------------------------------------------------- dkimpy's CLI
def _venv_tool(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


def dkimpy_sign(message: bytes, domain: str, selector: str, private: bytes, algorithm: str) -> bytes:
    """`dkimsign` (relaxed/relaxed) of `message`; returns the signed
    message. `private` is the key as dkimpy takes it (DkimKey.private)."""
    with tempfile.TemporaryDirectory(prefix="estafeta-dkimsign-") as d:
        key = Path(d, "key")
        key.write_bytes(private)
        argv = [_venv_tool("dkimsign"), selector, domain, str(key), "--signalg", algorithm]
        return _run(argv + ["--hcanon", "relaxed", "--bcanon", "relaxed"], message).stdout


def dkimpy_verify(message: bytes, zones: dict[str, str], index: int = 0) -> bool:
    """`dkimverify --index N` of `message`, in a namespace where knot serves
    `zones` as the system's resolver. True if it says the signature is OK."""
    r = run_with_dns(zones, [_venv_tool("dkimverify"), "--index", str(index)], message, timeout=TIMEOUT)
    return r.returncode == 0 and "signature ok" in r.stdout
