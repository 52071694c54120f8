"""The actors that own files and reload them: the Directory (users,
aliases) and the CertificateWatcher (TLS), by polling and on Reload; the
SIGHUP Reloader that asks them; the config's new fields; the Received
header with TLS and AUTH."""

from __future__ import annotations

import pytest
from peers.certs import TestCA
from waiting import wait_for  # tests/unit is on sys.path

from estafeta.actors.directory import Directory, DirectoryView
from estafeta.actors.received import received_header
from estafeta.actors.tls import CertificateWatcher, CertStore, TlsInfo
from estafeta.proto import config_pb2, reload_pb2, users_pb2
from estafeta.store import userdb
from estafeta.supervisor import registry
from estafeta.supervisor.config import (
    ConfigError,
    default_config,
    format_config,
    listener_specs,
    load_config,
    parse_config,
)
from estafeta.supervisor.reload import ConfigReload, Reloader, apply_live_fields, ask_reload


def test_directory_publishes_and_reloads_users_and_aliases(tmp_path):
    cfg = parse_config(
        f'data_dir: "{tmp_path}"\ndirectory_poll_seconds: 0.05\nlocal_domain {{ name: "example.test" user: "postmaster" }}\n'
    )
    view = DirectoryView()
    ref = Directory.start(None, cfg, view)
    try:
        wait_for(lambda: view.resolver is not None, timeout=10)  # on_start loads the files, then publishes
        assert view.resolve("postmaster@example.test").accepted
        assert view.resolve("alice@example.test").reply.code == 550
        users_dir = str(tmp_path / "domains")
        userdb.modify(users_dir, "example.test", lambda db: db.user.add(name="alice"))
        wait_for(lambda: view.resolve("Alice@example.test").accepted, timeout=10)
        (tmp_path / "domains/example.test/aliases").write_text("team: alice, friend@remote.test\n")
        wait_for(lambda: len(view.resolve("team@example.test").recipients) == 2, timeout=10)
        (tmp_path / "domains/example.test/aliases").write_text("team alice\n")  # broken
        result = ref.ask(reload_pb2.Reload())
        assert "aliases:1: missing ':'" in result.error[0]
        assert len(view.resolve("team@example.test").recipients) == 2  # the previous aliases stay
        assert view.credentials.check_password("alice@example.test", "x") is None  # receive-only
    finally:
        ref.stop()
    assert not ref.is_alive()


def test_certificate_watcher_and_the_reloader(tmp_path):
    ca = TestCA(tmp_path / "ca")
    certs = tmp_path / "live"
    ca.issue(["mx.test"]).install_certbot(certs, "mx.test")
    store = CertStore([str(certs)], "mx.test")
    store.refresh()
    first = store.context
    ref = CertificateWatcher.start(None, store, 3600.0)
    registry.register("certificates", ref)
    try:
        reloader = Reloader()
        reloader.register("certificates", ask_reload("certificates"))
        reloader.register("absent", ask_reload("no-such-actor"))
        assert reloader.reload() == [("certificates", True, "(unchanged)"), ("absent", True, "(not running)")]
        ca.issue(["mx.test"]).install_certbot(certs, "mx.test")
        assert reloader.reload()[0] == ("certificates", True, "certificates")
        assert store.context is not first
        assert reloader.step("absent") is not None and reloader.step("nothing") is None
        reloader.register("boom", lambda: 1 / 0)
        assert reloader.reload()[-1][:2] == ("boom", False)  # logged; the others ran
    finally:
        registry.unregister("certificates", ref)
        ref.stop()
    assert not ref.is_alive()  # it stops (a method named _stop once shadowed pykka's)


def test_config_reload_applies_live_fields_in_place_and_keeps_the_old_config_on_error(tmp_path):
    path = tmp_path / "estafeta.conf"
    path.write_text('max_recipients: 5\nhostname: "a.test"\n')
    running = load_config(str(path))
    step = ConfigReload(str(path), running)
    seen = []
    step.on_config(seen.append)
    path.write_text(
        'max_recipients: 9\nhostname: "a.test"\nrelay_network: "10.0.0.0/8"\n'
        "limits { messages_per_user_hour: 3 }\nprocesses: 3\n"
    )
    parts = dict(part.split("=") for part in step().split())
    assert set(parts["changed"].split(",")) == {"max_recipients", "relay_network", "limits", "processes"}
    assert set(parts["applied"].split(",")) == {"max_recipients", "relay_network", "limits"}
    assert parts["restart-needed"] == "processes"
    # The running object itself changed (what starts later sees it), the
    # fields a restart applies did not.
    assert seen == [running] and running.max_recipients == 9 and list(running.relay_network) == ["10.0.0.0/8"]
    assert running.limits.messages_per_user_hour == 3 and running.processes == 0
    assert step() == "changed=-"  # the same file again: nothing new, no hook
    assert len(seen) == 1
    path.write_text("max_recipients: 9\nbogus: 1\n")
    with pytest.raises(RuntimeError, match=rf"{path}:2:1: .*bogus.*kept"):
        step()
    assert running.max_recipients == 9


