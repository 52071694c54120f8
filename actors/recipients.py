"""Queue recipients from resolved addresses: what an accepted RCPT TO (or
a recipient of `estafeta sendmail`, or a DSN's recipient) becomes in the
queue file (proto/queue.proto Recipient), from the final recipients
actors/aliases.py resolved it to:

- mailbox -> Recipient(address, mailbox): the router sends it to its
  Maildir;
- remote  -> Recipient(address): to its domain's MX (or a route's
  transport); one an alias of a local domain forwards off-site (its
  address is not the one given) also gets `forwarded_by`, that domain:
  the Enqueuer gives it an SRS reverse-path and the message an ARC seal
  (actors/enqueue.py);
- pipe    -> Recipient(address = the alias, pipe_command): to the MDA
  courier, which runs the command (actors/couriers/mda.py);
- unknown -> Recipient(address) already FAILED with its reply (an alias
  target in a local domain that names nobody) and, unless its NOTIFY
  says otherwise, dsn_due "failed": the QueueItem sends the failure DSN
  at its first attempt and delivers the others (actors/item.py).

ORCPT (RFC 3461 §4.2): the client's when it gave one; else, when the
final address is not the one given at RCPT (an alias, a suffix, a drop
character or the case changed it), "rfc822;<the address given>" (or
"utf-8;..." for a non-ASCII one, RFC 6533 §3), so that a DSN names the
address the sender used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from estafeta.actors.aliases import FinalRecipient
from estafeta.actors.dsn import FAILED
from estafeta.actors.smtp.dsnparams import FAILURE, RcptDsn
from estafeta.proto import queue_pb2
from estafeta.supervisor.config import normalize_domain


def original_recipient(given: str) -> str:
    """ORCPT of an address given at RCPT: "rfc822;<address>" (RFC 3461
    §4.2), "utf-8;<address>" when it is not ASCII (RFC 6533 §3)."""
    return f"{'rfc822' if given.isascii() else 'utf-8'};{given}"


def forwarding_domain(given: str) -> str:
    """The domain (A-label, lower case) of the address given at RCPT whose
    alias forwards a message off-site; "" if it has none that parses."""
    try:
        return normalize_domain(given.rpartition("@")[2])
    except ValueError:
        return ""


def queue_recipients(
    final: Iterable[FinalRecipient], given: str, dsn: RcptDsn | None = None, now: float | None = None
) -> list[queue_pb2.Recipient]:
    """The queue recipients of `final` (the new final recipients of one
    RCPT TO:<given>), with the RCPT's DSN parameters (RFC 3461 NOTIFY,
    ORCPT; None: none given). `now`: Unix time of an unknown recipient's
    failure (default: time.time())."""
    out = []
    orcpt = str(dsn.orcpt) if dsn is not None and dsn.orcpt is not None else ""
    notify = sorted(dsn.notify) if dsn is not None and dsn.notify is not None else []
    for r in final:
        rcpt = queue_pb2.Recipient(address=r.address, status=queue_pb2.PENDING)
        kind = r.kind
        if kind == "mailbox":
            rcpt.mailbox = r.mailbox
        elif kind == "pipe":
            rcpt.pipe_command = r.command
        elif kind == "remote" and r.address != r.original:
            rcpt.forwarded_by = forwarding_domain(r.original)
        elif kind == "unknown":
            reply = r.reply
            rcpt.status = queue_pb2.FAILED
            rcpt.done_at = time.time() if now is None else now
            rcpt.last_error = f"{reply.code} {reply.enhanced} {reply.text}" if reply is not None else "550 5.1.1"
            if dsn is None or dsn.wants(FAILURE):
                rcpt.dsn_due = FAILED
        if orcpt:
            rcpt.original_recipient = orcpt
        elif r.address != given:
            rcpt.original_recipient = original_recipient(given)
        if notify:
            rcpt.notify.extend(notify)
        out.append(rcpt)
    return out
