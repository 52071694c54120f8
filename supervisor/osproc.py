"""Child OS processes of the daemon die with it.

The daemon's children (disk workers, the other serving processes) must
not outlive it: a `kill -9` of the daemon, then a restart, must never find
an old child still writing the queue. `die_with_parent()` asks the kernel
(Linux prctl PR_SET_PDEATHSIG) to SIGKILL the calling process when its
parent thread exits, and exits at once if the parent is already gone.
Elsewhere it does nothing more than that check; the children also end on
their own when their pipe or socket to the daemon reaches end-of-file.
Dependency-free: the disk worker imports it.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the daemon (pid `parent_pid`) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)  # the daemon died before we asked
