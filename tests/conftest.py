"""Test session set-up.

gevent's monkey patching must happen before anything imports threading,
ssl or pykka (DESIGN.md, "Known hazards"): every estafeta actor is a pykka
ThreadingActor that must run as a greenlet, in tests as in the daemon.
"""

from gevent import monkey

monkey.patch_all()
