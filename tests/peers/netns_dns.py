"""Run a program that uses the system's resolver (glibc's res_*, dnspython's
default, Net::DNS) against our zones: in a network and mount namespace of
its own (util-linux `unshare`), where a private Knot DNS
(peers.dns_server.DnsServer) serves the zones on 127.0.0.1:53 and
/etc/resolv.conf is bind-mounted to name it. Nothing leaves the
namespace: its only interface is its own loopback.

    result = run_with_dns(zones, ["opendkim", "-x", conf, "-t", msgfile], stdin=b"")
    result.returncode, result.stdout, result.stderr

For peers that cannot be pointed at another server or port: OpenDKIM
(libopendkim asks res_nquery, port 53 of the nameservers of
/etc/resolv.conf) and dkimpy's `dkimverify`. Needs `unshare` with user
namespaces or root (CI runs as root).

Run as a script, this module is the part that runs inside the namespace:
    python netns_dns.py SPEC.json   (SPEC: {"zones": {...}, "argv": [...], "stdin_file": ..., "timeout": s})
and prints {"returncode", "stdout", "stderr"} as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

#: Seconds the whole run may take (knot's start included).
TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def available() -> str:
    """ "" if namespaces can be made here, else why not."""
    unshare = shutil.which("unshare")
    if not unshare:
        return "no unshare command"
    r = subprocess.run([unshare, "-rnm", "true"], capture_output=True, timeout=10)
    return "" if r.returncode == 0 else f"unshare -rnm: {r.stderr.decode(errors='replace').strip()}"


def run_with_dns(zones: dict[str, str], argv: list[str], stdin: bytes = b"", timeout: float = TIMEOUT) -> Result:
    """Run `argv` (stdin `stdin`) in a namespace where the system resolver
    is a Knot DNS serving `zones` (origin -> zone-file text, as
    DnsServer.set_zone takes them). Raises RuntimeError if the namespace
    or the server cannot be set up."""
    with tempfile.TemporaryDirectory(prefix="estafeta-netns-") as d:
        stdin_file = os.path.join(d, "stdin")
        with open(stdin_file, "wb") as f:
            f.write(stdin)
        spec = os.path.join(d, "spec.json")
        with open(spec, "w") as f:
            json.dump({"zones": zones, "argv": argv, "stdin_file": stdin_file, "timeout": timeout, "dir": d}, f)
        r = subprocess.run(
            ["unshare", "-rnm", sys.executable, os.path.abspath(__file__), spec],
            capture_output=True,
            timeout=timeout + 30,
        )
        if r.returncode != 0:
            raise RuntimeError(f"netns_dns failed ({r.returncode}): {r.stderr.decode(errors='replace')[-3000:]}")
        out = json.loads(r.stdout)
        return Result(out["returncode"], out["stdout"], out["stderr"])


def _inside(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    resolv = os.path.join(spec["dir"], "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True, timeout=10)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from peers.dns_server import DnsServer

    server = DnsServer(os.path.join(spec["dir"], "knot"), host="127.0.0.1", port=53)
    for origin, records in spec["zones"].items():
        server.set_zone(origin, records)
    with server, open(spec["stdin_file"], "rb") as stdin:
        r = subprocess.run(spec["argv"], stdin=stdin, capture_output=True, timeout=spec["timeout"])
    json.dump(
        {
            "returncode": r.returncode,
            "stdout": r.stdout.decode("utf-8", "replace"),
            "stderr": r.stderr.decode("utf-8", "replace"),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(_inside(sys.argv[1]))
