"""`estafeta sendmail`: the sendmail command line that cron, mailx, PHP and
scripts use, writing into the maildrop (store/maildrop.py) so mail is
accepted while the daemon is down; the daemon picks it up when it runs
(Postfix's sendmail and postdrop do the same).

    estafeta sendmail [-t] [-i | -oi] [-f sender] [-F "full name"] [-bm] [--] [recipient ...] < message

Options (Postfix's sendmail(1) meanings):
  -t            recipients also from the To, Cc and Bcc fields (Bcc removed)
  -i, -oi       a line with a single "." does not end the message
  -f, -r ADDR   the envelope sender (reverse-path); "" or "<>" for none
  -F NAME       the full name of a From field added when there is none
  -bm           deliver mail (the default and only mode)
  -C FILE       the estafeta configuration file (also --config FILE)
  -o<x>, -v, -B type, -N dsn, -R ret, -V envid, -X log, -L label: accepted and ignored
  -bs, -bp, -bd, -bi, -q...: other modes: refused (EX_USAGE)

The message gets the fields a local submission lacks (RFC 6409 §8.3, as
Postfix's cleanup adds them): From, Date, Message-ID; line ends become
CRLF. Unqualified addresses ("root") get the first local domain.

Exit status (sysexits.h): 0 EX_OK, 64 EX_USAGE (bad option, no
recipient), 65 EX_DATAERR (bad address, message too big), 73 EX_CANTCREAT
(the maildrop cannot be written), 74 EX_IOERR (reading stdin), 77
EX_NOPERM (no permission), 78 EX_CONFIG (bad configuration).
"""

from __future__ import annotations

import email.utils
import os
import pwd
import re
import sys
import time
from dataclasses import dataclass, field

from estafeta.actors.smtp.parser import ParseError, parse_path
from estafeta.actors.smtp.replies import Reply
from estafeta.proto import maildrop_pb2
from estafeta.store import maildrop
from estafeta.supervisor.config import ConfigError, load_config, normalize_domain

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_CANTCREAT = 73
EX_IOERR = 74
EX_NOPERM = 77
EX_CONFIG = 78

_BAD = Reply(501, "5.1.3", "bad address")
_HEADER_LINE = re.compile(rb"[!-9;-~]+:")  # RFC 5322 §2.2 field name, then ":"


class Usage(Exception):
    """A command line sendmail does not take; exit EX_USAGE."""


class DataError(Exception):
    """Bad input (address, message); exit EX_DATAERR."""


@dataclass
class Options:
    extract: bool = False  # -t
    dot_ends: bool = True  # not -i / -oi
    sender: str | None = None  # -f / -r
    full_name: str = ""  # -F
    config: str | None = None  # -C / --config
    data_dir: str | None = None  # --data-dir
    recipients: list[str] = field(default_factory=list)


#: Options that take an argument (attached, "-fx", or the next word) and are ignored.
_IGNORED_WITH_ARG = set("BNRVXLhO")
_IGNORED_FLAGS = set("vmneUG")


def parse_args(argv: list[str]) -> Options:
    """sendmail's command line -> Options. Raises Usage."""
    o = Options()
    i = 0

    def value(arg: str) -> str:
        nonlocal i
        if len(arg) > 2:
            return arg[2:]
        i += 1
        if i >= len(argv):
            raise Usage(f"option {arg} needs a value")
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            o.recipients += argv[i + 1 :]
            break
        if arg in ("--config", "--data-dir"):
            if i + 1 >= len(argv):
                raise Usage(f"option {arg} needs a value")
            i += 1
            if arg == "--config":
                o.config = argv[i]
            else:
                o.data_dir = argv[i]
        elif not arg.startswith("-") or arg == "-":
            o.recipients.append(arg)
        else:
            flag = arg[1:2]
            if flag == "t":
                o.extract = True
            elif flag == "i":
                o.dot_ends = False
            elif flag == "o":
                if arg[2:] == "i":
                    o.dot_ends = False  # -oi; other -oX are sendmail.cf options: ignored
            elif flag in ("f", "r"):
                o.sender = value(arg)
            elif flag == "F":
                o.full_name = value(arg)
            elif flag == "C":
                o.config = value(arg)
            elif flag == "b":
                mode = arg[2:]
                if mode != "m":
                    raise Usage(
                        f"-b{mode}: only -bm (deliver mail) is supported; `estafeta queue list` shows the queue"
                    )
            elif flag == "q":
                raise Usage("-q: the daemon runs its queue itself")
            elif flag in _IGNORED_WITH_ARG:
                value(arg)
            elif flag in _IGNORED_FLAGS:
                pass
            else:
                raise Usage(f"unknown option {arg}")
        i += 1
    return o


def read_message(stream, dot_ends: bool) -> bytes:
    """The message from stdin; without -i a line "." ends it. Line ends
    become CRLF (bare CR and LF, as a local program writes them)."""
    data = stream.read()
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if dot_ends and b"." in lines:
        lines = lines[: lines.index(b".")]
    return b"".join(line + b"\r\n" for line in lines)


