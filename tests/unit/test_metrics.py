"""Prometheus metrics (supervisor/metrics.py): counted in several processes
into one directory (multiprocess mode), merged into one exposition that
prometheus_client's own parser reads back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from estafeta.actors.queue import QueueGauge
from estafeta.supervisor import metrics

CHILD = textwrap.dedent(
    """
    import sys
    from estafeta.supervisor import metrics
    directory, n = sys.argv[1], int(sys.argv[2])
    metrics.setup(directory, clean=sys.argv[3] == "clean")
    for _ in range(n):
        metrics.count_connection("smtp")
        metrics.count_refused("relay_denied")
        metrics.count_delivery("local", "delivered", 0.5)
        metrics.observe_disk("queue_write", 0.002)
    metrics.count_crash("QueueItem")
    metrics.count_restart("QueueItem")
    metrics.count_spans_dropped(n)
    """
)


def run_child(directory, n: int, clean: bool = False) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(directory), str(n), "clean" if clean else "keep"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def samples(directory) -> dict:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_two_processes_count_into_one_exposition(tmp_path):
    d = tmp_path / "metrics"
    run_child(d, 3, clean=True)
    run_child(d, 4)
    assert len(list(d.glob("counter_*.db"))) == 2  # one file per process
    got = samples(d)
    assert got[("estafeta_connections_total", (("listener", "smtp"),))] == 7
    assert got[("estafeta_messages_refused_total", (("reason", "relay_denied"),))] == 7
    assert got[("estafeta_deliveries_total", (("outcome", "delivered"), ("route", "local")))] == 7
    assert got[("estafeta_delivery_delay_seconds_count", (("route", "local"),))] == 7
    assert got[("estafeta_delivery_delay_seconds_bucket", (("le", "0.5"), ("route", "local")))] == 7
    assert got[("estafeta_disk_request_duration_seconds_count", (("op", "queue_write"),))] == 7
    assert got[("estafeta_actor_crashes_total", (("actor", "QueueItem"),))] == 2
    assert got[("estafeta_actor_restarts_total", (("actor", "QueueItem"),))] == 2
    assert got[("estafeta_spans_dropped_total", ())] == 7
    # Process 0 starts the directory empty.
    run_child(d, 1, clean=True)
    assert samples(d)[("estafeta_connections_total", (("listener", "smtp"),))] == 1


def test_a_lost_directory_never_fails_the_caller(tmp_path):
    script = textwrap.dedent(
        """
        import shutil, sys
        from estafeta.supervisor import metrics
        metrics.setup(sys.argv[1])
        shutil.rmtree(sys.argv[1])
        metrics.count_connection("a-new-label")   # its file cannot be opened: logged, not raised
        metrics.observe_disk("maildir", 0.1)
        print("went on")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "went on" in out.stdout, out.stderr
    assert "metrics: update failed" in out.stderr


def test_before_setup_counting_does_nothing(monkeypatch):
    monkeypatch.setattr(metrics, "_m", None)
    metrics.count_connection("smtp")
    metrics.count_crash("X")
    assert metrics.directory() is None


def test_queue_gauge_is_read_at_scrape_time():
    gauge = QueueGauge(100, 1000)
    gauge.publish(3, 4096)
    registry = CollectorRegistry()
    registry.register(metrics.QueueCollector(gauge))
    text = generate_latest(registry).decode()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got == {"estafeta_queue_items": 3, "estafeta_queue_bytes": 4096}


def test_names_follow_prometheus_conventions(tmp_path):
    run_child(tmp_path, 1, clean=True)
    for name, _ in samples(tmp_path):
        assert name.startswith("estafeta_")
        base = name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        assert base.endswith(("_total", "_seconds")), name
    assert os.environ.get(metrics.ENV) != str(tmp_path)  # the child's setting stayed in the child
