"""The in-flight journal: remote transactions whose final dot went out and
whose outcome the queue has not recorded yet.

A delivery over SMTP or LMTP can be cut after the final dot and before
its reply — the connection breaks, or this process is killed — and then
nobody knows whether the server took the message. Retrying is the only
safe choice (a lost message is worse than a duplicate), so such a retry
may deliver twice: the unavoidable at-least-once case of RFC 5321 §6.1.
This journal makes those retries known: a line "dot <queue id>
<recipient indices>" is appended just before the final dot is sent, and
"settled <queue id>" once the item's file records the outcome. At start-up
the lines left unsettled name the recipients whose next delivery may be a
duplicate; QueueItem logs and counts them when it delivers them again.

The file is <data_dir>/inflight-<process>.log, one per serving process,
appended with O_APPEND writes and never fsync'd: a write survives the
process's death (SIGKILL, a crash), which is what it is for; after a power
loss the journal may miss its last lines, and such a duplicate goes
uncounted (the message is still never lost). At start-up, and whenever it
grows past ROTATE_BYTES, it is rewritten with the unsettled lines only, so
it stays small.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
#: The journal is rewritten with its unsettled lines past this size (bytes).
ROTATE_BYTES = 4 << 20


def journal_path(data_dir: str, process: int) -> str:
    """<data_dir>/inflight-<process>.log"""
    return os.path.join(data_dir, f"inflight-{process}.log")


def _parse(text: str) -> dict[str, set[int]]:
    """Unsettled queue id -> recipient indices, from journal lines (a torn
    last line is ignored)."""
    open_: dict[str, set[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "dot":
            try:
                indices = {int(i) for i in parts[2].split(",") if i}
            except ValueError:
                continue
            open_.setdefault(parts[1], set()).update(indices)
        elif len(parts) == 2 and parts[0] == "settled":
            open_.pop(parts[1], None)
    return open_


class InFlightJournal:
    """One serving process's journal (see the module docstring). Blocking
    but short calls (one write(2) to the page cache), from any greenlet."""

    def __init__(self, path: str):
        """Read what an earlier run left unsettled (`unsettled`), then start
        the file afresh holding only that. Raises OSError if the file cannot
        be written."""
        self.path = path
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                self.unsettled: dict[str, set[int]] = _parse(f.read())
        except FileNotFoundError:
            self.unsettled = {}
        #: This run's transactions with their dot sent, not settled yet.
        self._open: dict[str, set[int]] = {}
        self._fd = -1
        self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by the lines still open, and append from there."""
        tmp = self.path + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            for table in (self.unsettled, self._open):
                for queue_id, indices in sorted(table.items()):
                    f.write(f"dot {queue_id} {','.join(map(str, sorted(indices)))}\n")
        os.replace(tmp, self.path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, _FLAGS, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _append(self, line: str) -> None:
        data = line.encode()
        os.write(self._fd, data)
        self._size += len(data)
        if self._size > ROTATE_BYTES:
            self._rewrite()

    def dot_sent(self, queue_id: str, indices: Iterable[int]) -> None:
        """The final dot of a transaction for these recipients of the item
        is about to go out."""
        indices = sorted(indices)
        self._open.setdefault(queue_id, set()).update(indices)
        self._append(f"dot {queue_id} {','.join(map(str, indices))}\n")

    def settled(self, queue_id: str) -> None:
        """The item's file now records the outcome (or the item is gone)."""
        earlier = self.unsettled.pop(queue_id, None)
        if self._open.pop(queue_id, None) is not None or earlier is not None:
            self._append(f"settled {queue_id}\n")

    def maybe_delivered(self, queue_id: str) -> set[int]:
        """Recipients of the item whose last transaction was cut after its
        final dot in an earlier run (empty when none)."""
        return self.unsettled.get(queue_id, set())

    def close(self) -> None:
        os.close(self._fd)
