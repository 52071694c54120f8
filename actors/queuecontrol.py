"""The postmaster's queue actions: flush, hold, release, delete (like
Postfix's postqueue -f / -i and postsuper -h / -H / -d).

`QueueControl.handle(QueueAction)` answers the control channel
(supervisor/control.py) of a running serving process: an item with a
live actor is asked to act itself (control_pb2.QueueAction to
"item.<id>": only the actor may write its file while it runs); an item
without one — held, quarantined, or between the manager's sweeps — is
changed on disk by `act_on_file`, and the manager is told to look at the
queue again (AttemptDue: its sweep starts what is QUEUED without an
actor). `estafeta queue` runs `act_on_file` itself when no daemon runs.

Results per id: ok, or why not ("no such item", "not held", "held: release
it first").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry import trace

from estafeta.actors import bounces
from estafeta.actors.bounces import Bouncer
from estafeta.proto import control_pb2, messages_pb2, queue_pb2
from estafeta.store.queue import QueueStore, process_of
from estafeta.supervisor import registry
from estafeta.tracing.propagation import extract

log = logging.getLogger("estafeta.queue")

Action = control_pb2.QueueAction
#: Seconds to wait for an item's actor to act (it may be inside a
#: delivery attempt: the action waits for the attempt's end).
ITEM_TIMEOUT = 30.0


def _result(queue_id: str, error: str = "") -> control_pb2.QueueActionResult:
    return control_pb2.QueueActionResult(queue_id=queue_id, ok=not error, error=error)


def act_on_file(
    store: QueueStore, bouncer: Bouncer | None, tracer: trace.Tracer | None, queue_id: str, action: Action
) -> control_pb2.QueueActionResult:
    """Do `action` on an item that has no running actor, on its file.
    DELETE with bounce needs `bouncer` (a failure DSN for every pending
    recipient, queued first). Never raises for a missing or unreadable item
    (the result says so); OSError from the writes is reported too."""
    try:
        item = store.load(queue_id)
    except FileNotFoundError:
        return _result(queue_id, "no such item")
    except (OSError, ValueError) as e:
        if action.action != Action.DELETE:
            return _result(queue_id, f"unreadable: {e}")
        item = None
    try:
        if action.action == Action.DELETE:
            if action.bounce and item is not None:
                if bouncer is None:
                    return _result(queue_id, "cannot bounce here")
                with (tracer or trace.get_tracer(__name__)).start_span(
                    "queue.delete", context=extract(item.trace)
                ) as span:
                    bouncer.send(item, bounces.fail_pending(item, "deleted by the postmaster"), span)
            store.remove(queue_id)
            log.info("deleted id=%s bounce=%s", queue_id, action.bounce)
            return _result(queue_id)
        state = item.state
        if action.action == Action.HOLD:
            item.state, item.hold_reason = queue_pb2.HELD, "held by the postmaster"
        elif action.action == Action.RELEASE:
            if state not in (queue_pb2.HELD, queue_pb2.QUARANTINED):
                return _result(queue_id, "not held")
            item.state = queue_pb2.QUEUED
            item.hold_reason = item.quarantine_reason = ""
            item.crash_streak = 0
            item.next_attempt_at = 0
        elif action.action == Action.FLUSH:
            if state != queue_pb2.QUEUED:
                return _result(queue_id, "held: release it first")
            item.next_attempt_at = 0
        else:
            return _result(queue_id, f"unknown action {action.action}")
        store.update(item)
    except OSError as e:
        return _result(queue_id, f"cannot write the item: {e}")
    log.info("%s id=%s", Action.Action.Name(action.action).lower(), queue_id)
    return _result(queue_id)


class QueueControl:
    """The QueueAction handler of one serving process (`process` of
    `processes`): it acts only on the items this process owns
    (store.queue.process_of); FLUSH with no ids flushes all of them."""

    def __init__(
        self,
        store: QueueStore,
        bouncer: Bouncer,
        tracer: trace.Tracer,
        process: int = 0,
        processes: int = 1,
        whereis: Callable = registry.whereis,
    ):
        self._store = store
        self._bouncer = bouncer
        self._tracer = tracer
        self._process = process
        self._processes = processes
        self._whereis = whereis

    def handle(self, action: Action) -> control_pb2.ControlReply:
        """One result per id this process owns (all of them for a FLUSH
        without ids)."""
        ids = list(action.queue_ids)
        if not ids and action.action == Action.FLUSH:
            ids = self._store.list_ids()
        reply = control_pb2.ControlReply(process=self._process)
        touched_files = False
        for queue_id in ids:
            if self._processes > 1 and process_of(queue_id, self._processes) != self._process:
                continue
            try:
                ref = self._whereis(f"item.{queue_id}")
            except LookupError:
                reply.results.append(act_on_file(self._store, self._bouncer, self._tracer, queue_id, action))
                touched_files = True
                continue
            try:
                reply.results.append(ref.ask(action, timeout=ITEM_TIMEOUT))
            except Exception as e:  # noqa: BLE001 - the actor ended or is busy: say so
                reply.results.append(_result(queue_id, f"item busy or gone, try again: {type(e).__name__}"))
        if touched_files:
            try:
                self._whereis("queue").tell(messages_pb2.AttemptDue())  # start what is QUEUED now
            except LookupError:
                pass
        return reply
