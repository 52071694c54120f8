"""A small bounded SMTP submission load client, and a TLS sink to measure it
against (swaks starts a Perl process per message: far too slow to load an
MTA; smtp-source speaks no TLS and no AUTH).

    smtpload.py send --port P -n N -c C --user U --password-file F [--size 1024] [--cafile CA]
    smtpload.py sink --port P --cert FULLCHAIN --key KEY [--procs 2]

`send`: N messages over C concurrent sessions (gevent), one new connection
per message, each: 220, EHLO, STARTTLS (RFC 3207), TLS handshake (no
session resumption: a full handshake each time, like a client that keeps
no session cache), EHLO, AUTH PLAIN (RFC 4954, one line with the initial
response), MAIL, RCPT, DATA, the message (dot-stuffed), QUIT. No
pipelining, like smtp-source. Prints one JSON line: sent, errors (by
stage and reply), secs, rate (msg/s), cpu_s (this process). Stops at N
messages or --limit seconds, whichever first; every socket operation has
--timeout seconds.

`sink`: accepts anything (EHLO offers STARTTLS and AUTH PLAIN LOGIN, every
command gets its success reply, messages are read to the final dot and
dropped), in --procs forked processes sharing one listening socket; runs
until SIGTERM. Used only to see how fast `send` can go (its ceiling).
Loopback only.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from email.utils import formatdate  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402


class StageError(Exception):
    """A reply other than the expected one; str() is "stage: reply"."""


def read_reply(f) -> tuple[int, bytes]:
    """One (possibly multiline) SMTP reply from a binary file: (code, last line)."""
    while True:
        line = f.readline(2048)
        if not line:
            raise StageError("connection closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), line.rstrip()


def expect(f, stage: str, code: int) -> None:
    got, line = read_reply(f)
    if got != code:
        raise StageError(f"{stage}: {line[:80].decode(errors='replace')}")


def build_message(sender: str, recipient: str, size: int) -> bytes:
    """A message with the usual headers and `size` bytes of body lines,
    dot-stuffed and ended with CRLF.CRLF (RFC 5321 §4.5.2)."""
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: load\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: <{uuid.uuid4().hex}@client.test>\r\n\r\n"
    ).encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n"  # 80 octets
    body = (line * (size // len(line) + 1))[:size]
    body = body[: body.rfind(b"\r\n") + 2] if b"\r\n" in body else body + b"\r\n"
    return head + body + b".\r\n"


def one_message(args, ctx: ssl.SSLContext, auth: bytes, message: bytes) -> None:
    """One session; raises StageError or OSError."""
    # Nagle stays on, as in smtplib and swaks: with TCP_NODELAY here our EHLO
    # reaches Postfix before it has written its TLS 1.3 session tickets, and
    # its EHLO reply then waits ~40 ms for our delayed ACK (Nagle on its side).
    raw = socket.create_connection((args.host, args.port), timeout=args.timeout)
    try:
        f = raw.makefile("rb")
        expect(f, "greeting", 220)
        raw.sendall(b"EHLO client.test\r\n")
        expect(f, "ehlo", 250)
        raw.sendall(b"STARTTLS\r\n")
        expect(f, "starttls", 220)
        f.close()
        tls = ctx.wrap_socket(raw, server_hostname=args.sni)
        f = tls.makefile("rb")
        tls.sendall(b"EHLO client.test\r\n")
        expect(f, "ehlo-tls", 250)
        tls.sendall(b"AUTH PLAIN " + auth + b"\r\n")
        expect(f, "auth", 235)
        tls.sendall(f"MAIL FROM:<{args.sender}>\r\n".encode())
        expect(f, "mail", 250)
        tls.sendall(f"RCPT TO:<{args.recipient}>\r\n".encode())
        expect(f, "rcpt", 250)
        tls.sendall(b"DATA\r\n")
        expect(f, "data", 354)
        tls.sendall(message)
        expect(f, "dot", 250)
        tls.sendall(b"QUIT\r\n")
        expect(f, "quit", 221)
        f.close()
        tls.close()
    finally:
        raw.close()


def cmd_send(args) -> None:
    ctx = ssl.create_default_context(cafile=args.cafile) if args.cafile else ssl.create_default_context()
    if not args.cafile:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    password = open(args.password_file).readline().rstrip("\r\n")
    auth = base64.b64encode(f"\0{args.user}\0{password}".encode())
    message = build_message(args.sender, args.recipient, args.size)
    left = [args.n]
    sent = [0]
    errors: dict[str, int] = {}
    deadline = time.monotonic() + args.limit

    def worker() -> None:
        while left[0] > 0 and time.monotonic() < deadline:
            left[0] -= 1
            try:
                one_message(args, ctx, auth, message)
                sent[0] += 1
            except (StageError, OSError) as e:
                key = str(e) if isinstance(e, StageError) else type(e).__name__
                errors[key] = errors.get(key, 0) + 1
                if sum(errors.values()) >= args.max_errors:
                    left[0] = 0

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(args.c)], timeout=args.limit + args.timeout + 5)
    secs = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(
        json.dumps(
            dict(
                sent=sent[0],
                requested=args.n,
                errors=errors,
                secs=round(secs, 3),
                rate=round(sent[0] / secs, 1),
                cpu_s=round(cpu, 3),
            )
        ),
        flush=True,
    )
    sys.exit(0 if sent[0] == args.n and not errors else 1)


def sink_session(sock, ctx: ssl.SSLContext) -> None:
    f = sock.makefile("rb")
    sock.sendall(b"220 sink ESMTP\r\n")
    tls = False
    while True:
        line = f.readline(4096)
        if not line:
            return
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            ext = b"" if tls else b"250-STARTTLS\r\n"
            sock.sendall(b"250-sink\r\n" + ext + b"250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        elif verb == b"STAR" and not tls:
            sock.sendall(b"220 2.0.0 go ahead\r\n")
            f.close()
            sock = ctx.wrap_socket(sock, server_side=True)
            f = sock.makefile("rb")
            tls = True
        elif verb == b"AUTH":
            sock.sendall(b"235 2.7.0 ok\r\n")
        elif verb == b"DATA":
            sock.sendall(b"354 go\r\n")
            while True:
                line = f.readline(65536)
                if not line or line == b".\r\n":
                    break
            sock.sendall(b"250 2.0.0 ok\r\n")
        elif verb == b"QUIT":
            sock.sendall(b"221 2.0.0 bye\r\n")
            return
        else:
            sock.sendall(b"250 2.0.0 ok\r\n")


def cmd_sink(args) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    listener = socket.create_server((args.host, args.port), backlog=1024)
    kids = []
    for _ in range(args.procs - 1):
        pid = os.fork()
        if pid == 0:
            kids = []
            break
        kids.append(pid)

    def handle(sock, _addr) -> None:
        sock.settimeout(args.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sink_session(sock, ctx)
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()

    server = StreamServer(listener, handle)

    def stop(*_a) -> None:
        for k in kids:
            os.kill(k, signal.SIGTERM)
        server.close()

    gevent.signal_handler(signal.SIGTERM, stop)
    server.serve_forever()
    for k in kids:
        os.waitpid(k, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("-n", type=int, required=True, help="messages")
    s.add_argument("-c", type=int, default=10, help="sessions at once")
    s.add_argument("--size", type=int, default=1024, help="body octets")
    s.add_argument("--user", required=True)
    s.add_argument("--password-file", required=True)
    s.add_argument("--sender", default="user@bench.test")
    s.add_argument("--recipient", default="user@bench.test")
    s.add_argument("--sni", default="mx.bench.test")
    s.add_argument("--cafile", help="verify the server's certificate against this CA (default: no verification)")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds per socket operation")
    s.add_argument("--limit", type=float, default=120.0, help="seconds for the whole run")
    s.add_argument("--max-errors", type=int, default=20, help="stop after this many failed messages")
    k = sub.add_parser("sink")
    k.add_argument("--host", default="127.0.0.1")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--cert", required=True)
    k.add_argument("--key", required=True)
    k.add_argument("--procs", type=int, default=2)
    k.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    if not ipaddress.ip_address(args.host).is_loopback:
        sys.exit("loopback only")
    cmd_send(args) if args.cmd == "send" else cmd_sink(args)


if __name__ == "__main__":
    main()