def test_apply_live_fields_copies_only_those_that_changed():
    running, new = config_pb2.Config(max_errors=3, hostname="a"), config_pb2.Config(hostname="b")
    new.relay_network.append("127.0.0.1")
    assert apply_live_fields(running, new) == ["max_errors", "relay_network"]
    assert (
        running.max_errors == 10
        and not running.HasField("max_errors")
        and list(running.relay_network) == ["127.0.0.1"]
        and running.hostname == "a"
    )


# ------------------------------------------------------------------ config fields 50-61
def test_listeners_defaults_and_names():
    zero = default_config()
    specs = listener_specs(zero)
    assert [(s.name, s.text, s.mode) for s in specs] == [
        ("smtp", "127.0.0.1:2525", config_pb2.Listener.SMTP),
        ("submission", "127.0.0.1:2587", config_pb2.Listener.SUBMISSION),
        ("submissions", "127.0.0.1:2465", config_pb2.Listener.SUBMISSIONS),
    ]
    text = format_config(zero)
    for field in ("listener {", "tls {", "limits {", "auth {", 'suffix_separators: "+"', 'drop_characters: "."'):
        assert field in text
    assert list(zero.limits.connections_per_minute) == [300, 900, 2700]
    assert list(zero.auth.mechanism) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert parse_config(text).listener == zero.listener  # the defaults parse back
    cfg = parse_config('smtp_address: "127.0.0.1:25"\nsmtp_address: "[::1]:25"\n')
    assert [s.name for s in listener_specs(cfg)] == ["smtp.127.0.0.1:25", "smtp.[::1]:25"]  # no default submission
    assert not cfg.listener


@pytest.mark.parametrize(
    "text, field",
    [
        ('listener { address: "127.0.0.1:25" }\nsmtp_address: "127.0.0.1:25"', "smtp_address"),
        ("listener { mode: SUBMISSION }", "listener"),
        ('suffix_separators: "+."', "suffix_separators"),
        ('drop_characters: "@"', "drop_characters"),
        ("limits { auth_failures_per_day: [1, 2] }", "auth_failures_per_day"),
        ("directory_poll_seconds: 0", "directory_poll_seconds"),
        ("tls { reload_poll_seconds: -1 }", "reload_poll_seconds"),
        ('tls { cert_dir: "/no/such/dir" }', "cert_dir"),
        ('group: "nogroup"', "group"),
        ('hostname: "mx_1.example"', "hostname"),
        ('local_domain { name: "-bad-.test" }', "name"),
    ],
)
def test_config_checks_of_the_new_fields(text, field):
    with pytest.raises(ConfigError, match=rf"^f\.conf:\d+: {field}: "):
        parse_config(text + "\n", "f.conf")


# ------------------------------------------------------------------ Received
def test_received_header_with_tls_and_auth():
    plain = received_header("c.test", "192.0.2.1", "mx.test", "ESMTP", "ID1", "DATE", "b@mx.test")
    assert (
        plain
        == b"Received: from c.test ([192.0.2.1])\r\n\tby mx.test (estafeta) with ESMTP id ID1\r\n\tfor <b@mx.test>; DATE\r\n"
    )
    tls = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
    full = received_header("c.test", "192.0.2.1", "mx.test", "ESMTPSA", "ID1", "DATE", None, tls, "alice@mx.test")
    assert full.decode().splitlines() == [
        "Received: from c.test ([192.0.2.1])",
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))",
        "\t(authenticated as alice@mx.test)",
        "\tby mx.test (estafeta) with ESMTPSA id ID1; DATE",
    ]


def test_user_file_written_by_the_cli_has_the_proto_shape(tmp_path):
    db = userdb.modify(str(tmp_path), "example.test", lambda db: db.user.add(name="a", admin_of=["example.test"]))
    assert isinstance(db, users_pb2.UserDb) and db.domain == "example.test"
