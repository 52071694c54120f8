"""The MDA courier's command runner (actors/couriers/mda.py) with real
processes (/bin/sh scripts): the message on stdin, the environment and
argument substitutions, exit 0 / 75 / other, signals, the timeout killing
the whole process group, a missing program or body file."""

from __future__ import annotations

import time

import pytest

from estafeta.actors.couriers.mda import MdaCommand, expand_argv, run_mda

MESSAGE = b"From: a@y.test\r\nSubject: mda\r\n\r\nHello\r\n.dot stays\r\n"


@pytest.fixture
def body(tmp_path):
    p = tmp_path / "body"
    p.write_bytes(MESSAGE)
    return str(p)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def sh(script: str, *args: str, **kw) -> MdaCommand:
    return MdaCommand(("/bin/sh", "-c", script, "mda", *args), **kw)


def test_delivered_message_on_stdin_and_environment(tmp_path, body):
    out = tmp_path / "out"
    cmd = sh(f'cat > {out}; env > {out}.env; echo "$@" > {out}.args', "%to_user%", "%to_domain%", "%from%", "-d%to%")
    r = run_mda(cmd, "alice@y.test", "bob@x.test", body, original_recipient="Bob@X.test", queue_id="Q1")
    assert (r.reply.code, r.reply.enhanced, r.exit_status) == (250, "2.0.0", 0)
    assert out.read_bytes() == MESSAGE
    env = dict(line.split("=", 1) for line in (tmp_path / "out.env").read_text().splitlines() if "=" in line)
    assert env["SENDER"] == "alice@y.test" and env["RECIPIENT"] == "bob@x.test"
    assert env["LOCAL"] == env["USER"] == "bob" and env["DOMAIN"] == "x.test"
    assert env["ORIGINAL_RECIPIENT"] == "Bob@X.test" and env["QUEUE_ID"] == "Q1"
    assert "HOME" not in env  # only the documented variables
    assert (tmp_path / "out.args").read_text() == "bob x.test alice@y.test -dbob@x.test\n"


def test_substituted_values_are_sanitized():
    argv = expand_argv(MdaCommand(("mda", "%to%", "%from%")), "", "a$(rm -rf x)`;|@b.test")
    assert argv == ["mda", "arm-rfx@b.test", ""]


def test_shell_gets_values_only_from_the_environment(tmp_path, body):
    out = tmp_path / "out"
    cmd = MdaCommand((f'printf %s "$RECIPIENT" > {out}',), shell=True)
    r = run_mda(cmd, "", "we'ird;$(x)@b.test", body)
    assert r.reply.code == 250 and out.read_text() == "we'ird;$(x)@b.test"


def test_ex_tempfail_is_temporary(body):
    r = run_mda(sh("echo 'mailbox locked' >&2; exit 75"), "a@y", "b@x", body)
    assert (r.reply.code, r.reply.enhanced, r.exit_status) == (451, "4.3.0", 75)
    assert "mailbox locked" in r.reply.text


def test_other_exit_is_permanent_with_an_excerpt(body):
    r = run_mda(sh("cat >/dev/null; echo 'no such user' >&2; exit 67"), "a@y", "b@x", body)
    assert (r.reply.code, r.reply.enhanced, r.exit_status) == (550, "5.3.0", 67)
    assert r.reply.text == "MDA failed (exit 67): no such user"


def test_killed_by_a_signal_is_temporary(body):
    r = run_mda(sh("kill -TERM $$"), "a@y", "b@x", body)
    assert r.reply.code == 451 and "SIGTERM" in r.reply.text and r.exit_status == -15


def test_timeout_kills_the_process_group(tmp_path, body):
    pidfile = tmp_path / "pid"
    cmd = sh(f"sleep 30 & echo $! > {pidfile}; echo started; wait", timeout=0.5)
    t0 = time.monotonic()
    r = run_mda(cmd, "a@y", "b@x", body)
    assert time.monotonic() - t0 < 10
    assert (r.reply.code, r.reply.enhanced, r.exit_status) == (451, "4.4.7", None)
    assert "timed out after 0.5 s: started" in r.reply.text
    child = int(pidfile.read_text())
    for _ in range(100):  # the background sleep died with its group
        if not alive(child):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the MDA's child outlived the timeout")


def test_output_is_bounded(body):
    r = run_mda(sh("head -c 3000000 /dev/zero | tr '\\0' x; exit 1", output_limit=100), "a@y", "b@x", body)
    assert r.reply.code == 550 and len(r.output) <= 100


def test_missing_program_or_body(tmp_path, body):
    r = run_mda(MdaCommand(("/nonexistent/mda",)), "a@y", "b@x", body)
    assert (r.reply.code, r.reply.enhanced) == (451, "4.3.5") and r.exit_status is None
    r = run_mda(sh("exit 0"), "a@y", "b@x", str(tmp_path / "gone"))
    assert (r.reply.code, r.reply.enhanced) == (451, "4.3.0")


def test_bad_commands():
    with pytest.raises(ValueError):
        MdaCommand(())
    with pytest.raises(ValueError):
        MdaCommand(("x",), timeout=0)


def test_pipe_alias_command_is_split_on_spaces_without_a_shell(tmp_path, body):
    """chasquid's pipe aliases: "| /usr/bin/handler --work", no quoting,
    no expansion, no shell; 30 s."""
    from estafeta.actors.couriers.mda import PIPE_TIMEOUT, pipe_command

    script = tmp_path / "h.sh"
    script.write_text('#!/bin/sh\nprintf "%s|" "$@" > "$1.args"\ncat > "$1"\n')
    script.chmod(0o755)
    out = tmp_path / "out"
    cmd = pipe_command(f"  {script}  {out} '$HOME'  %to% ")
    assert cmd.argv == (str(script), str(out), "'$HOME'", "%to%") and not cmd.shell and cmd.timeout == PIPE_TIMEOUT
    r = run_mda(cmd, "a@y.test", "list@x.test", body)
    assert r.reply.code == 250 and out.read_bytes() == MESSAGE
    # Neither a shell nor the %...% substitutions touch a pipe's words.
    assert (tmp_path / "out.args").read_text() == f"{out}|'$HOME'|%to%|"
    with pytest.raises(ValueError):
        pipe_command("   ")
