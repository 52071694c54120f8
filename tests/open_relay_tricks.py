"""The open-relay tricks of the relay tests (tests/unit/test_open_relay.py
against the policy, tests/e2e/test_open_relay_daemon.py against the
daemon): RCPT TO arguments as a relay tester sends them, for a server
whose local domains are example.test (users alice, bob, carol; aliases
"sales: alice, bob", "*: bob", "fwd: friend@remote.test") and localhost
(every local part), and where remote.test is somebody else's domain; and
reverse-paths that are not alice@example.test's own.
"""

# Each trick: the RCPT TO argument (as a relay tester sends it), MAIL FROM first.
TRICKS = [
    "<victim@remote.test>",  # 1 plain
    "<Victim@REMOTE.TEST>",  # 2 mixed case
    "<victim%remote.test@example.test>",  # 3 percent hack
    "<victim%remote.test@localhost>",  # 4 percent hack, open domain
    "<victim%remote.test@[192.0.2.1]>",  # 5 percent hack to a literal
    "<@example.test:victim@remote.test>",  # 6 source route
    "<@example.test,@mx.example.test:victim@remote.test>",  # 7 longer source route
    '<"victim@remote.test"@example.test>',  # 8 quoted local part with @
    '<"victim%remote.test"@example.test>',  # 9 quoted percent hack
    '<"victim@remote.test"@[127.0.0.1]>',  # 10 quoted, to a literal
    "<remote.test!victim@example.test>",  # 11 bang path
    "<remote.test!victim>",  # 12 bare bang path
    "<victim@[192.0.2.1]>",  # 13 IPv4 literal
    "<victim@[127.0.0.1]>",  # 14 loopback literal
    "<victim@[IPv6:2001:db8::1]>",  # 15 IPv6 literal
    "<victim@remote.test.>",  # 16 trailing dot
    "<alice@example.test.>",  # 17 trailing dot on the local domain
    "<victim@example.test.remote.test>",  # 18 local domain as a prefix
    "<victim@sub.example.test>",  # 19 a subdomain of the local domain
    "<victim@remote-example.test>",  # 20 lookalike by hyphen
    "<victim@remote.test@example.test>",  # 21 two @
    "<<victim@remote.test>>",  # 22 double brackets
    "<victim@remote.test> (comment)",  # 23 trailing comment
    " <victim@remote.test>",  # 24 space after the colon
    "<postmaster@remote.test>",  # 25 postmaster elsewhere
    "<victim@localhost.remote.test>",  # 26 open local domain as a prefix
    "<victim@exаmple.test>",  # 27 Cyrillic "а": not example.test (an IDN elsewhere)
    "<victim@xn--exmple-4nf.test>",  # 28 the same as an A-label
    "<victim@REMOTE.test> NOTIFY=NEVER",  # 29 with a parameter
    "<victim\\@remote.test@example.test>",  # 30 escaped @ outside quotes
    "<>",  # 31 null forward-path
    "<victim@remote.test\x00@example.test>",  # 32 NUL injection
    "<victim@[IPv6:::ffff:127.0.0.1]>",  # 33 mapped loopback literal
    "<victim@[remote.test]>",  # 34 a domain in a literal
    "<victim@remote..test>",  # 35 empty label
]

#: MAIL FROM reverse-paths alice@example.test may not use after AUTH.
SPOOFED_SENDERS = [
    "bob@example.test",  # another user
    "boss@bank.test",  # a remote domain
    "sales2@example.test",  # nobody: the catch-all does not make it alice's
    "Bob+x@example.test",  # another user with a suffix
    "alice@[192.0.2.1]",  # a literal
    "alice@example.test.evil.test",  # a lookalike domain
    "x@carol.test",  # carol's domain, not alice's
]
