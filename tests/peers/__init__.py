"""Real peers the tests run on loopback: an authoritative DNS server
(knot), remote MXes (private Postfix instances, Postfix's smtp-sink), a
private Dovecot (LMTP), TLS certificates made for the test. Each module
starts its peer in a temporary directory, on a free port, and stops it at
the end; every wait is bounded in time.

Importable from any test as `peers.<module>` (tests/conftest.py puts tests/
on sys.path).
"""
