"""pykka's registry of live actors, with O(1) removal.

pykka keeps every running actor in `ActorRegistry._actor_refs`, a list:
registering appends, unregistering is `list.remove`, which scans from the
oldest actor. estafeta starts an actor per connection and per queued
message, so thousands may be registered at c=100 or with a deep queue,
and each of them unregisters once. `install()` swaps the list for a
`RefTable`: the operations pykka's ActorRegistry uses on it (append,
remove, `in`, iteration, slicing, len), in registration order, with a
dict underneath. supervisor/actor.py installs it on import.
"""

from __future__ import annotations

import pykka
from pykka import ActorRegistry


class RefTable:
    """A list of ActorRefs as far as pykka's ActorRegistry uses one; ids as
    keys (a registered ref is alive, so its id is its own)."""

    __slots__ = ("_refs",)

    def __init__(self, refs=()) -> None:
        self._refs: dict[int, pykka.ActorRef] = {id(r): r for r in refs}

    def append(self, ref: pykka.ActorRef) -> None:
        self._refs[id(ref)] = ref

    def remove(self, ref: pykka.ActorRef) -> None:
        if self._refs.get(id(ref)) is not ref:
            raise ValueError("actor ref not registered")  # as list.remove
        del self._refs[id(ref)]

    def __contains__(self, ref) -> bool:
        return self._refs.get(id(ref)) is ref

    def __iter__(self):
        return iter(list(self._refs.values()))

    def __len__(self) -> int:
        return len(self._refs)

    def __getitem__(self, index):
        return list(self._refs.values())[index]


def install() -> None:
    """Put a RefTable (holding what is registered now) in pykka's registry;
    idempotent."""
    with ActorRegistry._actor_refs_lock:  # noqa: SLF001
        if not isinstance(ActorRegistry._actor_refs, RefTable):  # noqa: SLF001
            ActorRegistry._actor_refs = RefTable(ActorRegistry._actor_refs)  # type: ignore[assignment]  # noqa: SLF001
