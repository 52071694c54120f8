"""What the MTA benchmarks of tests/bench/ share (relay.py, submission.py,
checks_e2e.py): processes we start and stop by PID, Postfix's smtp-sink as
a counting remote MX, smtp-source runs, private Postfix instances, the
interleaved (round-robin) runner with calibration, medians, and the machine
facts a result needs (CPU model, VM steal).

Run inside ../shared/bench/run.sh (a network namespace with loopback only;
the .sh wrappers beside this file do it). Everything is bounded: every
load run has a message count and a `timeout`, every wait a deadline.
Process-tree CPU, memory and steal come from ../shared/bench/bench.py
(`tree_cpu`, `tree_mem`, `cpu_times`), imported, not copied.

Units: seconds for times, msg/s for rates, ms of CPU per message.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(
    os.environ.get("SHARED_BENCH")
    or next((p for p in (REPO.parent / "shared/bench", REPO.parent.parent / "shared/bench") if p.is_dir()), ".")
)
sys.path.insert(0, str(SHARED))
import bench as shared  # noqa: E402  ../shared/bench/bench.py: tree_cpu, tree_mem, cpu_times

sys.path.insert(0, str(REPO / "tests"))
from peers.ports import free_port  # noqa: E402, F401  the tests' one, for every bench script

TMP = Path(os.environ.get("SMTPBENCH_TMP", "/tmp/smtpbench"))
HOST = "127.0.0.1"
#: The estafeta under test: this checkout's, or $ESTAFETA_BIN (A/B of two builds).
ESTAFETA = Path(os.environ.get("ESTAFETA_BIN") or REPO / ".venv" / "bin" / "estafeta")
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def wait_port(port: int, seconds: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Wait until something accepts on 127.0.0.1:port; RuntimeError after
    `seconds` or when `proc` exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args} exited with {proc.returncode} before listening on {port}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: nothing listens on {HOST}:{port} after {seconds} s")


def stop_pid(pid: int | None, proc: subprocess.Popen | None = None, seconds: float = 20.0) -> None:
    """SIGTERM one process we started, SIGKILL it after `seconds`."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        proc.wait(5)


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user+system, with reaped children) of the process tree
    under `pid` (../shared/bench/bench.py tree_cpu); 0 without a pid."""
    return shared.tree_cpu(pid) if pid else 0.0


def process_label(pid: int) -> str:
    """What a process of an MTA's tree is, for the CPU breakdown: Postfix's
    daemons by name (smtpd, cleanup, qmgr, smtp, ...), estafeta's by role
    (daemon = serving process 0, serving process, disk worker), as
    tests/bench/quick.sh names them."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().decode(errors="replace").split("\0")
        with open(f"/proc/{pid}/stat") as f:
            comm = f.read().split("(", 1)[1].rsplit(")", 1)[0]
    except OSError:
        return "?"
    if any("estafeta" in c for c in cmd):
        if any("disk_worker" in c for c in cmd):
            return "disk worker"
        return "serving process" if "--process" in cmd else "daemon (process 0)"
    return comm


def tree_breakdown(pid: int | None) -> dict[int, tuple[str, float, float]]:
    """{pid: (label, own CPU s, CPU s of its reaped children)} over the
    process tree under pid (user + system; /proc/<pid>/stat)."""
    out: dict[int, tuple[str, float, float]] = {}
    for p in shared.tree(pid) if pid else []:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own = (int(fields[11]) + int(fields[12])) / shared.CLK
        kids = (int(fields[13]) + int(fields[14])) / shared.CLK
        out[p] = (process_label(p), own, kids)
    return out


def breakdown_delta(a: dict, b: dict, per: int) -> dict[str, float]:
    """ms per message by process label between two tree_breakdown()s;
    the CPU of processes that exited meanwhile (reaped by their parent)
    shows as "<parent label> (exited children)"."""
    out: dict[str, float] = {}
    for pid, (label, own, kids) in b.items():
        own0, kids0 = a.get(pid, (label, 0.0, 0.0))[1:]
        out[label] = out.get(label, 0.0) + (own - own0)
        if kids - kids0 > 0:
            key = f"{label} (exited children)"
            out[key] = out.get(key, 0.0) + (kids - kids0)
    return {k: round(1000 * v / max(1, per), 3) for k, v in sorted(out.items()) if v > 0}


def pss_kib(pid: int) -> tuple[int, int]:
    """(PSS KiB summed over the process tree under `pid`, processes)."""
    _rss, pss, n = shared.tree_mem(pid)
    return pss, n


