"""Test session set-up.

gevent's monkey patching must happen before anything imports threading,
ssl or pykka (DESIGN.md, "Known hazards"): every estafeta actor is a pykka
ThreadingActor that must run as a greenlet, in tests as in the daemon.

tests/ goes on sys.path so that the harness of real peers is importable
as `peers.<module>` (tests/peers/).
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The fixtures of the real peers' harnesses (tests/peers/), for every test.
pytest_plugins = ["peers.smtp_sink", "peers.postfix_mx", "peers.dovecot"]
