"""Users and aliases end to end: the daemon resolves RCPT TO through the
user database (PRECIS-equivalent names, suffixes, drop characters) and
the aliases files (lists, catch-all, a remote target delivered to
remote.test's MX, a pipe to a command, a target that names nobody), and
delivers each final recipient once."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import smtplib
import stat

import pytest
from e2e_harness import count_markers, make_message, marker_of

pytestmark = pytest.mark.slow


def _pipe_script(tmp_path) -> tuple[str, os.PathLike]:
    """A pipe alias's command: writes its stdin and environment to OUT."""
    out = tmp_path / "piped"
    out.mkdir()
    script = tmp_path / "handler.sh"
    script.write_text(
        '#!/bin/sh\nset -e\ncat > "$1/message"\n'
        'printf "%s\\n" "$2" "$RECIPIENT" "$ORIGINAL_RECIPIENT" "$SENDER" "$QUEUE_ID" > "$1/env"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"{script} {out} second-argument", out


@pytest.fixture
def host(host_factory, tmp_path):
    command, out = _pipe_script(tmp_path)
    aliases = (
        "sales: alice, bob\n"
        "fwd: friend@remote.test, alice\n"
        f"pipe: | {command}\n"
        "broken: nobody\n"
        "loop1: loop2\nloop2: loop1\n"
    )
    h = host_factory(aliases={"example.test": aliases}, remote=True)
    h.piped = out
    return h


def _markers(host, user: str) -> dict[str, int]:
    return count_markers(host.daemon.delivered("example.test", user))


def test_precis_equivalent_names_suffix_and_drop_characters_reach_one_mailbox(host):
    msg = make_message()
    rcpts = ["Alice@EXAMPLE.test", "ａｌｉｃｅ@example.test", "alice+lists@example.test", "a.lice@example.test"]
    with host.starttls() as c:
        # The login name in another case and in full-width forms is the same user (RFC 8265 §3.3);
        # smtplib only sends ASCII, so AUTH PLAIN by hand (RFC 4616: UTF-8).
        ir = base64.b64encode("\0ＡＬＩＣＥ@Example.TEST\0alice-pw".encode()).decode()
        assert c.docmd("AUTH", f"PLAIN {ir}")[0] == 235
        assert c.sendmail("alice@example.test", rcpts, msg, mail_options=["SMTPUTF8"]) == {}
    host.daemon.wait_delivered("example.test", "alice", 1)
    host.daemon.wait_queue_empty(30)
    assert _markers(host, "alice") == {marker_of(msg): 1}  # once, not four times
    line = host.daemon.wait_log(r"queued id=\w+ from=<alice@example.test> to=(\S+)")
    assert line.group(1) == "<alice@example.test>"


def test_lists_catch_all_and_receive_only_users(host):
    aliases = host.daemon.data_dir / "domains" / "example.test" / "aliases"
    with host.daemon.smtp() as c:
        c.ehlo()
        c.mail("x@client.test")
        assert c.rcpt("nobody-here@example.test")[0] == 550  # a user list: unknown users are refused
    aliases.write_text(aliases.read_text() + "*: bob\n")  # a catch-all, picked up without a restart
    host.daemon.wait_log(r"aliases reloaded domain=example.test")
    msg = make_message()
    assert (
        host.daemon.send("x@client.test", ["sales@example.test", "nobody-here@example.test", "carol@example.test"], msg)
        == {}
    )
    for user in ("alice", "bob", "carol"):
        host.daemon.wait_delivered("example.test", user, 1)
    host.daemon.wait_queue_empty(30)
    assert _markers(host, "bob") == {marker_of(msg): 1}  # sales and the catch-all: bob once
    with host.starttls() as c, pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c.login("carol@example.test", "anything")  # receive-only: cannot log in
    assert e.value.smtp_code == 535


def test_alias_to_a_remote_address_is_delivered_to_its_mx_with_orcpt(host):
    msg = make_message()
    assert host.daemon.send("x@client.test", ["fwd@example.test"], msg) == {}
    (dump,) = host.sink.wait_for(1, timeout=30)
    assert marker_of(dump.message) == marker_of(msg)
    # The original recipient travels on (RFC 3461 §4.2; smtp-sink offers DSN).
    assert dump.rcpt_args == ["<friend@remote.test> ORCPT=rfc822;fwd@example.test"], dump.rcpt_args
    host.daemon.wait_delivered("example.test", "alice", 1)  # the alias's local target too
    host.daemon.wait_queue_empty(30)


def test_pipe_alias_runs_its_command_with_the_message(host):
    msg = make_message()
    assert host.daemon.send("x@client.test", ["Pipe@example.test"], msg) == {}
    host.daemon.wait_queue_empty(30)
    piped = (host.piped / "message").read_bytes()
    assert marker_of(piped) == marker_of(msg) and piped.startswith(b"Received: ")
    second, recipient, original, sender, queue_id = (host.piped / "env").read_text().splitlines()
    assert (second, recipient, original, sender) == (
        "second-argument",  # split on spaces, no shell (as chasquid)
        "pipe@example.test",
        "rfc822;Pipe@example.test",
        "x@client.test",
    )
    host.daemon.wait_log(rf"delivered id={queue_id} to=<pipe@example.test> via=pipe:")


def test_alias_target_naming_nobody_bounces_and_the_rest_is_delivered(host):
    msg = make_message()
    with host.starttls() as c:
        c.login("alice@example.test", "alice-pw")
        assert c.sendmail("alice@example.test", ["broken@example.test", "bob@example.test"], msg) == {}
    host.daemon.wait_delivered("example.test", "bob", 1)
    (dsn_path,) = host.daemon.wait_delivered("example.test", "alice", 1)  # the failure DSN, to the sender
    host.daemon.wait_queue_empty(30)
    dsn = email.message_from_bytes(dsn_path.read_bytes(), policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    status = dsn_path.read_text()
    assert "Final-Recipient: rfc822; nobody@example.test" in status
    assert "Original-Recipient: rfc822; broken@example.test" in status
    assert "Status: 5.1.1" in status and "Action: failed" in status
    assert "Remote-MTA" not in status  # decided here, no other server involved
    # A message whose only recipient names nobody: no delivery, finished, bounced.
    with host.starttls() as c:
        c.login("alice@example.test", "alice-pw")
        assert c.sendmail("alice@example.test", ["broken@example.test"], make_message()) == {}
    host.daemon.wait_delivered("example.test", "alice", 2)
    host.daemon.wait_queue_empty(30)
    assert len(host.daemon.delivered("example.test", "bob")) == 1


def test_alias_loop_is_refused_at_rcpt(host):
    with host.daemon.smtp() as c:
        c.ehlo()
        c.mail("x@client.test")
        code, text = c.rcpt("loop1@example.test")
    assert code == 550 and b"5.4.6" in text, (code, text)
    host.daemon.wait_log(r"refused from=127\.0\.0\.1 rcpt=<loop1@example\.test> reply=\"550 5\.4\.6")