# ------------------------------------------------------------------ smtp-sink
class SmtpSink:
    """Postfix's smtp-sink on a free loopback port, as a remote MX that
    counts what it receives. `count_mode`:

      counter  `-c`: smtp-sink writes "sess=N quit=N mesg=N\\r" to stdout
               (a file here) at each session end, QUIT and final dot; the
               count is the last mesg= of the file's tail (default: the
               cheaper one for the sink, see docs/PERFORMANCE.md)
      dump     `-d DIR/`: one file per message (open, write, close each),
               counted by listing DIR
    """

    def __init__(self, directory: Path, count_mode: str = "counter", name: str = "sink"):
        if count_mode not in ("counter", "dump"):
            raise ValueError(f"count_mode {count_mode!r}: counter or dump")
        self.dir = directory
        self.mode = count_mode
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.out = directory / f"{name}.out"
        self.dump = directory / f"{name}-dump"

    def start(self) -> SmtpSink:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        opts = ["-c"] if self.mode == "counter" else ["-d", f"{self.dump}/"]
        if self.mode == "dump":
            self.dump.mkdir(exist_ok=True)
            os.chown(self.dump, 65534, 65534)  # smtp-sink -u nobody writes there
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [SMTP_SINK, "-u", "nobody", *opts, f"{HOST}:{self.port}", "1024"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port, 10, self.proc, "smtp-sink")
        if self.mode == "counter":  # the probe's session, counted once it has ended
            wait_count(lambda: self._counter(rb"sess=(\d+)"), 1, 5)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def count(self) -> int:
        """Messages received so far (since start)."""
        if self.mode == "dump":
            with os.scandir(self.dump) as it:
                return sum(1 for _ in it)
        return self._counter(rb"mesg=(\d+)")

    def sessions(self) -> int | None:
        """SMTP sessions ended so far (counter mode only; None in dump mode):
        with count(), how many messages the MTA sent per connection."""
        return self._counter(rb"sess=(\d+)") if self.mode == "counter" else None

    def _counter(self, pattern: bytes) -> int:
        try:
            with open(self.out, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 200))
                tail = f.read()
        except OSError:
            return 0
        found = re.findall(pattern, tail)
        return int(found[-1]) if found else 0

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, self.proc)
            self.proc = None


# ------------------------------------------------------------------ smtp-source
@dataclass
class SourceRun:
    """One smtp-source run: wall clock (perf_counter) at start and end,
    exit code, the end of its stderr, its CPU seconds, the command."""

    t0: float
    t1: float
    rc: int
    err: str
    cpu_s: float
    cmd: str


