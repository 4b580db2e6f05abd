"""Histograms the event loop observes at every commit and every webhook, counted in plain Python.

prometheus_client's `Histogram.observe` takes a lock for its sum and another for its bucket and
walks the buckets in Python: about 5,000 instructions, and the loop observed three a webhook
(the commit's latency and its jobs, the request's latency). A `LoopHistogram` finds the bucket
with `bisect` and adds to a list, and the registry reads it as it reads a Histogram: the same
samples under the same names (`_bucket`, `_count`, `_sum`, `_created`), so /metrics does not
change. No lock: observe it on the event loop only (the registry reads it there too, in the
/metrics handler).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


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


class LoopHistogram(Collector):
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
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = bounds
        # Prometheus's spelling of each bound (`le`), as a Histogram writes it.
        self._les = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], LoopCounts] = {}
        if not self._labelnames:
            self._children[()] = LoopCounts(bounds)  # shown from the start, as a Histogram's
        registry.register(self)

    def labels(self, *values: str) -> LoopCounts:
        found = self._children.get(values)
        if found is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes the labels {self._labelnames}")
            found = self._children[values] = LoopCounts(self._bounds)
        return found

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
