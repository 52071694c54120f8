"""The trace page's waterfall, laid out: each span a bar on a time axis
whose long idle stretches are compressed.

A message's trace can last days (retries), while each span lasts
milliseconds: on a linear axis every bar would be a hairline. So the axis
keeps the time when something ran (the union of the spans) at scale, and
shrinks every gap between them longer than both GAP_MIN_NS and the busy
time itself to a fixed share of the width, marked with its real length
("≈ 2.0 d"). Pure: spans in, percentages out (tracing/viewer/web/app.py
draws them).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from estafeta.store.spans import SpanRow
from estafeta.tracing.viewer.render import format_duration, span_tree

#: Gaps shorter than this are never compressed (ns): a message's own spans
#: sit within milliseconds of each other.
GAP_MIN_NS = 1_000_000_000
#: Width of a compressed gap, as a fraction of the visible (uncompressed) time.
GAP_SHARE = 0.06


@dataclass(frozen=True, slots=True)
class Bar:
    """One span's row: depth in the tree, position and width in percent of
    the axis, start offset from the trace's start (ns)."""

    span: SpanRow
    depth: int
    left: float
    width: float
    offset_ns: int
    orphan: bool
    #: A span of another trace that this one links to (the connection's
    #: smtp.session), drawn first.
    linked: bool = False


@dataclass(frozen=True, slots=True)
class Gap:
    """A compressed stretch of the axis: where (percent) and how long it really was."""

    at: float
    width: float
    label: str


class Axis:
    """Maps times (ns since the epoch) to percent of the width."""

    def __init__(self, spans: Sequence[SpanRow]):
        ivs = sorted((s.start_ns, max(s.end_ns, s.start_ns)) for s in spans)
        merged: list[list[int]] = []
        for a, b in ivs:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        busy = sum(b - a for a, b in merged)
        threshold = max(GAP_MIN_NS, busy)
        # pieces: (real start, real end, compressed?)
        pieces: list[tuple[int, int, bool]] = []
        for i, (a, b) in enumerate(merged):
            if i:
                prev = merged[i - 1][1]
                pieces.append((prev, a, a - prev > threshold))
            pieces.append((a, b, False))
        visible = sum(b - a for a, b, c in pieces if not c) or 1
        squeezed = max(1.0, visible * GAP_SHARE)
        self._starts = [p[0] for p in pieces]
        self._pieces = pieces
        self._display: list[tuple[float, float]] = []  # (display start, display length)
        pos = 0.0
        for a, b, c in pieces:
            length = squeezed if c else float(b - a)
            self._display.append((pos, length))
            pos += length
        self._total = pos or 1.0
        self.gaps = [
            Gap(
                self._display[i][0] * 100 / self._total, self._display[i][1] * 100 / self._total, format_duration(b - a)
            )
            for i, (a, b, c) in enumerate(pieces)
            if c
        ]

    def x(self, t: int) -> float:
        """Percent of the width at time t."""
        if not self._pieces:
            return 0.0
        i = max(0, bisect.bisect_right(self._starts, t) - 1)
        a, b, _ = self._pieces[i]
        d0, dl = self._display[i]
        frac = 0.0 if b <= a else min(1.0, max(0.0, (t - a) / (b - a)))
        return (d0 + frac * dl) * 100 / self._total


def layout(spans: Sequence[SpanRow], linked: Sequence[SpanRow] = ()) -> tuple[list[Bar], list[Gap]]:
    """Bars in tree order (children under their parent, siblings by start;
    orphans at the top level), after the `linked` spans of other traces
    (by start), all on one axis; and the compressed gaps."""
    if not spans:
        return [], []
    everything = [*spans, *linked]
    axis = Axis(everything)
    t0 = min(s.start_ns for s in everything)
    bars = []

    def bar(s: SpanRow, depth: int, orphan: bool, is_linked: bool) -> Bar:
        left = axis.x(s.start_ns)
        right = axis.x(max(s.end_ns, s.start_ns))
        return Bar(s, depth, left, max(0.3, right - left), s.start_ns - t0, orphan, is_linked)

    for s in sorted(linked, key=lambda s: s.start_ns):
        bars.append(bar(s, 0, False, True))
    for depth, s, orphan, under in span_tree(spans):
        bars.append(bar(s, depth + under, orphan, False))
    return bars, axis.gaps
