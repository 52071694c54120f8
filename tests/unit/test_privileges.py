"""Dropping privileges after binding (supervisor/privileges.py), in a
child Python started as root: it binds a privileged port, hands a data
directory to `nobody`, drops to it, and must then serve on the bound socket,
write the data directory, and be unable to become root again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import pytest
from peers.ports import privileged_free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")

CHILD = r"""
import os, sys
from estafeta.proto import config_pb2
from estafeta.supervisor import privileges
from estafeta.actors import listener
from estafeta.supervisor.config import parse_listen_address
port, data_dir = int(sys.argv[1]), sys.argv[2]
cfg = config_pb2.Config(user="nobody", smtp_address=[f"127.0.0.1:{port}"])
who = privileges.identity(cfg)
bound = privileges.prebind(cfg, 2)
os.makedirs(os.path.join(data_dir, "queue"))
open(os.path.join(data_dir, "queue", "x.item"), "w").close()
os.makedirs(os.path.join(data_dir, "mail", "localhost", "a", "new"))
open(os.path.join(data_dir, "mail", "localhost", "a", "new", "m1"), "w").close()
changed = privileges.hand_over(data_dir, who)
privileges.drop(who)
assert (os.getuid(), os.geteuid(), os.getgid()) == (65534, 65534, 65534), (os.getuid(), os.getgid())
try:
    os.setuid(0)
except PermissionError:
    pass
else:
    raise SystemExit("became root again")
arg, fds = privileges.child_arguments(bound, 1)
assert arg == f"127.0.0.1|{port}|{fds[0]}" and bound[("127.0.0.1", port)][1].fileno() == fds[0]
bound[("127.0.0.1", port)][1].close()  # serving process 1's socket: not served here (SO_REUSEPORT would share)
# A listener opened now gets the prebound socket (binding anew would fail).
sock = listener.open_listening_socket(parse_listen_address(f"127.0.0.1:{port}"))
sock.setblocking(True)
print("ready", changed, flush=True)
conn, _ = sock.accept()
conn.sendall(b"220 as nobody\r\n")
conn.close()
with open(os.path.join(data_dir, "queue", "y.item"), "w") as f:
    f.write("written by nobody")
print("done", flush=True)
"""


def test_bind_then_drop_to_nobody():
    port = privileged_free_port()
    base = tempfile.mkdtemp(prefix="estafeta-priv-")
    os.chmod(base, 0o755)
    data_dir = os.path.join(base, "data")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), data_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + proc.stderr.read()
        assert int(line.split()[1]) >= 6  # data_dir, queue, x.item, mail, its folders
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            assert c.makefile("rb").readline() == b"220 as nobody\r\n"
        assert proc.stdout.readline().strip() == "done", proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    st = os.stat(os.path.join(data_dir, "queue", "y.item"))
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert os.stat(os.path.join(data_dir, "mail", "localhost", "a", "new")).st_uid == 65534
    assert os.stat(os.path.join(data_dir, "mail", "localhost", "a", "new", "m1")).st_uid == 0  # messages untouched


def test_unknown_user_is_a_clear_error():
    from estafeta.proto import config_pb2
    from estafeta.supervisor import privileges

    with pytest.raises(privileges.PrivilegeError, match="no such user"):
        privileges.identity(config_pb2.Config(user="no-such-user-here"))
    assert privileges.identity(config_pb2.Config()) is None
    who = privileges.identity(config_pb2.Config(user="nobody", group="nogroup"))
    assert (who.uid, who.gid) == (65534, 65534)
