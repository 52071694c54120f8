"""The control channel (supervisor/control.py) over a real Unix socket, and
the tree it describes (WhichChildren with flags and restart accounting,
supervisor/tree.py)."""

from __future__ import annotations

import os
import socket
import stat
import struct

import gevent
import pytest
from waiting import wait_for

from estafeta.proto import control_pb2, messages_pb2
from estafeta.proto import supervision_pb2 as pb
from estafeta.supervisor import chaos, control, registry
from estafeta.supervisor.actor import Actor, Link, wait_started
from estafeta.supervisor.tree import ChildSpec, Supervisor, SupervisorSpec, start_child


class Worker(Actor):
    def __init__(self, link: Link, _args=None):
        super().__init__(link)

    def on_receive(self, message):
        if isinstance(message, messages_pb2.AttemptDue):
            raise RuntimeError("boom")
        return None


def worker(link, args=None):
    return Worker.start(link, args)


def tree_spec() -> SupervisorSpec:
    items = SupervisorSpec(
        name="items",
        strategy="simple_one_for_one",
        intensity=100,
        period=30.0,
        args_type=messages_pb2.QueueItemArgs,
        children=[ChildSpec(id="item", start=worker, restart="transient")],
    )
    return SupervisorSpec(
        name="root",
        strategy="one_for_one",
        intensity=5,
        period=30.0,
        children=[
            ChildSpec(id="a", start=lambda link, _a: registry.register("a", worker(link)), restart="permanent"),
            ChildSpec(
                id="items",
                start=lambda link, _a: registry.register("items", Supervisor.start(link, items)),
                type="supervisor",
                shutdown="infinity",
            ),
        ],
    )


@pytest.fixture
def daemon_tree(tmp_path):
    root = registry.register("root", Supervisor.start(None, tree_spec()))
    root.ask(pb.WhichChildren())
    results = []

    def handler(action):
        results.append(action)
        return [control_pb2.QueueActionResult(queue_id=q, ok=q != "bad", error="no such item" if q == "bad" else "")
                for q in action.queue_ids]  # fmt: skip

    server = control.ControlServer.start(None, str(tmp_path), 3, handler)
    assert wait_started(server, 5)
    yield root, server, results
    server.stop()
    root.stop()
    registry.clear()
    chaos.reset()


def test_socket_and_directory_are_private(daemon_tree, tmp_path):
    path = control.socket_path(str(tmp_path), 3)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert control.processes(str(tmp_path)) == [3]


def test_tree_query_walks_every_supervisor_with_flags_and_crashes(daemon_tree, tmp_path):
    root, _, _ = daemon_tree
    items = registry.whereis("items")
    for _ in range(3):
        start_child(items, messages_pb2.QueueItemArgs(queue_id="q"))
    registry.whereis("a").tell(messages_pb2.AttemptDue())  # crashes "a": restarted
    wait_for(lambda: registry.is_alive("a") and root.ask(pb.WhichChildren()).children[0].restarts == 1)
    (reply,) = control.call(str(tmp_path), control_pb2.ControlRequest(tree=control_pb2.TreeQuery()))
    assert reply.error == "" and reply.process == 3
    t = reply.tree
    assert (t.name, t.strategy, t.intensity, t.period_seconds) == ("root", "one_for_one", 5, 30.0)
    assert t.restarts_in_window == 1 and t.crashes == 1 and t.last_crash == "a: RuntimeError: boom"
    a = {c.child_id: c for c in t.children}["a"]
    assert (a.restart, a.state, a.restarts, a.restarts_in_window) == ("permanent", "running", 1, 1)
    assert a.last_error == "RuntimeError: boom" and a.actor_class == "Worker"
    (sub,) = t.supervisors
    assert (sub.name, sub.strategy, sub.total_children) == ("items", "simple_one_for_one", 3)
    assert [c.restart for c in sub.children] == ["transient"] * 3


def test_which_children_limit_lists_the_notable_first(daemon_tree):
    items = registry.whereis("items")
    ids = [start_child(items, messages_pb2.QueueItemArgs(queue_id=str(i))).child_id for i in range(10)]
    # Crash the 8th: it restarts, and a limited listing shows it first.
    victim = [c for c in items.ask(pb.WhichChildren()).children if c.child_id == ids[7]][0]
    from pykka import ActorRegistry

    ActorRegistry.get_by_urn(victim.actor_urn).tell(messages_pb2.AttemptDue())
    wait_for(lambda: any(c.restarts for c in items.ask(pb.WhichChildren()).children))
    got = items.ask(pb.WhichChildren(limit=3))
    assert got.total == 10 and len(got.children) == 3
    assert got.children[0].child_id == ids[7] and got.children[0].restarts == 1


