"""Noticing changed files by polling their status (as maddy reloads its
certificates), with no inotify dependency: a file's stamp is its
(mtime in ns, size, inode, device); an atomic replace (rename) changes the
inode, an edit in place the mtime or size. A missing file has the stamp
None, so a file that appears or goes away is a change too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

Stamp = tuple[int, int, int, int] | None


def stamp(path: str) -> Stamp:
    """The file's stamp, or None if it does not exist (or cannot be
    stat'ed: a permission problem shows up when it is read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class Stamps:
    """The stamps of a set of files as last seen."""

    def __init__(self) -> None:
        self._seen: dict[str, Stamp] = {}

    def changed(self, paths: Iterable[str]) -> list[str]:
        """The paths among `paths` whose stamp differs from the one seen
        last (every path, the first time), and the paths seen last time
        that are no longer among them; remembers the new stamps. Blocking
        (one stat per path)."""
        now = {p: stamp(p) for p in paths}
        out = [p for p, s in now.items() if p not in self._seen or self._seen[p] != s]
        out += [p for p in self._seen if p not in now]
        self._seen = now
        return out

    def forget(self) -> None:
        """Forget every stamp: the next changed() reports all."""
        self._seen = {}
