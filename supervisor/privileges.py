"""Running unprivileged after binding (Config.user, Config.group), as
Postfix and chasquid do: the daemon started as root binds its listening
sockets (ports below 1024), hands the data directory to the user, and
drops to it (setgroups, setgid, setuid) before any actor starts. Every
process it starts later (serving processes, disk workers) inherits the
unprivileged identity; they get the sockets bound here as inherited file
descriptors (actors/listener.py PREBOUND), since they could not bind them.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
from dataclasses import dataclass

from estafeta.actors import listener
from estafeta.actors.listener import ListenError, open_listening_socket
from estafeta.proto import config_pb2
from estafeta.supervisor.config import listener_specs

log = logging.getLogger("estafeta.daemon")


class PrivilegeError(Exception):
    """The identity cannot be taken; str() says why."""


@dataclass(frozen=True)
class Identity:
    """Who to run as: user name, uid, gid."""

    name: str
    uid: int
    gid: int


def identity(cfg: config_pb2.Config) -> Identity | None:
    """The Config.user / group identity, or None when none is configured.
    Raises PrivilegeError for an unknown user or group."""
    if not cfg.user:
        return None
    try:
        pw = pwd.getpwuid(int(cfg.user)) if cfg.user.isdigit() else pwd.getpwnam(cfg.user)
    except KeyError:
        raise PrivilegeError(f'no such user "{cfg.user}"') from None
    gid = pw.pw_gid
    if cfg.group:
        try:
            gid = grp.getgrgid(int(cfg.group)).gr_gid if cfg.group.isdigit() else grp.getgrnam(cfg.group).gr_gid
        except KeyError:
            raise PrivilegeError(f'no such group "{cfg.group}"') from None
    return Identity(pw.pw_name, pw.pw_uid, gid)


def prebind(cfg: config_pb2.Config, processes: int) -> dict[tuple[str, int], list[socket.socket]]:
    """Bind every listener of `cfg` now (as root): one socket per serving
    process (SO_REUSEPORT with more than one, as the listeners would), put
    them in listener.PREBOUND, and return them. Raises ListenError."""
    bound: dict[tuple[str, int], list[socket.socket]] = {}
    try:
        for spec in listener_specs(cfg):
            key = (spec.address.host, spec.address.port)
            if key not in bound:
                bound[key] = [open_listening_socket(spec.address, processes > 1) for _ in range(processes)]
    except ListenError:
        for socks in bound.values():
            for s in socks:
                s.close()
        raise
    for key, socks in bound.items():
        listener.PREBOUND[key] = socks[0]
    return bound


def hand_over(data_dir: str, who: Identity) -> int:
    """Give the data directory to `who`: the directory, its top-level
    folders, every file and folder of the queue, the user and alias files,
    the TLS and maildrop folders, the span store, and the Maildir folders
    (not the messages in them). Returns how many entries changed owner.
    Raises OSError."""
    changed = 0

    def own(path: str) -> None:
        nonlocal changed
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (who.uid, who.gid):
            os.lchown(path, who.uid, who.gid)
            changed += 1

    own(data_dir)
    for entry in os.scandir(data_dir):
        own(entry.path)
        if not entry.is_dir(follow_symlinks=False):
            continue
        for root, dirs, files in os.walk(entry.path):
            for d in dirs:
                own(os.path.join(root, d))
            if entry.name != "mail":  # a Maildir's messages need not be ours
                for f in files:
                    own(os.path.join(root, f))
    return changed


def drop(who: Identity) -> None:
    """Become `who`: supplementary groups of the user (initgroups), gid,
    uid — in that order, the uid last. Then check root cannot be taken
    back. Raises PrivilegeError."""
    try:
        os.initgroups(who.name, who.gid)
        os.setgid(who.gid)
        os.setuid(who.uid)
    except OSError as e:
        raise PrivilegeError(f"cannot become {who.name} (uid {who.uid}, gid {who.gid}): {e.strerror}") from None
    if who.uid != 0:
        try:
            os.setuid(0)
        except OSError:
            pass
        else:
            raise PrivilegeError("root could be taken back after dropping privileges")
    log.info("running as user=%s uid=%d gid=%d", who.name, who.uid, who.gid)


def child_arguments(bound: dict[tuple[str, int], list[socket.socket]], process: int) -> tuple[str, tuple[int, ...]]:
    """(the --listen-fds value, the fds to pass) for serving process
    `process`: "host|port|fd,..." with its socket of every address."""
    parts, fds = [], []
    for (host, port), socks in bound.items():
        fd = socks[process].fileno()
        os.set_inheritable(fd, True)
        parts.append(f"{host}|{port}|{fd}")
        fds.append(fd)
    return ",".join(parts), tuple(fds)


def adopt(listen_fds: str) -> None:
    """In a serving process: take the sockets the daemon bound for it
    (child_arguments) into listener.PREBOUND."""
    for part in filter(None, listen_fds.split(",")):
        host, port, fd = part.rsplit("|", 2)
        sock = listener.adopt_socket(int(fd))
        listener.PREBOUND[(host, int(port))] = sock