def test_queue_actions_go_to_the_handler(daemon_tree, tmp_path):
    _, _, results = daemon_tree
    req = control_pb2.ControlRequest(
        queue=control_pb2.QueueAction(action=control_pb2.QueueAction.HOLD, queue_ids=["x", "bad"])
    )
    (reply,) = control.call(str(tmp_path), req, process=3)
    assert [(r.queue_id, r.ok, r.error) for r in reply.results] == [("x", True, ""), ("bad", False, "no such item")]
    assert results[0].action == control_pb2.QueueAction.HOLD


def test_without_a_handler_queue_actions_are_an_error(tmp_path):
    server = control.ControlServer.start(None, str(tmp_path), 0)
    assert wait_started(server, 5)
    try:
        req = control_pb2.ControlRequest(queue=control_pb2.QueueAction(action=control_pb2.QueueAction.FLUSH))
        (reply,) = control.call(str(tmp_path), req)
        assert "not available" in reply.error
        (reply,) = control.call(str(tmp_path), control_pb2.ControlRequest(tree=control_pb2.TreeQuery()))
        assert "root supervisor" in reply.error  # nothing registered as "root"
    finally:
        server.stop()


def _raw(tmp_path, data: bytes, wait: float = 5.0) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(wait)
    s.connect(control.socket_path(str(tmp_path), 3))
    s.sendall(data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def test_bad_frames_get_an_error_reply_and_the_server_goes_on(daemon_tree, tmp_path):
    too_big = _raw(tmp_path, struct.pack(">I", control.MAX_REQUEST + 1))
    reply = control_pb2.ControlReply.FromString(too_big[4:])
    assert "over the limit" in reply.error
    garbage = b"\xff\xff\xff"
    reply = control_pb2.ControlReply.FromString(_raw(tmp_path, struct.pack(">I", len(garbage)) + garbage)[4:])
    assert reply.error.startswith("bad request")
    (ok,) = control.call(str(tmp_path), control_pb2.ControlRequest(tree=control_pb2.TreeQuery()))
    assert ok.error == ""


def test_a_silent_client_is_cut_after_the_timeout(daemon_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(control, "IO_TIMEOUT", 0.2)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(control.socket_path(str(tmp_path), 3))
    s.sendall(b"\x00\x00")  # half a header, then nothing
    data = s.recv(65536)
    s.close()
    assert "not received in time" in control_pb2.ControlReply.FromString(data[4:]).error


def test_client_errors_name_the_process(tmp_path):
    with pytest.raises(control.ControlError, match="no running estafeta daemon"):
        control.call(str(tmp_path), control_pb2.ControlRequest(tree=control_pb2.TreeQuery()))
    os.makedirs(control.control_dir(str(tmp_path)))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(control.socket_path(str(tmp_path), 1))  # bound, never listening
    (reply,) = control.call(str(tmp_path), control_pb2.ControlRequest(tree=control_pb2.TreeQuery()), timeout=1)
    assert reply.process == 1 and "not running" in reply.error
    dead.close()


def test_long_data_dir_paths_work(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    server = control.ControlServer.start(None, str(deep), 0)
    try:
        wait_for(lambda: control.processes(str(deep)) == [0])
        (reply,) = control.call(str(deep), control_pb2.ControlRequest())
        assert reply.error == "empty request"
    finally:
        server.stop()
    gevent.sleep(0)
    assert control.processes(str(deep)) == []  # the socket is removed on stop


def test_a_handler_may_answer_with_the_whole_reply(tmp_path):
    """actors/queuecontrol.py's QueueControl.handle returns a ControlReply."""

    def handler(action):
        return control_pb2.ControlReply(
            results=[control_pb2.QueueActionResult(queue_id="q", ok=False, error="not held")]
        )

    server = control.ControlServer.start(None, str(tmp_path), 2, handler)
    assert wait_started(server, 5)
    try:
        req = control_pb2.ControlRequest(queue=control_pb2.QueueAction(action=control_pb2.QueueAction.RELEASE))
        (reply,) = control.call(str(tmp_path), req, process=2)
        assert (reply.process, reply.results[0].error) == (2, "not held")
    finally:
        server.stop()
