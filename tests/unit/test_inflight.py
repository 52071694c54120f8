"""store/inflight.py: transactions cut after their final dot are known at
the next start; settled ones are forgotten; the file stays small."""

from estafeta.store import inflight
from estafeta.store.inflight import InFlightJournal


def test_unsettled_dots_survive_a_restart_and_settled_ones_do_not(tmp_path):
    path = inflight.journal_path(str(tmp_path), 1)
    j = InFlightJournal(path)
    assert j.unsettled == {} and j.maybe_delivered("q1") == set()
    j.dot_sent("q1", [0, 2])
    j.dot_sent("q2", [1])
    j.dot_sent("q1", [3])
    j.settled("q2")
    j.settled("q9")  # never sent: nothing written
    # the process dies here (no close, no fsync: the writes are in the file)
    again = InFlightJournal(path)
    assert again.maybe_delivered("q1") == {0, 2, 3} and again.maybe_delivered("q2") == set()
    with open(path) as f:
        assert f.read() == "dot q1 0,2,3\n"  # rewritten: only what is open
    again.settled("q1")
    assert again.maybe_delivered("q1") == set()
    again.close()
    assert InFlightJournal(path).unsettled == {}


def test_a_torn_last_line_is_ignored_and_the_file_rotates(tmp_path, monkeypatch):
    path = inflight.journal_path(str(tmp_path), 0)
    with open(path, "w") as f:
        f.write("dot q1 1\ndot q2 x\ngarbage\ndot q3 0,")
    j = InFlightJournal(path)
    assert j.unsettled == {"q1": {1}, "q3": {0}}
    monkeypatch.setattr(inflight, "ROTATE_BYTES", 200)
    for n in range(50):
        j.dot_sent(f"r{n}", [0])
        j.settled(f"r{n}")
    j.dot_sent("open", [4])
    import os

    assert os.path.getsize(path) < 260
    assert InFlightJournal(path).unsettled == {"q1": {1}, "q3": {0}, "open": {4}}
