"""The counters and histograms the event loop moves at every webhook and every commit, counted
in plain Python.

prometheus_client's `Counter.inc` takes a lock through four Python calls (2 µs on the 2-core
machine, against 0.3 for an addition), and `Histogram.observe` takes a lock for its sum and
another for its bucket and walks the buckets in Python (about 5,000 instructions); the loop
made about six increments and three observations a webhook. A `LoopCounter` adds to a float,
a `LoopHistogram` finds the bucket with `bisect` and adds to a list, and the registry reads
them as it reads a Counter and a Histogram: the same samples under the same names (`_total`,
`_bucket`, `_count`, `_sum`, `_created`), so /metrics does not change. No lock: move them on
the event loop only (the registry reads them there too, in the /metrics handler).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

C = TypeVar("C")  # one label set's child: LoopValue, LoopCounts


class LoopValue:
    """One label set's count."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class _LoopFamily(Collector, Generic[C]):
    """A metric's label sets, each a child made by `make`; one without labels has its one
    child from the start, as prometheus_client's metrics show theirs."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        make: Callable[[], C],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._make = make
        self._children: dict[tuple[str, ...], C] = {}
        if not self._labelnames:
            self._children[()] = make()
        registry.register(self)

    def labels(self, *values: str) -> C:
        found = self._children.get(values)
        if found is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes the labels {self._labelnames}")
            found = self._children[values] = self._make()
        return found


class LoopCounter(_LoopFamily[LoopValue]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        # The name without `_total`, as prometheus_client's Counter takes it.
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry,
                         LoopValue)

    def inc(self, amount: float = 1) -> None:
        """For a counter without labels."""
        self._children[()].inc(amount)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, counted in list(self._children.items()):
            family.add_metric(list(values), counted.value, created=counted.created)
        yield family


class LoopCounts:
    """One label set's counts."""

    __slots__ = ("_bounds", "buckets", "sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.buckets = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # The first bound at or above the amount: Prometheus's `le`.
        self.buckets[bisect.bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class LoopHistogram(_LoopFamily[LoopCounts]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if bounds[-1] != float("inf"):
            bounds = (*bounds, float("inf"))
        # Prometheus's spelling of each bound (`le`), as a Histogram writes it; set before the
        # registry first reads the family.
        self._les = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry,
                         partial(LoopCounts, bounds))

    def observe(self, amount: float) -> None:
        """For a histogram without labels."""
        self._children[()].observe(amount)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation,
                                       labels=self._labelnames)
        for values, counts in list(self._children.items()):
            cumulative, total = [], 0
            for le, count in zip(self._les, counts.buckets, strict=True):
                total += count
                cumulative.append((le, float(total)))
            family.add_metric(list(values), cumulative, counts.sum)
            family.samples.append(Sample(f"{self._name}_created",
                                         dict(zip(self._labelnames, values, strict=True)),
                                         counts.created))
        yield family
