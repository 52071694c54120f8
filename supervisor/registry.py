"""Registered names for actors, like Erlang's `register/2` / `whereis/1`.

A supervisor restarts a child as a new actor with a new ActorRef; siblings
find the current one by name instead of holding a stale ref. Start
functions in supervisor/app.py register what they start; `whereis` is a
dict lookup (one per use, cheap enough to do on every message).
"""

from __future__ import annotations

import pykka

_names: dict[str, pykka.ActorRef] = {}


class NotRegistered(LookupError):
    """No live actor is registered under the name."""


def register(name: str, ref: pykka.ActorRef) -> pykka.ActorRef:
    """Register `ref` under `name` (replacing a dead or older one); returns ref."""
    _names[name] = ref
    return ref


def whereis(name: str) -> pykka.ActorRef:
    """The live actor registered as `name`. Raises NotRegistered."""
    ref = _names.get(name)
    if ref is None or not ref.is_alive():
        raise NotRegistered(f"no live actor registered as {name!r}")
    return ref


def is_alive(name: str) -> bool:
    """True if a live actor is registered as `name`."""
    ref = _names.get(name)
    return ref is not None and ref.is_alive()


def unregister(name: str, ref: pykka.ActorRef | None = None) -> None:
    """Forget `name` (no error if unknown); with `ref`, only if it is the
    one registered (a restarted successor keeps its name)."""
    if ref is None or _names.get(name) is ref:
        _names.pop(name, None)


def clear() -> None:
    """Forget every name (tests, daemon shutdown)."""
    _names.clear()
