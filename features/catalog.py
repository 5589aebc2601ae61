"""Feature metadata: a stable name, a readable label, the source fields and when they are known.

Every builder publishes a :class:`FeatureSpec` for each column it returns. The label is a template
that a reason code fills with the feature's value ("Viewed the pricing page 3 times in the last 7
days"). The sources tie each feature to contract fields, so whether a feature could see the
future is a property that a test checks, not a promise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from features.contract import FEATURE_SAFE_KNOWLEDGE, Knowledge, knowledge_of

#: ``[one|many]`` in a label: the first word when the value is exactly 1, else the second
#: ("Requested a demo {value} [time|times]" reads "1 time" and "3 times").
NUMBER_CHOICE = re.compile(r"\[([^\[\]|]*)\|([^\[\]|]*)\]")


def choose_number(text: str, value: object) -> str:
    """``text`` with each ``[one|many]`` replaced by ``one`` if ``value`` is exactly 1."""
    one = isinstance(value, int | float) and not isinstance(value, bool) and value == 1
    return NUMBER_CHOICE.sub(lambda m: m.group(1 if one else 2), text)


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
    #: Features that describe one behaviour (a type of activity's counts in every window and its
    #: recency) share a group: a reason sums their contributions and says them once, in the
    #: words of the strongest member. None: the feature is a group of its own.
    group: str | None = None
    #: What the group is, without a value, for plots and reports ("Demo requests").
    group_title: str | None = None
    #: A short clause a group's reason adds with this member's value when another member is the
    #: strongest ("last {value} days ago"): "Visited 21 web pages in the last 30 days, last 2 days ago".
    clause: str | None = None
    #: A short name for plots when the label does not read well without its value ("Lead
    #: source" for "Came in through {value}"); default: derived from the label (:attr:`title`).
    short: str | None = None

    @property
    def group_key(self) -> str:
        """The group this feature's contribution is summed into (its own name if none)."""
        return self.group or self.name

    @property
    def title(self) -> str:
        """The label without a value, for plots: "Requested a demo # times in the last 7 days",
        "Seniority" (a label that ends in ": {value}" loses it); :attr:`short` if set."""
        if self.short:
            return self.short
        text = choose_number(self.label, None)
        text = text.removesuffix(": {value}") if text.endswith(": {value}") else text
        return text.replace("{value}", "#")

    def to_dict(self) -> dict[str, object]:
        """JSON-safe, for the model's metadata (the packaged model says its reasons with it)."""
        return {
            "name": self.name, "label": self.label, "sources": list(self.sources),
            "builder": self.builder, "categorical": self.categorical,
            "missing_label": self.missing_label, "group": self.group,
            "group_title": self.group_title, "clause": self.clause, "short": self.short,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> FeatureSpec:
        """Read :meth:`to_dict`'s output back (keys it does not know are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in known}
        values["sources"] = tuple(values.get("sources") or ())
        return cls(**values)

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
        """The label filled with ``value`` (numbers without needless decimals, "1 time" but "2
        times" where the label says ``[time|times]``); a missing value is said by
        ``missing_label`` if the feature has one, else filled in as 'unknown'."""
        if _missing(value):
            if self.missing_label is not None:
                return self.missing_label
            return choose_number(self.label, None).format(value="unknown")
        return choose_number(self.label, value).format(value=_shown(value))

    def describe_clause(self, value: object) -> str | None:
        """:attr:`clause` filled with ``value``; None without a clause or a value."""
        if self.clause is None or _missing(value):
            return None
        return choose_number(self.clause, value).format(value=_shown(value))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


#: An underscore between two numbers in a category value is a range: "10k_50k" reads "10k-50k".
_RANGE = re.compile(r"(?<=\d)([kKmM]?)_(?=\d)")


def _shown(value: object) -> str:
    """A value as a person says it: 180 days, 2.2 days, 0.77 days, never 1.8e+02; category
    codes in words: "under_3_months" -> "under 3 months", "10k_50k" -> "10k-50k"."""
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() or abs(value) >= 10 else f"{value:.2g}"
    return _RANGE.sub(r"\1-", str(value)).replace("_", " ")


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
