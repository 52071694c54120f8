"""Child specifications the application tree (supervisor/app.py,
supervisor/listeners.py) builds from: a child registered under a name,
a supervisor as a child."""

from __future__ import annotations

from estafeta.supervisor import registry
from estafeta.supervisor.tree import ChildSpec, Supervisor, SupervisorSpec


def registered(name: str, start):
    """Wrap a start function so the new actor is registered as `name`
    (supervisor/registry.py: a restarted actor is found by the name)."""

    def start_and_register(link, args):
        return registry.register(name, start(link, args))

    return start_and_register


def supervisor_child(spec: SupervisorSpec, register_as: str | None = None) -> ChildSpec:
    """The ChildSpec of a supervisor running `spec` (permanent, shutdown
    infinity: it stops its own children), registered as `register_as`."""

    def start(link, _args):
        return Supervisor.start(link, spec)

    return ChildSpec(
        id=spec.name,
        start=registered(register_as, start) if register_as else start,
        restart="permanent",
        shutdown="infinity",
        type="supervisor",
    )
