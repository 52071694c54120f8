"""SRS (actors/checks/srs.py): round trips, SRS1, tampering, case, expiry,
rotation, and interoperation with srslib (an independent implementation of
the same libsrs2 scheme)."""

import os
import stat

import pytest
import srslib
from hypothesis import given, settings
from hypothesis import strategies as st

from estafeta.actors.checks.srs import Srs, SrsError, load_secrets

DAY = 86400
NOW = 1767225600.0  # 2026-01-01


def make(secret=b"s3cret", domain="fwd.example.org", now=NOW, **kw):
    return Srs([secret], domain, clock=lambda: now, **kw)


def test_forward_and_reverse():
    srs = make()
    a = srs.forward("alice@example.net")
    local, domain = a.rsplit("@", 1)
    assert domain == "fwd.example.org"
    tag, h, ts, d, lp = local.split("=")
    assert (tag, len(h), len(ts), d, lp) == ("SRS0", 4, 2, "example.net", "alice")
    assert srs.reverse(a) == "alice@example.net"
    assert Srs.is_srs(a) and not Srs.is_srs("alice@example.net")


def test_null_and_own_domain_senders_are_kept():
    srs = make()
    assert srs.forward("") == ""
    assert srs.forward("bob@FWD.example.org") == "bob@FWD.example.org"
    with pytest.raises(SrsError):
        srs.forward("no-at-sign")


def test_srs1_for_a_second_hop_and_back_to_the_first():
    first = make(b"first", "hop1.example")
    second = make(b"second", "hop2.example")
    third = make(b"third", "hop3.example")
    a0 = first.forward("alice@example.net")
    a1 = second.forward(a0)
    assert a1.startswith("SRS1=") and "=hop1.example==" in a1 and a1.endswith("@hop2.example")
    # a bounce to hop 2 goes straight to hop 1's SRS0 address, which hop 1 decodes
    assert second.reverse(a1) == a0
    assert first.reverse(second.reverse(a1)) == "alice@example.net"
    # a third hop keeps the first hop's part
    a2 = third.forward(a1)
    assert a2.endswith("@hop3.example") and "=hop1.example==" in a2
    assert first.reverse(third.reverse(a2)) == "alice@example.net"


def test_tampering_is_refused():
    srs = make()
    a = srs.forward("alice@example.net")
    local = a.split("@")[0]
    _, h, ts, d, lp = local.split("=")
    for forged in (
        f"SRS0={h}={ts}={d}=mallory@fwd.example.org",
        f"SRS0={h}={ts}=evil.example={lp}@fwd.example.org",
        f"SRS0={h[:3]}={ts}={d}={lp}@fwd.example.org",
        f"SRS0=AAAA={ts}={d}={lp}@fwd.example.org",
        f"SRS0={h}=AA={d}={lp}@fwd.example.org",
    ):
        with pytest.raises(SrsError):
            srs.reverse(forged)
    with pytest.raises(SrsError, match="not an SRS"):
        srs.reverse("alice@fwd.example.org")
    with pytest.raises(SrsError):
        make(b"other secret").reverse(a)


def test_case_insensitive_and_other_separators():
    srs = make()
    a = srs.forward("Alice@Example.NET")
    assert srs.reverse(a.upper()) == "ALICE@EXAMPLE.NET"
    assert srs.reverse(a.lower()) == "alice@example.net"
    assert srs.reverse(a.replace("SRS0=", "SRS0+", 1)) == "Alice@Example.NET"
    assert srs.reverse(a.replace("SRS0=", "srs0-", 1)) == "Alice@Example.NET"


def test_expiry_and_the_wrap_of_the_day_counter():
    a = make().forward("alice@example.net")
    assert make(now=NOW + 21 * DAY).reverse(a) == "alice@example.net"
    with pytest.raises(SrsError, match="expired"):
        make(now=NOW + 22 * DAY).reverse(a)
    with pytest.raises(SrsError, match="expired"):
        make(now=NOW - DAY).reverse(a)  # from the future
    # day 1023 stamped, decoded on day 1024 (0 modulo 1024)
    late = 1023 * DAY + 3600.0
    b = make(now=late).forward("alice@example.net")
    assert make(now=late + DAY).reverse(b) == "alice@example.net"
    longer = make(now=late, max_age_days=1, hash_length=6)
    c = longer.forward("a@b.example")
    assert len(c.split("=")[1]) == 6 and longer.reverse(c) == "a@b.example"


def test_secret_rotation():
    old = Srs([b"old"], "fwd.example.org", clock=lambda: NOW)
    a = old.forward("alice@example.net")
    rotated = Srs([b"new", b"old"], "fwd.example.org", clock=lambda: NOW)
    assert rotated.reverse(a) == "alice@example.net"
    assert old.forward("alice@example.net") != rotated.forward("alice@example.net")
    with pytest.raises(ValueError):
        Srs([], "x.example")


def test_interoperates_with_srslib():
    ours = make(b"shared")
    theirs = srslib.SRS("shared")
    theirs._time_fn = lambda: NOW
    for sender in ("alice@example.net", "Bob.Smith+tag@Sub.Example.ORG"):
        a = ours.forward(sender)
        assert theirs.reverse(a) == sender
        b = theirs.forward(sender, "fwd.example.org")
        assert b == a
        assert ours.reverse(b) == sender
    s0 = theirs.forward("alice@example.net", "hop1.example")
    s1 = ours.forward(s0)
    assert s1 == theirs.forward(s0, "fwd.example.org")
    assert theirs.reverse(s1) == ours.reverse(s1) == s0


@settings(max_examples=200, deadline=None)
@given(
    local=st.text(st.sampled_from("abcXYZ019.+-_=!#"), min_size=1, max_size=30),
    domain=st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True),
)
def test_round_trip_property(local, domain):
    srs = make()
    sender = f"{local}@{domain}"
    assert srs.reverse(srs.forward(sender)) == sender


def test_secrets_file(tmp_path):
    s1 = load_secrets(str(tmp_path))
    path = tmp_path / "srs.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(s1) == 1 and len(s1[0]) >= 40
    assert load_secrets(str(tmp_path)) == s1
    path.write_bytes(b"newer\n" + s1[0] + b"\n\n")
    assert load_secrets(str(tmp_path)) == [b"newer", s1[0]]
