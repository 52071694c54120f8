"""EstafetaSpan: the OTel SDK's Span, made and ended with less work.

Every message makes five spans (session, transaction, enqueue, delivery
attempt, Maildir write), all on one gevent hub, so what the SDK's `Span`
does per span is paid on the hub about 3,500 times a second at the
benchmark's rates. Measured here, a span with five attributes took 14.7 µs
to make and end with the SDK's constructor and 4.2 µs as an EstafetaSpan
(tests/bench/spans.py; the SDK's whole start_span: 18.5 µs). Most of the
difference is generality estafeta never uses:

- every attribute value goes through `_clean_attribute_value`'s chain of
  isinstance checks, though estafeta's values are plain str/int/bool or
  sequences of str (`SpanAttributes` stores those as they are — a
  sequence as a tuple — and hands anything else to the SDK's code);
- each span builds two `BoundedList`s (a deque and a lock each) for events
  and links that four spans in five never get (made here on the first
  event or link);
- `end()` copies the span into a fresh `ReadableSpan` for the processors.
  An ended span cannot change (every setter checks the end time under the
  span's lock), so the span itself is handed over; it *is* a ReadableSpan.

Everything else is the SDK's: the class derives from the SDK's `_Span`
(isinstance checks, `set_status`, `record_exception`, `__exit__`,
`to_json`), with the same fields holding the same values, and the limits
(`SpanLimits`) still apply: a value the short path cannot take as it is
(long strings, sequences, anything odd) goes through the SDK's cleaning,
and a full attribute table through its dropping. tests/unit/test_tracing.py
compares an EstafetaSpan with the SDK's own, field by field.
"""

from __future__ import annotations

import logging
from time import time_ns as _time_ns

from gevent import monkey
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace.status import Status, StatusCode

log = logging.getLogger(__name__)

# Values _clean_attribute_value returns unchanged (a str only up to the
# length limit); exact types, so a str or int subclass takes the long way.
_PLAIN = frozenset((str, int, float, bool))
_UNSET = Status(StatusCode.UNSET)  # ReadableSpan's default status
_NONE = ()  # events / links until the first one (links: a tuple until one is added)
# The OS lock, as in the SDK's span modules under estafeta (tracing/setup.py):
# a span is only ever touched on the hub's thread or after it ended.
os_lock = monkey.get_original("_thread", "allocate_lock")


class SpanAttributes(BoundedAttributes):
    """The SDK's BoundedAttributes (same fields, limits and dropping), with
    a short path for a plain str/int/float/bool value under a non-empty str
    key when the table has room and the string is within max_value_len:
    values the SDK's cleaning would return unchanged. (The test is written
    out in `new` and `__setitem__` both: a shared helper measured ~1 µs
    more per span of five attributes, tests/bench/spans.py.)"""

    @classmethod
    def new(cls, maxlen: int | None, max_value_len: int | None, attributes) -> SpanAttributes:
        """A mutable table holding `attributes` (a mapping, or None)."""
        self = cls.__new__(cls)
        self._dict = {}
        self.maxlen = maxlen
        self.dropped = 0
        self.max_value_len = max_value_len
        self._lock = os_lock()
        self._immutable = False
        if attributes:
            d = self._dict
            for key, value in attributes.items():
                t = type(value)
                if (
                    t in _PLAIN
                    and type(key) is str
                    and key
                    and (max_value_len is None or t is not str or len(value) <= max_value_len)
                    and (maxlen is None or len(d) < maxlen)
                ):
                    d[key] = value  # a fresh table: no key to move, nothing to drop
                else:
                    self[key] = value
        return self

    def __setitem__(self, key, value) -> None:
        t = type(value)
        if t in _PLAIN and type(key) is str and key and not self._immutable:
            d = self._dict
            limit = self.max_value_len
            if (t is not str or limit is None or len(value) <= limit) and (
                self.maxlen is None or len(d) < self.maxlen or key in d
            ):
                d.pop(key, None)  # a key set again moves to the end, as in the SDK
                d[key] = value
                return
        elif (t is tuple or t is list) and type(key) is str and key and not self._immutable:
            # A sequence of plain strings (the checks' lookups, DNS answers):
            # the SDK's cleaning makes it the same tuple, after an ABC
            # isinstance test per element.
            limit = self.max_value_len
            if all(type(x) is str and (limit is None or len(x) <= limit) for x in value):
                d = self._dict
                if self.maxlen is None or len(d) < self.maxlen or key in d:
                    d.pop(key, None)
                    d[key] = tuple(value)
                    return
        super().__setitem__(key, value)

    def _set_items(self, attributes) -> None:
        self._raise_if_immutable()
        for key, value in attributes.items():
            self[key] = value