def split_header(message: bytes) -> tuple[list[bytes], bytes]:
    """(header field lines with their CRLF, the rest from the empty line
    on). A message whose first line is not a field has no header."""
    if not _HEADER_LINE.match(message):
        return [], b"\r\n" + message if message else b"\r\n"
    end = message.find(b"\r\n\r\n")
    head, rest = (message, b"\r\n") if end < 0 else (message[: end + 2], message[end + 2 :])
    fields: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields, rest


def _field_name(line: bytes) -> bytes:
    return line.split(b":", 1)[0].strip().lower()


def header_addresses(fields: list[bytes], names: tuple[bytes, ...]) -> list[str]:
    values = [f.split(b":", 1)[1].decode("utf-8", "replace") for f in fields if _field_name(f) in names]
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def qualify(address: str, domain: str) -> str:
    """ "root" -> "root@<domain>"; "<a@b>" -> "a@b". Raises DataError for
    what is not a mailbox (RFC 5321 §4.1.2)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if "@" not in address:
        address = f"{address}@{domain}"
    try:
        path, end = parse_path(f"<{address}>", 0, _BAD)
    except ParseError:
        raise DataError(f"bad address: {address}") from None
    return path


def prepare(o: Options, message: bytes, login: str, domain: str, hostname: str) -> tuple[str, list[str], bytes]:
    """(reverse-path, recipients, message with the added fields). Raises
    DataError, Usage."""
    fields, rest = split_header(message)
    recipients = [qualify(r, domain) for r in o.recipients]
    if o.extract:
        recipients += [qualify(a, domain) for a in header_addresses(fields, (b"to", b"cc", b"bcc"))]
        fields = [f for f in fields if _field_name(f) != b"bcc"]  # RFC 5322 §3.6.3
    unique: dict[str, str] = {}
    for r in recipients:
        unique.setdefault(r.lower(), r)
    recipients = list(unique.values())
    if not recipients:
        raise Usage("no recipients (give them as arguments, or -t to take them from To, Cc and Bcc)")
    if o.sender is None:
        sender = f"{login}@{domain}"
    elif o.sender.strip() in ("", "<>"):
        sender = ""
    else:
        sender = qualify(o.sender, domain)
    names = {_field_name(f) for f in fields}
    added = []
    if b"from" not in names:
        added.append(f"From: {email.utils.formataddr((o.full_name, sender or f'{login}@{domain}'))}\r\n")
    if b"date" not in names:
        added.append(f"Date: {email.utils.formatdate(localtime=True)}\r\n")
    if b"message-id" not in names:
        added.append(f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n")
    body = b"".join(fields) + "".join(added).encode("utf-8") + rest
    return sender, recipients, body


def main(argv: list[str], stdin=None, stderr=None) -> int:
    """Run `estafeta sendmail ARGV`; returns a sysexits.h status."""
    stdin = stdin or sys.stdin.buffer
    stderr = stderr or sys.stderr

    def fail(status: int, why: str) -> int:
        print(f"estafeta sendmail: {why}", file=stderr)
        return status

    try:
        o = parse_args(argv)
    except Usage as e:
        return fail(EX_USAGE, str(e))
    try:
        cfg = load_config(o.config or os.environ.get("ESTAFETA_CONFIG"), o.data_dir)
    except ConfigError as e:
        return fail(EX_CONFIG, str(e))
    domain = normalize_domain(cfg.local_domain[0].name) if cfg.local_domain else cfg.hostname
    uid = os.getuid()
    try:
        login = pwd.getpwuid(uid).pw_name
    except KeyError:
        login = str(uid)
    try:
        message = read_message(stdin, o.dot_ends)
    except OSError as e:
        return fail(EX_IOERR, f"cannot read the message: {e.strerror}")
    try:
        sender, recipients, body = prepare(o, message, login, domain, cfg.hostname)
    except Usage as e:
        return fail(EX_USAGE, str(e))
    except DataError as e:
        return fail(EX_DATAERR, str(e))
    if len(body) > cfg.max_data_size_bytes:
        return fail(EX_DATAERR, f"message too big: {len(body)} bytes, at most {cfg.max_data_size_bytes}")
    envelope = maildrop_pb2.MaildropEnvelope(
        reverse_path=sender,
        recipient=recipients,
        submitted_at=time.time(),
        uid=uid,
        login=login,
        size=len(body),
        eight_bit=not body.isascii(),
        smtputf8=not all(a.isascii() for a in [sender, *recipients]),
    )
    data_dir = os.path.abspath(cfg.data_dir)
    try:
        maildrop.ensure(data_dir)
        maildrop.write(data_dir, envelope, body)
    except PermissionError as e:
        return fail(EX_NOPERM, f"{e.filename}: {e.strerror}")
    except OSError as e:
        return fail(EX_CANTCREAT, f"cannot write the maildrop in {data_dir}: {e.strerror}")
    return EX_OK
