"""Users (PRECIS names, password hashes, the per-domain text-protobuf file,
reload on change), aliases in chasquid's format, and the resolution of a
recipient address to its final recipients."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys

import pytest

from estafeta.actors.addresses import AddressError, AddressRules, normalize_address, normalize_local
from estafeta.actors.aliases import (
    ALIAS_LOOP,
    UNKNOWN_USER,
    AliasFileError,
    AliasFiles,
    AliasTable,
    RecipientSet,
    Resolver,
    parse_aliases,
)
from estafeta.actors.auth import passwords
from estafeta.actors.directory import DirectoryTables
from estafeta.actors.users import UserCredentials, UserFiles, build_domain
from estafeta.proto import users_pb2
from estafeta.store import userdb
from estafeta.supervisor import usercli
from estafeta.supervisor.config import parse_config

RULES = AddressRules("+", ".")


# ------------------------------------------------------------------ names
@pytest.mark.parametrize(
    "local, expected",
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("ａｌｉｃｅ", "alice"),  # full-width: mapped (RFC 8265 §3.3.2 width mapping)
        ("Jöran", "jöran"),
        ("e\u0301", "\u00e9"),  # NFC
        ('"Alice"', "alice"),  # a quoted local part is its content
    ],
)
def test_precis_username_case_mapped(local, expected):
    assert normalize_local(local) == expected


@pytest.mark.parametrize("local", ['"john doe"', "", "ǅemal", "x" * 65])
def test_precis_refusals(local):
    with pytest.raises(AddressError):
        normalize_local(local)


def test_normalize_address_and_rules():
    assert normalize_address("Alice@Example.ORG") == "alice@example.org"
    assert normalize_address("x@Bücher.test") == "x@xn--bcher-kva.test"
    with pytest.raises(AddressError):
        normalize_address("alice")
    assert RULES.without_drops("a.lice+x.y") == "alice+x.y"
    assert RULES.base("a.lice+x.y") == "alice"
    assert RULES.keys("alice") == ("alice",)
    assert RULES.keys("a.lice+news") == ("alice+news", "alice")
    assert AddressRules("+-", "").base("a-b+c") == "a"


# ------------------------------------------------------------------ passwords
def test_argon2_hash_and_verify():
    h = passwords.hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "correct horse")
    assert not passwords.verify_password(h, "Correct horse")
    assert not passwords.verify_password("", "x")  # receive-only
    with pytest.raises(passwords.PasswordError):
        passwords.hash_password("")


def test_password_is_precis_opaque_string():
    h = passwords.hash_password("caf\u00e9")
    assert passwords.verify_password(h, "cafe\u0301")  # NFC: the same password


def test_scrypt_phc_strings_verify():
    import base64

    salt = b"0123456789abcdef"
    dk = hashlib.scrypt(b"pw", salt=salt, n=1 << 14, r=8, p=1, dklen=32)
    enc = lambda b: base64.b64encode(b).decode().rstrip("=")
    phc = f"$scrypt$ln=14,r=8,p=1${enc(salt)}${enc(dk)}"
    assert passwords.verify_password(phc, "pw")
    assert not passwords.verify_password(phc, "px")
    assert not passwords.verify_password("$scrypt$garbage", "pw")


def test_verify_cache_remembers_success_only(monkeypatch):
    calls = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda h, p: calls.append(p) or real(h, p))
    cache = passwords.VerifyCache()
    h = passwords.hash_password("s3cret")
    assert cache.verify("a@x.test", h, "s3cret") and cache.verify("a@x.test", h, "s3cret")
    assert calls == ["s3cret"]
    assert not cache.verify("a@x.test", h, "wrong") and not cache.verify("a@x.test", h, "wrong")
    assert calls == ["s3cret", "wrong", "wrong"]
    h2 = passwords.hash_password("s3cret")  # a password set again: another hash, a miss
    assert cache.verify("a@x.test", h2, "s3cret") and len(calls) == 4


# ------------------------------------------------------------------ the file
def test_userdb_roundtrip_lock_and_checks(tmp_path):
    d = str(tmp_path)
    assert list(userdb.load(d, "example.test").user) == []
    db = userdb.modify(d, "example.test", lambda db: db.user.add(name="alice"))
    assert [u.name for u in db.user] == ["alice"]
    path = userdb.users_path(d, "example.test")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert 'name: "alice"' in open(path).read()  # text protobuf, cat-able
    with open(path, "a") as f:
        f.write('user { name: "alice" }\n')
    with pytest.raises(userdb.UserDbError, match="listed twice"):
        userdb.load(d, "example.test")
    with open(path, "w") as f:
        f.write("user { nme: 1 }")
    with pytest.raises(userdb.UserDbError, match=path):
        userdb.load(d, "example.test")


def test_user_files_reload_on_change_and_keep_old_on_error(tmp_path):
    d = str(tmp_path)
    files = UserFiles(d, {"example.test": ["Postmaster"]}, RULES)
    table = files.refresh()
    assert table.listed("example.test") and table.recipient("example.test", "postmaster", RULES) == "postmaster"
    assert files.refresh() is None  # nothing changed
    db = users_pb2.UserDb(domain="example.test")
    passwords.set_password(db.user.add(name="alice"), "pw")
    userdb.save(d, db)
    table = files.refresh()
    assert table.login("Alice@EXAMPLE.test").name == "alice"
    assert table.login("postmaster@example.test") is None  # receive-only: no login
    with open(userdb.users_path(d, "example.test"), "w") as f:
        f.write("broken {")
    assert files.refresh().login("alice@example.test") is not None  # the old users stay
    assert "example.test" in files.errors


def test_credentials_port(tmp_path):
    db = users_pb2.UserDb(domain="example.test")
    passwords.set_password(db.user.add(name="alice"), "pw")
    db.user.add(name="bob", password_hash=passwords.hash_password("pw2"))  # no SCRAM credential
    table = UserFiles(str(tmp_path), {}, RULES).table.__class__(
        {"example.test": build_domain("example.test", db, [], RULES)}
    )
    creds = UserCredentials(lambda: table)
    assert creds.check_password("ALICE@example.test", "pw") == "alice@example.test"
    assert creds.check_password("alice@example.test", "nope") is None
    assert creds.check_password("carol@example.test", "pw") is None
    ident, cred = creds.scram("alice@example.test")
    assert ident == "alice@example.test" and cred.iterations == passwords.SCRAM_ITERATIONS
    assert creds.scram("bob@example.test") == ("bob@example.test", None)
    assert creds.scram("nobody@example.test") is None


# ------------------------------------------------------------------ aliases
ALIASES = """
# a comment
pepe: jose
jose: alice
flowers: rose@backgarden.test, Alice , bob@example.test,
juana.perez: alice
juana.perez+fruta: bob
null: | /usr/bin/handler --work
a1: a2
a2: a1
self: alice, self
copy: *@elsewhere.test
"""


def resolver(catch_all=None, listed=True):
    users = users_pb2.UserDb(domain="example.test")
    for n in ("alice", "bob", "self", "john.doe"):
        users.user.add(name=n)
    table = parse_aliases(ALIASES + (f"*: {catch_all}\n" if catch_all else ""), "example.test", RULES)
    from estafeta.actors.users import UserTable

    ut = UserTable({"example.test": build_domain("example.test", users, [], RULES)})
    return Resolver(
        {"example.test": listed, "open.test": False}, ut, AliasTable({"example.test": table}), RULES, "example.test"
    )


def final(res):
    assert res.accepted, res.reply
    return sorted((r.kind, r.mailbox or r.command or r.address) for r in res.recipients)


@pytest.mark.parametrize(
    "address, expected",
    [
        ("alice@example.test", [("mailbox", "example.test/alice")]),
        ("Alice@EXAMPLE.TEST", [("mailbox", "example.test/alice")]),  # PRECIS + domain case
        ("a.lice@example.test", [("mailbox", "example.test/alice")]),  # drop characters
        ("alice+lists@example.test", [("mailbox", "example.test/alice")]),  # suffix
        ("johndoe@example.test", [("mailbox", "example.test/john.doe")]),  # a user with a drop character
        ("pepe@example.test", [("mailbox", "example.test/alice")]),  # pepe -> jose -> alice
        ("juanaperez+abc@example.test", [("mailbox", "example.test/alice")]),
        ("ju.ana.perez+fruta@example.test", [("mailbox", "example.test/bob")]),  # a suffix alias wins
        (
            "flowers@example.test",
            [("mailbox", "example.test/alice"), ("mailbox", "example.test/bob"), ("remote", "rose@backgarden.test")],
        ),
        ("null@example.test", [("pipe", "/usr/bin/handler --work")]),
        ("self@example.test", [("mailbox", "example.test/alice"), ("mailbox", "example.test/self")]),
        ("copy@example.test", [("remote", "copy@elsewhere.test")]),
        ("postmaster@example.test", [("mailbox", "example.test/postmaster")]),  # RFC 5321 §4.5.1
        ("postmaster", [("mailbox", "example.test/postmaster")]),
        ("Anyone@Open.Test", [("mailbox", "open.test/anyone")]),  # no user list: every local part
        ("someone@remote.test", [("remote", "someone@remote.test")]),
        ("x@[192.0.2.1]", [("remote", "x@[192.0.2.1]")]),
    ],
)
def test_resolve(address, expected):
    res = resolver().resolve(address)
    assert final(res) == expected
    assert all(r.original == address for r in res.recipients)  # kept for ORCPT / DSNs


def test_resolve_refusals_and_loops():
    r = resolver()
    assert r.resolve("carol@example.test").reply == UNKNOWN_USER
    assert r.resolve("a1@example.test").reply == ALIAS_LOOP
    assert r.resolve('"../x"@open.test').reply.code == 553


def test_catch_all_and_star_target():
    r = resolver(catch_all="bob")
    assert final(r.resolve("carol@example.test")) == [("mailbox", "example.test/bob")]
    assert final(r.resolve("alice@example.test")) == [("mailbox", "example.test/alice")]  # known users first
    assert r.resolve("carol@example.test", catch_all=False).reply == UNKNOWN_USER
    r = resolver(catch_all="*@elsewhere.test")
    assert final(r.resolve("Carol+x@example.test")) == [("remote", "Carol+x@elsewhere.test")]  # as is
    assert resolver(catch_all="nobody").resolve("carol@example.test").reply == ALIAS_LOOP


def test_alias_to_unknown_local_user_is_reported_not_dropped():
    table = parse_aliases("team: alice, ghost\n", "example.test", RULES)
    base = resolver()
    r = Resolver(base.domains, base.users, AliasTable({"example.test": table}), RULES)
    res = r.resolve("team@example.test")
    kinds = sorted((x.kind, x.address) for x in res.recipients)
    assert kinds == [("mailbox", "alice@example.test"), ("unknown", "ghost@example.test")]
    assert [x.reply for x in res.recipients if x.kind == "unknown"] == [UNKNOWN_USER]


def test_recipient_set_merges_across_rcpts():
    r = resolver()
    s = RecipientSet()
    assert len(s.add(r.resolve("alice@example.test"))) == 1
    assert s.add(r.resolve("A.lice+x@example.test")) == []
    assert s.add(r.resolve("pepe@example.test")) == []
    assert len(s.add(r.resolve("flowers@example.test"))) == 2  # bob and rose; alice is there
    assert len(s) == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("pepe jose", "2: missing ':'"),
        ("pepe:", "2: missing name or target"),
        ("pepe@x: jose", "cannot hold '@'"),
        ("pepe: | ", "the pipe has no command"),
        ("pepe: jose via mx.test", "'via' forwards are not supported"),
        ("pepe: a b", "is not an address"),
        ("pepe: ,", "no target"),
        ("pepe: a@exa mple", "not an address"),
    ],
)
def test_alias_file_errors_name_the_line(text, message):
    with pytest.raises(AliasFileError, match=message) as e:
        parse_aliases("# first\n" + text + "\n", "example.test", RULES, "/etc/aliases")
    assert str(e.value).startswith("/etc/aliases:2:")


def test_alias_overrides_and_normalisation():
    t = parse_aliases("Pe.Pe: juan\npepe: jose\n", "example.test", RULES)
    assert [x.value for x in t["pepe"]] == ["jose@example.test"]  # the last line wins (chasquid)


def test_alias_files_reload(tmp_path):
    files = AliasFiles(str(tmp_path), ["example.test"], RULES)
    assert files.refresh().lookup("example.test", "x") is None
    os.makedirs(tmp_path / "example.test")
    (tmp_path / "example.test" / "aliases").write_text("x: y\n")
    assert files.refresh().lookup("example.test", "x")[0].value == "y@example.test"
    (tmp_path / "example.test" / "aliases").write_text("x y\n")
    assert files.refresh().lookup("example.test", "x")[0].value == "y@example.test"  # kept
    assert "missing ':'" in files.errors["example.test"]


# ------------------------------------------------------------------ the commands
def cfg_for(tmp_path, extra=""):
    return parse_config(
        f'data_dir: "{tmp_path}/data"\nlocal_domain {{ name: "example.test" }}\nlocal_domain {{ name: "localhost" }}\n'
        + extra
    )


def test_user_commands(tmp_path, capsys):
    cfg = cfg_for(tmp_path)
    assert usercli.cmd_add(cfg, "Alice@Example.TEST", False, stdin=io.StringIO("pw one\n")) == "alice@example.test"
    assert usercli.cmd_add(cfg, "rx@example.test", True) == "rx@example.test"
    with pytest.raises(usercli.UserCliError, match="exists already"):
        usercli.cmd_add(cfg, "ALICE@example.test", True)
    with pytest.raises(usercli.UserCliError, match="cannot start"):
        usercli.cmd_add(cfg, "a%b@example.test", True)
    with pytest.raises(usercli.UserCliError, match="empty"):
        usercli.cmd_add(cfg, "x@example.test", False, stdin=io.StringIO("\n"))
    assert usercli.cmd_list(cfg, []) == ["alice@example.test\tlogin", "rx@example.test\treceive-only"]
    tables = DirectoryTables(cfg)
    tables.refresh()
    creds = UserCredentials(lambda: tables.resolver.users)
    assert creds.check_password("alice@example.test", "pw one") == "alice@example.test"
    usercli.cmd_passwd(cfg, "alice@example.test", stdin=io.StringIO("pw two\n"))
    tables.refresh()
    assert creds.check_password("alice@example.test", "pw one") is None
    assert creds.check_password("alice@example.test", "pw two") == "alice@example.test"
    usercli.cmd_remove(cfg, "alice@example.test")
    with pytest.raises(usercli.UserCliError, match="no such user"):
        usercli.cmd_remove(cfg, "alice@example.test")
    usercli.cmd_add(cfg, "a@other.test", True)
    assert "not a local_domain" in capsys.readouterr().err


def test_estafeta_user_and_alias_commands(tmp_path):
    """The real command: password on stdin, never on the command line."""
    conf = tmp_path / "estafeta.conf"
    conf.write_text(f'data_dir: "{tmp_path}/data"\nlocal_domain {{ name: "example.test" }}\n')
    est = [sys.executable, "-m", "estafeta.supervisor.cli"]
    run = lambda *a, stdin="": subprocess.run(
        est + list(a) + ["--config", str(conf)], input=stdin, capture_output=True, text=True, timeout=60
    )
    r = run("user", "add", "Bob@example.test", stdin="hunter2\n")
    assert r.returncode == 0 and "added bob@example.test" in r.stdout, r.stderr
    os.makedirs(tmp_path / "data/domains/example.test", exist_ok=True)
    (tmp_path / "data/domains/example.test/aliases").write_text("robert: bob, ext@remote.test\n")
    r = run("alias", "resolve", "Rob.ert+x@Example.test")
    assert r.returncode == 0, r.stderr
    assert "bob@example.test\tmailbox example.test/bob" in r.stdout and "ext@remote.test\tremote" in r.stdout
    r = run("alias", "resolve", "nobody@example.test")
    assert r.returncode == 1 and "550 5.1.1" in r.stdout
    r = run("user", "list")
    assert r.stdout == "bob@example.test\tlogin\n"
    r = subprocess.run(est + ["--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("estafeta ")