class EstafetaSpan(sdk_trace._Span):  # noqa: SLF001 - the SDK's span class, see the module docstring
    """An SDK span made by `EstafetaTracer.start_span` (`make`, then `started`)."""

    @classmethod
    def make(
        cls,
        tracer: sdk_trace.Tracer,
        name,
        context,
        parent,
        kind,
        attributes,
        links,
        record_exception,
        set_status_on_exception,
        start_time,
    ) -> EstafetaSpan:
        """Make the span with its start time (ns, default now), as the SDK's
        start_span does before it tells the span processors (`started`).
        `context` is the new SpanContext, `parent` the parent's or None.
        Raises TypeError/AttributeError if this SDK's fields differ."""
        limits = tracer._span_limits  # noqa: SLF001
        self = cls.__new__(cls)
        # ReadableSpan's fields
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope  # noqa: SLF001
        self._parent = parent
        self._end_time = None
        self._attributes = SpanAttributes.new(limits.max_span_attributes, limits.max_span_attribute_length, attributes)
        self._events = _NONE
        self._resource = tracer.resource
        self._status = _UNSET
        # Span's fields
        self._sampler = tracer.sampler
        self._trace_config = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = tracer.span_processor
        self._limits = limits
        self._lock = os_lock()
        self._links = self._new_links(links) if links else _NONE
        self._record_end_metrics = None
        self._start_time = start_time if start_time is not None else _time_ns()
        return self

    def started(self, parent_context) -> None:
        """Tell the span processors the span started (on_start), in the OTel
        Context `parent_context` it was started in."""
        self._span_processor.on_start(self, parent_context=parent_context)

    def _new_links(self, links):
        """The SDK's _new_links (invalid links dropped, each link's
        attributes made an immutable bounded table, at most max_links),
        with the attribute tables made by SpanAttributes.new."""
        limits = self._limits
        valid = []
        for link in links:
            ctx = link.context if link else None
            if ctx and (ctx.is_valid or link.attributes or ctx.trace_state):  # the SDK's _is_valid_link
                table = SpanAttributes.new(limits.max_link_attributes, limits.max_attribute_length, link.attributes)
                table._immutable = True  # noqa: SLF001
                link._attributes = table  # noqa: SLF001
                valid.append(link)
        if len(valid) > (limits.max_links if limits.max_links is not None else len(valid)):
            return BoundedList.from_seq(limits.max_links, valid)  # the oldest dropped, counted
        return tuple(valid) if valid else _NONE  # within the limit: a tuple reads the same

    def add_event(self, name: str, attributes=None, timestamp: int | None = None) -> None:
        """The SDK's add_event, its attribute table made by
        SpanAttributes.new (plain values stored as they are, the limits
        kept) and then made immutable, as the SDK's is."""
        limits = self._limits
        table = SpanAttributes.new(limits.max_event_attributes, limits.max_attribute_length, attributes)
        table._immutable = True  # noqa: SLF001
        self._add_event(sdk_trace.Event(name=name, attributes=table, timestamp=timestamp))

    # The SDK's _add_event/_add_link (ended-span check included), making
    # the list on the first event or link.
    def _add_event(self, event) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("Tried calling _add_event on an ended span.")
                return
            if self._events is _NONE:
                self._events = BoundedList(self._limits.max_events)
            self._events.append(event)  # type: ignore[attr-defined]  # a BoundedList here

    def _add_link(self, link) -> None:
        with self._lock:
            if self._end_time is not None:
                log.warning("Tried calling _add_link on an ended span.")
                return
            if not isinstance(self._links, BoundedList):
                self._links = BoundedList.from_seq(self._limits.max_links, self._links)
            self._links.append(link)

    def end(self, end_time: int | None = None) -> None:
        """The SDK's end(), handing the processors this (now immutable)
        span instead of a copy."""
        with self._lock:
            if self._end_time is not None:
                log.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else _time_ns()
            self._attributes._immutable = True  # type: ignore[union-attr]  # noqa: SLF001
        processor = self._span_processor
        processor._on_ending(self)  # noqa: SLF001
        processor.on_end(self)
