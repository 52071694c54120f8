"""Open N SMTP connections to HOST:PORT, each: read the 220 greeting, EHLO,
STARTTLS, the TLS handshake, EHLO again; then leave every connection idle.
The STARTTLS twin of ../shared/bench/idle_conns.py, with the same protocol
on stdout/stdin:

    idle_tls.py --port 2587 -n 1000 [--timeout 10] [--max-wait 60] [--hold 30]

Prints one JSON line {"phase":"held",...} once every connection has either
completed its second EHLO or failed, then holds the sockets open until a
line arrives on stdin (or --hold seconds pass), closes them and prints
{"phase":"closed"}. Every wait is bounded; loopback targets only. The
server's certificate is not verified (memory is measured, not trust).
"""

import argparse
import asyncio
import ipaddress
import json
import ssl
import sys
import time


async def reply(r, timeout: float) -> bytes:
    """One SMTP reply's last line (ValueError on a closed connection)."""
    while True:
        line = await asyncio.wait_for(r.readline(), timeout)
        if not line:
            raise ValueError("closed")
        if line[3:4] != b"-":
            return line


async def one(host, port, ctx, sni, timeout, sem, held, stats):
    async with sem:
        t0 = time.perf_counter()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except Exception as e:  # noqa: BLE001
            stats["connect_fail"] += 1
            stats["errors"][type(e).__name__] = stats["errors"].get(type(e).__name__, 0) + 1
            return
        held.append(w)  # kept open even when a step fails: it still occupies the server
        try:
            for send, code in ((None, b"220"), (b"EHLO idle.client.test\r\n", b"250"), (b"STARTTLS\r\n", b"220")):
                if send:
                    w.write(send)
                line = await reply(r, timeout)
                if not line.startswith(code):
                    raise ValueError(f"{send!r}: {line[:60]!r}")
            await asyncio.wait_for(w.start_tls(ctx, server_hostname=sni), timeout)
            w.write(b"EHLO idle.client.test\r\n")
            line = await reply(r, timeout)
            if not line.startswith(b"250"):
                raise ValueError(f"ehlo after tls: {line[:60]!r}")
        except Exception as e:  # noqa: BLE001
            stats["tls_fail"] += 1
            stats["errors"][type(e).__name__] = stats["errors"].get(type(e).__name__, 0) + 1
            return
        stats["ok"] += 1
        stats["lat"].append(time.perf_counter() - t0)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--sni", default="mx.bench.test")
    ap.add_argument("--parallel-connects", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--max-wait", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=30.0)
    a = ap.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        sys.exit("loopback targets only")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    stats = {"ok": 0, "connect_fail": 0, "tls_fail": 0, "errors": {}, "lat": []}
    held: list = []
    sem = asyncio.Semaphore(a.parallel_connects)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(one(a.host, a.port, ctx, a.sni, a.timeout, sem, held, stats)) for _ in range(a.n)]
    _done, pending = await asyncio.wait(tasks, timeout=a.max_wait)
    for t in pending:
        t.cancel()
    lat = sorted(stats.pop("lat"))
    out = dict(
        phase="held",
        requested=a.n,
        unfinished=len(pending),
        open_sockets=len(held),
        setup_s=round(time.perf_counter() - t0, 2),
        p50_ms=round(1000 * lat[len(lat) // 2], 1) if lat else None,
        max_ms=round(1000 * lat[-1], 1) if lat else None,
        **stats,
    )
    print(json.dumps(out), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), a.hold)
    except TimeoutError:
        pass
    alive = sum(1 for w in held if not w.is_closing())
    for w in held:
        w.transport.abort()
    print(json.dumps(dict(phase="closed", still_open=alive)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
