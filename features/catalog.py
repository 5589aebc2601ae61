"""Feature metadata: a stable name, a readable label, the source fields and when they are known.

Every builder publishes a :class:`FeatureSpec` for each column it returns. The label is a template
that a reason code fills with the feature's value ("Viewed the pricing page 3 times in the last 7
days"). The sources tie each feature to contract fields, so whether a feature could see the
future is a property that a test checks, not a promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from features.contract import FEATURE_SAFE_KNOWLEDGE, Knowledge, knowledge_of


class Contract(Protocol):
    """What the catalog needs of a contract: when a field is known (a mapping may change it)."""

    def knowledge(self, table: str, column: str) -> Knowledge:
        """When ``table.column`` becomes known."""
        ...


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature column is, where it comes from, and how to say it in words."""

    name: str
    label: str  # a template with {value}, e.g. "Requested a demo {value} times in the last 7 days"
    sources: tuple[str, ...]  # "table.column" fields the feature reads
    builder: str
    categorical: bool = False
    #: What a missing value means, in words ("Never requested a demo"); default: "unknown".
    missing_label: str | None = None

    @property
    def knowledge(self) -> tuple[Knowledge, ...]:
        """When each source field becomes known (same order as ``sources``)."""
        return tuple(knowledge_of(*s.split(".", 1)) for s in self.sources)

    @property
    def is_point_in_time_safe(self) -> bool:
        """True when every source is known at creation or dated as of the snapshot."""
        return all(k in FEATURE_SAFE_KNOWLEDGE for k in self.knowledge)

    def knowledge_in(self, contract: Contract | None) -> tuple[Knowledge, ...]:
        """When each source field becomes known under a mapping's contract (None: native)."""
        if contract is None:
            return self.knowledge
        return tuple(contract.knowledge(*s.split(".", 1)) for s in self.sources)

    def unsafe_sources(self, contract: Contract | None = None) -> list[str]:
        """The sources a snapshot may not read under ``contract`` ("table.column (knowledge)")."""
        return [
            f"{src} ({k.value})"
            for src, k in zip(self.sources, self.knowledge_in(contract), strict=True)
            if k not in FEATURE_SAFE_KNOWLEDGE
        ]

    def describe(self, value: object) -> str:
        """The label filled with ``value`` (numbers without needless decimals); a missing value
        is said by ``missing_label`` if the feature has one, else filled in as 'unknown'."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if self.missing_label is not None:
                return self.missing_label
            shown = "unknown"
        elif isinstance(value, float):
            # As a person says it: 180 days, 2.2 days, 0.77 days; never 1.8e+02.
            shown = f"{value:,.0f}" if value.is_integer() or abs(value) >= 10 else f"{value:.2g}"
        else:
            shown = str(value).replace("_", " ")
        return self.label.format(value=shown)


def check_point_in_time_safe(specs: list[FeatureSpec]) -> None:
    """Raise ValueError naming every feature that reads a field not known at its snapshot."""
    unsafe = [
        f"{s.name} reads {src} ({k.value})"
        for s in specs
        for src, k in zip(s.sources, s.knowledge, strict=True)
        if k not in FEATURE_SAFE_KNOWLEDGE
    ]
    if unsafe:
        raise ValueError(
            "features must not read fields known only after the snapshot: " + "; ".join(unsafe)
        )
