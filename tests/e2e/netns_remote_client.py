"""A submission client that is not on loopback, for
test_submission.py's test_auth_before_tls_from_a_remote_client: run in a
network namespace of its own (`unshare -rn`), whose only interface is its
own lo, with 198.51.100.10 (TEST-NET-2) added to it. A mail host
(mailhost.start_host) listens for submission there, and a client
connecting from that address is, to the daemon, a remote client: AUTH
only after STARTTLS (RFC 4954 §4 with RFC 8314). Nothing leaves the
namespace.

    unshare -rn python netns_remote_client.py ROOT_DIR   (prints a JSON object)
"""

from __future__ import annotations

import base64
import json
import os
import smtplib
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

#: The client's and the listener's address inside the namespace.
ADDRESS = "198.51.100.10"


def main(root: str) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True, timeout=10)
    from mailhost import HOSTNAME, start_host
    from peers.ports import free_port

    port = free_port(ADDRESS)
    host = start_host(root, processes=1, listener=[f'{{ address: "{ADDRESS}:{port}" mode: SUBMISSION }}'])
    out: dict = {}
    try:
        with smtplib.SMTP(ADDRESS, port, timeout=30, source_address=(ADDRESS, 0)) as c:
            c.ehlo("remote.client.test")
            out["features_plain"] = sorted(c.esmtp_features)
            ir = base64.b64encode(b"\0alice@example.test\0alice-pw").decode()
            out["auth_plain"] = list(c.docmd("AUTH", f"PLAIN {ir}"))
            out["mail_plain"] = list(c.docmd("MAIL", "FROM:<alice@example.test>"))
            c._host = HOSTNAME  # the name smtplib gives TLS (SNI, the certificate check)
            c.starttls(context=host.context())
            c.ehlo("remote.client.test")
            out["auth_tls"] = c.esmtp_features.get("auth", "").split()
            out["login"] = list(c.login("alice@example.test", "alice-pw"))
            out["mail_tls"] = list(c.mail("alice@example.test"))
        out["log"] = host.daemon.log_text()
        out["stopped"] = host.daemon.stop()
    finally:
        host.close()
    print(json.dumps(out, default=lambda b: b.decode("utf-8", "replace")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
