"""Fault injection: make chosen actor classes crash on a fraction of messages.

Configured from `Config.chaos` (proto/config.proto), e.g.

    chaos { crash { actor: "QueueItem" probability: 0.3 } }

makes every QueueItem raise `ChaosCrash` on about 30% of the messages it
handles. The actor boundary (supervisor/actor.py) calls `maybe_crash` before
each user message, so the crash takes exactly the path a real bug would:
on_failure, ChildExited(CRASH) to the supervisor, restart. Used by tests and
by operators rehearsing failure; never configured in production.

`maybe_crash` runs on every message of every actor: with no chaos configured
it is one dict lookup that misses.
"""

from __future__ import annotations

import random

from estafeta.proto import config_pb2

__all__ = ["ChaosCrash", "configure", "maybe_crash", "reset"]


class ChaosCrash(Exception):
    """Raised by `maybe_crash` in an actor chosen to crash (fault injection)."""


# Actor class name -> crash probability in (0, 1]. Entries with probability 0
# are left out so the common case is a miss.
_probability: dict[str, float] = {}
_rng = random.Random()


def configure(chaos: config_pb2.Chaos | None, seed: int | None = None) -> None:
    """Install the crash table from a `Chaos` message (None or empty: off).

    `seed` makes the crash sequence deterministic (tests); without it the
    generator is seeded from the OS. Replaces any earlier configuration.
    A later entry for the same actor class overrides an earlier one;
    probabilities are clamped to [0, 1].
    """
    global _rng
    table: dict[str, float] = {}
    if chaos is not None:
        for crash in chaos.crash:
            p = min(1.0, max(0.0, crash.probability))
            if p > 0.0:
                table[crash.actor] = p
            else:
                table.pop(crash.actor, None)
    _rng = random.Random(seed)
    # Rebind rather than mutate: a greenlet inside maybe_crash never sees a
    # half-built table.
    _set(table)


def _set(table: dict[str, float]) -> None:
    global _probability
    _probability = table


def reset() -> None:
    """Turn fault injection off."""
    _set({})


def maybe_crash(actor_class: str) -> None:
    """Raise `ChaosCrash` with the probability configured for `actor_class`.

    `actor_class` is the actor's class name ("QueueItem"). Returns None when
    the class is not configured or the draw spares it.
    """
    p = _probability.get(actor_class)
    if p is not None and (p >= 1.0 or _rng.random() < p):
        raise ChaosCrash("chaos")
