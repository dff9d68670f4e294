"""A scraped exposition, parsed by prometheus_client's own parsers, to read values from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


@dataclass
class Exposition:
    """Samples by name and labels, and each family's type."""

    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, *, openmetrics: bool = False) -> Exposition:
        parse: Callable[[str], Iterable[Metric]] = (
            openmetrics_families if openmetrics else text_string_to_metric_families
        )
        families = parse(text)
        parsed = cls()
        for family in families:
            parsed.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in parsed.samples, f"duplicate series {key}"
                parsed.samples[key] = sample.value
        return parsed

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def buckets(self, name: str, **labels: str) -> dict[str, float]:
        """A histogram's cumulative bucket counts by ``le``, checked to be a histogram's."""
        found = {
            dict(key)["le"]: value
            for (sample, key), value in self.samples.items()
            if sample == f"{name}_bucket" and key - {("le", dict(key)["le"])} == set(labels.items())
        }
        counts = list(found.values())
        assert counts == sorted(counts), f"{name}{labels}: buckets must be cumulative"
        assert found["+Inf"] == self.value(f"{name}_count", **labels)
        return found

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(key)[label] for sample, key in self.samples if sample == name}