def smtp_source(
    port: int,
    *,
    size: int,
    conc: int,
    count: int,
    limit_s: int,
    sender: str,
    recipient: str,
    helo: str = "client.test",
    message_file: str | None = None,
) -> SourceRun:
    """Postfix's smtp-source, one new connection per message, `conc`
    sessions at once, `count` messages of `size` body bytes (or the
    pre-formatted `message_file`, smtp-source -F), killed after `limit_s`."""
    cmd = ["timeout", str(limit_s), SMTP_SOURCE, "-4", "-s", str(conc), "-m", str(count)]
    cmd += ["-F", message_file] if message_file else ["-l", str(size)]
    cmd += ["-f", sender, "-t", recipient, "-M", helo, f"{HOST}:{port}"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return SourceRun(t0, t1, p.returncode, p.stderr.strip()[-300:], cpu, shlex.join(cmd))


def steal_snapshot() -> tuple[int, int]:
    """(steal, total) jiffies of the machine (/proc/stat)."""
    return shared.cpu_times()


def steal_pct(a: tuple[int, int], b: tuple[int, int]) -> float:
    return round(100 * (b[0] - a[0]) / max(1, b[1] - a[1]), 1)


def machine_busy() -> tuple[float, float, float, float]:
    """CPU seconds from /proc/stat and the kernel's threads: (busy of the
    whole machine: user, nice, system, irq, softirq; elapsed over all CPUs;
    irq + softirq; kernel threads (children of kthreadd: kworker, jbd2,
    ksoftirqd, ...), which flush, journal and deliver loopback packets on
    the benchmark's behalf too)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    kthreads = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == "2":  # parent kthreadd
            kthreads += int(fields[11]) + int(fields[12])
    clk = shared.CLK
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / clk, sum(v) / clk, (v[5] + v[6]) / clk, kthreads / clk


def other_load_pct(a: tuple, b: tuple, ours_cpu_s: float) -> float:
    """Share of the machine's CPU time between machine_busy() snapshots a
    and b that went to processes outside the benchmark (busy - ours -
    kernel threads - interrupts): other tenants of the machine (other
    sessions' tests) skew a run as steal does."""
    other = (b[0] - a[0]) - ours_cpu_s - (b[2] - a[2]) - (b[3] - a[3])
    return round(100 * max(0.0, other) / max(1e-9, b[1] - a[1]), 1)


def kernel_ms_per_msg(a: tuple, b: tuple, n: int) -> float:
    """Kernel threads' and interrupts' CPU between two machine_busy()
    snapshots, ms per message (the whole machine's: an upper bound of
    what the benchmark caused)."""
    return round(1000 * ((b[2] - a[2]) + (b[3] - a[3])) / max(1, n), 3)


def wait_count(counter: Callable[[], int], target: int, seconds: float, poll: float = 0.02) -> float | None:
    """perf_counter() when counter() reaches `target`; None after `seconds`."""
    end = time.perf_counter() + seconds
    while True:
        now = time.perf_counter()
        if counter() >= target:
            return now
        if now > end:
            return None
        time.sleep(poll)


# ------------------------------------------------------------------ Postfix
POSTFIX_COMMON = [
    "compatibility_level = 3.6",
    "mail_owner = postfix",
    "setgid_group = postdrop",
    "inet_interfaces = loopback-only",
    "inet_protocols = ipv4",
    "alias_maps =",
    "alias_database =",
    "biff = no",
    "append_dot_mydomain = no",
    "smtputf8_enable = no",
]


class PostfixInstance:
    """A private Postfix (stock Debian binaries; our own main.cf, master.cf,
    queue and data directories under `base`; never the system's), built as
    ../shared/bench/servers/postfix.sh builds its instances: smtpd on
    127.0.0.1:`port` instead of :25, no chroot, logging to base/maillog.
    `main` are extra main.cf lines ("name = value"), `services` extra
    master.cf service entries (postconf -M syntax), `smtpd_options` -o
    options of the port's smtpd, `maxproc` its process limit ("-": Postfix's
    default_process_limit, 100).
    """

    def __init__(
        self,
        base: Path,
        port: int,
        main: list[str],
        *,
        smtpd_options: tuple[str, ...] = (),
        services: tuple[str, ...] = (),
        maxproc: str = "-",
    ):
        self.base = base
        self.etc = base / "etc"
        self.port = port
        self.main = list(main)
        self.smtpd_options = list(smtpd_options)
        self.services = list(services)
        self.maxproc = maxproc
        self.pid: int | None = None

    def _postconf(self, *args: str) -> None:
        subprocess.run(["postconf", "-c", str(self.etc), *args], check=True, capture_output=True, timeout=30)

    def start(self) -> PostfixInstance:
        self.stop()
        subprocess.run(["rm", "-rf", str(self.base)], check=True)
        for d in ("etc", "queue", "data", "mail"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.base / "data", "postfix", "postfix")
        shutil.chown(self.base / "mail", "nobody", "nogroup")
        (self.etc / "master.cf").write_bytes(Path("/etc/postfix/master.cf").read_bytes())
        (self.etc / "main.cf").write_text("")
        self._postconf(
            "-e",
            *POSTFIX_COMMON,
            f"queue_directory = {self.base / 'queue'}",
            f"data_directory = {self.base / 'data'}",
            f"maillog_file_prefixes = {self.base}",
            f"maillog_file = {self.base / 'maillog'}",
            *self.main,
        )
        self._postconf("-M#", "smtp/inet")
        opts = "".join(f" -o {o}" for o in self.smtpd_options)
        self._postconf("-M", f"{HOST}:{self.port}/inet = {HOST}:{self.port} inet n - n - {self.maxproc} smtpd{opts}")
        for svc in self.services:
            self._postconf("-M", svc)
        self._postconf("-F", "*/*/chroot = n")
        p = subprocess.run(["postfix", "-c", str(self.etc), "start"], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"postfix start ({self.base}): {p.stdout}{p.stderr}")
        pidf = self.base / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 15
        while not (pidf.exists() and pidf.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix ({self.base}): no master.pid; maillog:\n{self.maillog()[-2000:]}")
            time.sleep(0.05)
        self.pid = int(pidf.read_text().strip())
        wait_port(self.port, 15, what=f"postfix {self.base}")
        return self

    def maillog(self) -> str:
        try:
            return (self.base / "maillog").read_text(errors="replace")
        except OSError:
            return ""

    def queued(self) -> int:
        """Files in the incoming, active and deferred queues."""
        return sum(shared.count_files(str(self.base / "queue" / d)) for d in ("incoming", "active", "deferred"))

    def stop(self) -> None:
        if (self.etc / "main.cf").exists():
            subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True, timeout=60)
            pid = self.pid
            deadline = time.monotonic() + 10
            while pid and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        self.pid = None


# ------------------------------------------------------------------ estafeta
class Estafeta:
    """`estafeta serve` of this checkout (.venv) with a config file we
    write; logs to <dir>/estafeta.log; stopped by SIGTERM to its PID."""

    def __init__(self, directory: Path, config: str, port: int):
        self.dir = directory
        self.config_text = config
        self.port = port
        self.conf = directory.parent / f"{directory.name}.conf"
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        subprocess.run(["rm", "-rf", str(self.dir)], check=True)
        self.dir.mkdir(parents=True)
        self.conf.write_text(self.config_text)
        return self.conf

    def check(self) -> str | None:
        """None if `estafeta config check` accepts the config, else its
        message."""
        self.write_config()
        p = subprocess.run([str(ESTAFETA), "config", "check", str(self.conf)], capture_output=True, text=True)
        return None if p.returncode == 0 else (p.stdout + p.stderr).strip()

    def run_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(ESTAFETA), *args, "--config", str(self.conf)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> Estafeta:
        with open(self.dir.parent / f"{self.dir.name}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(ESTAFETA), "serve", "--config", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
            )
        wait_port(self.port, 30, self.proc, "estafeta serve")
        time.sleep(1.0)  # the other serving processes bind too
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, self.proc, 30)
            self.proc = None


def idle_test(script: Path, port: int, pids: list[int], n: int, log: Callable[[str], None], *extra: str) -> dict:
    """Hold n idle sessions open with `script` (../shared/bench/idle_conns.py
    or idle_tls.py: one JSON line when held, another when closed) and read
    the PSS sum of the process trees under `pids` before and while they
    are held: KiB per session = (held - before) / sessions that got there."""

    def mem() -> tuple[int, int]:
        tot = [pss_kib(p) for p in pids if p]
        return sum(x[0] for x in tot), sum(x[1] for x in tot)

    pss0, procs0 = mem()
    cmd = [sys.executable, str(script), "--port", str(port), "-n", str(n), "--timeout", "10", "--hold", "60", *extra]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = json.loads(p.stdout.readline())  # type: ignore[union-attr]
        time.sleep(1.0)
        pss1, procs1 = mem()
        p.stdin.write("\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        closed = json.loads(p.stdout.readline())  # type: ignore[union-attr]
    finally:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    ok = held["ok"]
    res = dict(
        requested=n,
        ok=ok,
        held=held,
        still_open_at_close=closed.get("still_open"),
        pss_before_kib=pss0,
        pss_held_kib=pss1,
        procs_before=procs0,
        procs_held=procs1,
        kib_per_session=round((pss1 - pss0) / ok, 1) if ok else None,
    )
    log(f"idle: {json.dumps(res)}")
    return res


# ------------------------------------------------------------------ runner
@dataclass
class Workload:
    """`name` (a table row), body `size` bytes, `conc` sessions at once."""

    name: str
    size: int
    conc: int


@dataclass
class Plan:
    target: str
    workload: Workload
    count: int = 0
    calibration: dict = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    error: str | None = None


#: one_run(target, workload, count) -> a run's dict; it must hold "rate"
#: (msg/s, None when the run failed), "error" (str or None) and may hold
#: any of the per-message CPU keys of summarize().
RunFn = Callable[[object, Workload, int], dict]


def run_interleaved(
    targets: list,
    workloads: list[Workload],
    one_run: RunFn,
    *,
    runs: int,
    run_secs: float,
    min_msgs: int,
    max_msgs: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, Plan]]:
    """For each workload: calibrate every target with one run of
    max(min_msgs, 5 x conc) messages and one of a third of run_secs at the
    rate found, size its runs to last ~run_secs at
    the calibrated rate (clipped to [min_msgs, max_msgs]), then run them
    round-robin (run 1 of every target, run 2 of every target, ...), as
    ../shared/bench/bench.py --interleave does. Returns {target name:
    {workload name: Plan}}."""
    out: dict[str, dict[str, Plan]] = {t.name: {} for t in targets}
    for wl in workloads:
        plans = {}
        for t in targets:
            plan = Plan(t.name, wl)
            cal_n = max(min_msgs, 5 * wl.conc)
            cal = one_run(t, wl, cal_n)
            log(f"[{t.name}] {wl.name}: calibration {cal_n} -> {_fmt(cal)}")
            if cal.get("rate") is not None:  # a second, longer one: short runs underrate
                cal_n = min(max(int(cal["rate"] * run_secs / 3), cal_n), max_msgs)
                cal = one_run(t, wl, cal_n)
                log(f"[{t.name}] {wl.name}: calibration {cal_n} -> {_fmt(cal)}")
            plan.calibration = cal
            if cal.get("rate") is None:
                plan.error = cal.get("error") or "calibration failed"
            else:
                plan.count = min(max(int(cal["rate"] * run_secs), min_msgs, 10 * wl.conc), max_msgs)
            plans[t.name] = plan
            out[t.name][wl.name] = plan
        for i in range(runs):
            for t in targets:
                plan = plans[t.name]
                if plan.error:
                    continue
                r = one_run(t, wl, plan.count)
                plan.runs.append(r)
                log(f"[{t.name}] {wl.name}: run {i + 1}/{runs}, {plan.count} msgs -> {_fmt(r)}")
    return out


def _fmt(r: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in r.items() if k not in ("cmd",) and v is not None)


#: Run keys summarize() takes the median of, besides every *_ms_per_msg.
MEDIAN_KEYS = ("steal_pct", "other_load_pct", "accept_rate", "msgs_per_connection")


def summarize(plan: Plan) -> dict:
    """Medians over a plan's good runs: rate (and min, max), every
    *_ms_per_msg key and MEDIAN_KEYS, cpu_by_process per label; failed
    runs counted."""
    good = [r for r in plan.runs if r.get("rate") is not None]
    s: dict = {"count": plan.count, "runs": len(plan.runs), "failed_runs": len(plan.runs) - len(good)}
    if plan.error:
        s["error"] = plan.error
    if not good:
        return s
    rates = [r["rate"] for r in good]
    s.update(rate=statistics.median(rates), rate_min=min(rates), rate_max=max(rates))
    for k in sorted({k for r in good for k in r}):
        vals = [r[k] for r in good if isinstance(r.get(k), int | float) and not isinstance(r.get(k), bool)]
        if vals and (k.endswith("_ms_per_msg") or k in MEDIAN_KEYS):
            s[k] = round(statistics.median(vals), 3)
    by = [r["cpu_by_process"] for r in good if r.get("cpu_by_process")]
    if by:
        labels = {label for b in by for label in b}
        s["cpu_by_process"] = {
            label: round(statistics.median(b.get(label, 0.0) for b in by), 3) for label in sorted(labels)
        }
    return s


# ------------------------------------------------------------------ report
def machine_info() -> dict:
    """Date, CPU model (lscpu), CPUs, kernel, Postfix version, estafeta's
    commit (with "+dirty" when the tree has changes)."""

    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    model = ""
    for line in out(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    commit = out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if out(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]):
        commit += "+dirty"
    return dict(
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        cpu=model,
        cpus=os.cpu_count(),
        kernel=platform.release(),
        postfix=out(["postconf", "-dh", "mail_version"]),
        estafeta=commit,
    )


def info_line(info: dict) -> str:
    return (
        f"{info['date']}, {info['cpus']} × {info['cpu']}, kernel {info['kernel']}, "
        f"Postfix {info['postfix']}, estafeta {info['estafeta']}"
    )


def fmt_num(x, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def rate_cells(s: dict, base: float | None, name: str) -> tuple[str, str]:
    """The table cells of one MTA's summary `s` (rate, rate_min, rate_max,
    error): "**median** (min–max)" or "FAIL: <error>", and its ratio to
    Postfix's rate `base` ("" for Postfix itself or without a rate)."""
    rate = s.get("rate")
    if rate:
        cell = f"**{fmt_num(rate)}** ({fmt_num(s.get('rate_min'))}–{fmt_num(s.get('rate_max'))})"
    else:
        cell = f"FAIL: {str(s.get('error', ''))[:80]}"
    ratio = f"×{rate / base:.2f}" if rate and base and name != "postfix" else ""
    return cell, ratio


def save(out_dir: Path, stem: str, info: dict, args: dict, results: dict, table: str) -> Path:
    """Write <stem>-<time>.json (everything) and .md (the table); returns
    the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"{stem}-{stamp}.json"
    path.write_text(json.dumps(dict(info=info, args=args, results=results), indent=1, default=str))
    (out_dir / f"{stem}-{stamp}.md").write_text(table + "\n")
    return path


def make_logger(out_dir: Path, stem: str) -> Callable[[str], None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    f = open(out_dir / f"{stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log", "w")  # noqa: SIM115

    def log(msg: str) -> None:
        print(msg, flush=True)
        f.write(msg + "\n")
        f.flush()

    return log


def check_namespace(log: Callable[[str], None]) -> None:
    """Warn when not in a loopback-only network namespace (run.sh)."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if any(": lo:" not in line for line in links.splitlines()):
        log("WARNING: not in a loopback-only network namespace (run through the .sh wrapper)")
