"""Delivery through a mail delivery agent (MDA) command: procmail,
maildrop, dovecot-lda, a script — once per recipient, the message on its
standard input, as chasquid's MDA courier and Postfix's pipe(8) do.

    result = run_mda(MdaCommand(("/usr/bin/maildrop", "-d", "%to_user%")),
                     "alice@example.org", "bob@example.net", body_path, span=span, tracer=tracer)
    result.reply            # 250 2.0.0 / 451 4.3.0 / 550 5.3.0 / 451 4.4.7 ...

The command runs without a shell (argv as given) unless `shell` is set,
in a session of its own (so a timeout kills its whole process group), with
the queued body file itself as stdin (the child reads it; nothing is copied
through the daemon), stdout and stderr merged into one pipe of which the
first `output_limit` octets are kept for the reply text, and it dies with
the daemon (prctl PDEATHSIG, like every child process of estafeta).

Arguments: "%from%", "%from_user%", "%from_domain%", "%to%", "%to_user%",
"%to_domain%" are replaced (chasquid's mail_delivery_agent_args), with
whitespace, controls and the characters /;"'\\|*&$%()[]{}`! removed from
the values (chasquid's sanitizeForMDA: defence in depth). A local part may
start with "-": put "--" or the option letter before %to% and its kin.
With `shell`, argv[0] is a /bin/sh command line and nothing is substituted
into it: the values are only in the environment ("$RECIPIENT").

Environment (only these, like Postfix's local(8) and pipe(8)): SENDER
(the reverse-path, "" for <>), RECIPIENT, LOCAL and USER (its local part),
DOMAIN, ORIGINAL_RECIPIENT, QUEUE_ID, PATH (/usr/local/bin:/usr/bin:/bin),
and LANG/TZ when the daemon has them.

Outcomes (sysexits.h, as chasquid; Postfix's pipe(8) for signals):
exit 0 -> 250 2.0.0; exit 75 (EX_TEMPFAIL) -> 451 4.3.0; any other exit ->
550 5.3.0 (permanent) with an excerpt of the output; killed by a signal ->
451 4.3.0; over `timeout` -> the process group is SIGKILLed, 451 4.4.7;
the command cannot be run (not found, not executable) -> 451 4.3.5 (RFC 3463
"system incorrectly configured": temporary, so no mail is lost while the
configuration is fixed); the body file cannot be read -> 451 4.3.0.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass

import gevent
from gevent import subprocess
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from estafeta.actors.smtp.replies import Reply
from estafeta.proto import common_pb2, config_pb2, messages_pb2
from estafeta.store.queue import QueueStore
from estafeta.supervisor.actor import Actor, Link
from estafeta.supervisor.osproc import die_with_parent
from estafeta.tracing.propagation import extract

EX_TEMPFAIL = 75  # sysexits.h
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f/;\"'\\|*&$%()\[\]{}`!]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class MdaCommand:
    """argv: program and arguments (the %...% words above are replaced
    unless `substitute` is False); shell: argv[0] is run by /bin/sh -c;
    timeout: seconds for the whole
    delivery (chasquid's default is 30 s; Postfix's pipe 1000 s);
    output_limit: octets of output kept for the reply text."""

    argv: tuple[str, ...]
    shell: bool = False
    timeout: float = 60.0
    output_limit: int = 4096
    #: Replace the %...% words in argv (False: run argv as it is, as a
    #: pipe alias's command is run).
    substitute: bool = True

    def __post_init__(self):
        if not self.argv or not self.argv[0]:
            raise ValueError("an MDA command needs a program")
        if self.timeout <= 0:
            raise ValueError("the MDA timeout must be positive")


@dataclass(frozen=True)
class MdaResult:
    """reply: the outcome as an SMTP reply (class 2/4/5 as above);
    exit_status: the exit code, -N for a signal, None when it was not run or
    timed out; output: the start of what it printed (stdout and stderr)."""

    reply: Reply
    exit_status: int | None
    output: str = ""


def _sanitize(value: str) -> str:
    return _UNSAFE.sub("", value)


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, "")


def expand_argv(command: MdaCommand, reverse_path: str, recipient: str) -> list[str]:
    """The argv to run (see the module docstring for the substitutions)."""
    if command.shell:
        return ["/bin/sh", "-c", command.argv[0], "estafeta-mda", *command.argv[1:]]
    if not command.substitute:
        return list(command.argv)
    f_user, f_domain = _split(reverse_path)
    t_user, t_domain = _split(recipient)
    values = {
        "%from%": reverse_path,
        "%from_user%": f_user,
        "%from_domain%": f_domain,
        "%to%": recipient,
        "%to_user%": t_user,
        "%to_domain%": t_domain,
    }
    out = []
    for arg in command.argv:
        if "%" in arg:
            for key, value in values.items():
                arg = arg.replace(key, _sanitize(value))
        out.append(arg)
    return out


def mda_environment(reverse_path: str, recipient: str, original_recipient: str = "", queue_id: str = "") -> dict:
    """The child's whole environment (controls removed from the values)."""
    local, domain = _split(recipient)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "SENDER": reverse_path,
        "RECIPIENT": recipient,
        "LOCAL": local,
        "USER": local,
        "DOMAIN": domain,
        "ORIGINAL_RECIPIENT": original_recipient or recipient,
        "QUEUE_ID": queue_id,
    }
    for name in ("LANG", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    return {k: _CONTROL.sub("", v) for k, v in env.items()}


def _excerpt(data: bytes | bytearray) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    return text[:300] + ("..." if len(text) > 300 else "")


def run_mda(
    command: MdaCommand,
    reverse_path: str,
    recipient: str,
    body_path: str,
    *,
    original_recipient: str = "",
    queue_id: str = "",
    span: trace.Span | None = None,
    tracer: trace.Tracer | None = None,
) -> MdaResult:
    """Deliver the message in `body_path` to `recipient` by running
    `command`; blocks the calling greenlet only. Never raises for what the
    command does. A span "mda.run" (process.executable.path,
    process.exit.code, estafeta.recipient) goes under `span`."""
    tracer = tracer or trace.get_tracer("estafeta.courier.mda")
    argv = expand_argv(command, reverse_path, recipient)
    context = trace.set_span_in_context(span) if span is not None else None
    attributes = {"process.executable.path": argv[0], "estafeta.recipient": recipient}
    with tracer.start_span("mda.run", context, SpanKind.CLIENT, attributes) as mspan:
        result = _run(command, argv, mda_environment(reverse_path, recipient, original_recipient, queue_id), body_path)
        if result.exit_status is not None:
            mspan.set_attribute("process.exit.code", result.exit_status)
        if result.reply.code >= 400:
            mspan.set_status(Status(StatusCode.ERROR, str(result.reply)))
        return result


def _run(command: MdaCommand, argv: list[str], env: dict, body_path: str) -> MdaResult:
    try:
        stdin = open(body_path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        return MdaResult(Reply(451, "4.3.0", f"cannot read the queued message: {e.strerror or e}"), None)
    daemon = os.getpid()
    with stdin:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                start_new_session=True,
                preexec_fn=lambda: die_with_parent(daemon),
            )
        except OSError as e:
            return MdaResult(Reply(451, "4.3.5", f"cannot run the MDA {argv[0]}: {e.strerror or e}"), None)
    kept = bytearray()
    try:
        with gevent.Timeout(command.timeout):
            while chunk := proc.stdout.read1(65536):  # what is there, not 64 KiB
                if len(kept) < command.output_limit:
                    kept += chunk[: command.output_limit - len(kept)]
            status = proc.wait()
    except gevent.Timeout:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        text = f"MDA timed out after {command.timeout:g} s"
        return MdaResult(Reply(451, "4.4.7", _with(text, kept)), None, _excerpt(kept))
    finally:
        proc.stdout.close()
    output = _excerpt(kept)
    if status == 0:
        return MdaResult(Reply(250, "2.0.0", "delivered by the MDA"), 0, output)
    if status == EX_TEMPFAIL:
        return MdaResult(Reply(451, "4.3.0", _with("MDA temporary failure (exit 75)", kept)), status, output)
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return MdaResult(Reply(451, "4.3.0", _with(f"MDA killed by {name}", kept)), status, output)
    return MdaResult(Reply(550, "5.3.0", _with(f"MDA failed (exit {status})", kept)), status, output)


def _with(text: str, output: bytes | bytearray) -> str:
    excerpt = _excerpt(output)
    return f"{text}: {excerpt}" if excerpt else text


#: Seconds a pipe alias's command may run (chasquid's 30 s).
PIPE_TIMEOUT = 30.0


def pipe_command(command_line: str) -> MdaCommand:
    """The MdaCommand of a pipe alias ("name: | /usr/bin/handler --work",
    actors/aliases.py): the line split on spaces, no shell and no quoting
    or expansion (chasquid's docs/aliases.md: "no quotes or escaping
    expansion will be performed"), PIPE_TIMEOUT. Raises ValueError for an
    empty one."""
    return MdaCommand(tuple(command_line.split()), timeout=PIPE_TIMEOUT, substitute=False)


class MdaCourier(Actor):
    """Delivers Deliver requests of route MDA (registered "courier.mda.<n>"):
    runs the transport's command once per recipient (run_mda), or a pipe
    alias's own command (DeliverRecipient.pipe_command, pipe_command()), in
    a `courier.mda` span under the attempt. `commands`: MdaCommand by
    transport name (Config.transport mda); `store`: for the body file."""

    def __init__(self, link: Link | None, commands: dict[str, MdaCommand], store: QueueStore, tracer: trace.Tracer):
        super().__init__(link)
        self._commands = commands
        self._store = store
        self._tracer = tracer

    def on_receive(self, message):
        if isinstance(message, messages_pb2.Deliver):
            return self._deliver(message)
        raise TypeError(f"MdaCourier cannot handle {type(message).__name__}")

    def _deliver(self, m: messages_pb2.Deliver) -> messages_pb2.DeliveryResult:
        transport = self._commands.get(m.route.transport)
        body_path = self._store.body_path(m.queue_id)
        out = messages_pb2.DeliveryResult()
        with self._tracer.start_span(
            "courier.mda",
            context=extract(m.trace),
            kind=SpanKind.CLIENT,
            attributes={"estafeta.queue_id": m.queue_id, "estafeta.transport": m.route.transport or "pipe"},
        ) as span:
            for r in m.recipients:
                command = pipe_command(r.pipe_command) if r.pipe_command else transport
                if command is None:  # a route naming a transport that is gone (config changed)
                    raise KeyError(f"no MDA transport named {m.route.transport!r}")
                result = run_mda(
                    command,
                    m.reverse_path,
                    r.address,
                    body_path,
                    original_recipient=r.original_recipient,
                    queue_id=m.queue_id,
                    span=span,
                    tracer=self._tracer,
                )
                reply = result.reply
                if reply.code < 300:
                    outcome = messages_pb2.OUTCOME_DELIVERED
                elif reply.code >= 500:
                    outcome = messages_pb2.OUTCOME_PERMANENT_FAILURE
                else:
                    outcome = messages_pb2.OUTCOME_TEMPORARY_FAILURE
                out.results.append(
                    messages_pb2.RecipientResult(
                        index=r.index,
                        outcome=outcome,
                        reply=common_pb2.Reply(code=reply.code, enhanced=reply.enhanced, text=reply.text),
                        detail=f"pipe:{r.pipe_command}" if r.pipe_command else f"mda:{m.route.transport}",
                    )
                )
        return out


def commands_of(cfg: config_pb2.Config) -> dict[str, MdaCommand]:
    """MdaCommand per mda transport of the configuration (the timeout from
    MdaTransport.timeout_seconds)."""
    return {
        t.name: MdaCommand(tuple(t.mda.command), timeout=t.mda.timeout_seconds)
        for t in cfg.transport
        if t.WhichOneof("kind") == "mda"
    }
