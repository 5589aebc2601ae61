"""One explainer for the CRM, the registered model and the analyst: contributions, groups, words.

The reasons written to the CRM, the reasons the registered model returns and the analyst's plots
all come from here, with the same numbers and the same labels:

- **contributions**: exact SHAP values of the booster in log-odds (:mod:`models.contributions`,
  equal to LightGBM's ``pred_contrib`` and much faster), one column per feature plus the
  expected value;
- **groups**: features that describe one behaviour summed (:class:`models.reasons.FeatureGroups`,
  from the catalog, so a mapping's activity types and custom fields get them too);
- **words**: :func:`models.reasons.top_reasons`;
- **``shap.Explanation``** objects (per feature or per group, with the catalog's readable titles
  and the leads' own values), so that SHAP's plots (bar, beeswarm, scatter, waterfall) draw them.

Contributions are in log-odds, the booster's scale before calibration: a contribution of +0.7
multiplies the odds of conversion by e^0.7 = 2. :meth:`LeadExplainer.probability_points` says
what a group is worth in probability points for a sample, which is how a report should say it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.catalog import FeatureSpec
from models.contributions import TreeContributions
from models.reasons import FeatureGroups, PhraseBook, fallback_spec, group_words, top_reasons

if TYPE_CHECKING:  # shap (and its matplotlib) only where an Explanation is built
    import shap


def _unique(titles: Sequence[str], names: Sequence[str]) -> list[str]:
    # Two features may read alike (a custom field labelled like a built-in one): a plot needs
    # distinct names, so a repeated title gets its column name.
    seen = pd.Series(list(titles)).duplicated(keep=False).to_numpy()
    return [f"{t} ({n})" if dup else t for t, n, dup in zip(titles, names, seen, strict=True)]


def _numeric(column: pd.Series) -> np.ndarray:
    """A column as numbers SHAP can colour by. Categories have no order to colour (a code's
    red or blue would mean nothing): NaN, which SHAP draws grey; their values stay readable in
    ``display_data``."""
    if (
        isinstance(column.dtype, pd.CategoricalDtype)
        or column.dtype == object
        or pd.api.types.is_string_dtype(column)
    ):
        return np.full(len(column), np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


@dataclass
class LeadExplainer:
    """Contributions, groups and words for one booster and its features' catalog entries."""

    booster: lgb.Booster
    names: list[str]
    specs: Mapping[str, FeatureSpec]
    #: The fast exact contributions, if the caller has them built (see :attr:`fast`).
    tree_contributions: TreeContributions | None = field(default=None, repr=False)

    @cached_property
    def fast(self) -> TreeContributions:
        """The fast exact contributions: the ones given, else built from the booster on first
        use (titles and groups alone never pay for the lookup tables)."""
        return self.tree_contributions or TreeContributions(self.booster)

    @cached_property
    def groups(self) -> FeatureGroups:
        """The features' groups (catalog order)."""
        return FeatureGroups.of(self.names, self.specs)

    @cached_property
    def phrases(self) -> PhraseBook:
        """The features' phrases, each said once for the explainer's life."""
        return PhraseBook(self.names, self.specs)

    @cached_property
    def titles(self) -> list[str]:
        """Each feature's readable title (distinct), for plots."""
        specs = [self.specs.get(n) or fallback_spec(n) for n in self.names]
        return _unique([s.title for s in specs], self.names)

    @cached_property
    def group_titles(self) -> list[str]:
        """Each group's readable title (distinct), for plots."""
        return _unique(list(self.groups.titles), list(self.groups.keys))

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        """Exact SHAP contributions of the booster's matrix ``x``: rows x (features + 1), in
        log-odds; the last column is the expected value."""
        return self.fast.contributions(x)

    def reasons(
        self,
        features: pd.DataFrame,
        contributions: np.ndarray,
        k: int = 3,
        min_log_odds: float = 0.01,
    ) -> pd.DataFrame:
        """``reasons_for`` / ``reasons_against`` per row, grouped and in words."""
        return top_reasons(
            contributions, features, self.names, self.specs, k, min_log_odds,
            groups=self.groups, phrases=self.phrases,
        )  # fmt: skip

    def explanation(
        self, features: pd.DataFrame, contributions: np.ndarray, grouped: bool = False
    ) -> shap.Explanation:
        """``shap.Explanation`` of the rows: per feature (``data`` the leads' values as numbers,
        ``display_data`` as read) or per group (``grouped``: summed contributions; ``data`` the
        values of the group's member that matters most in these rows)."""
        import shap

        contributions = np.asarray(contributions, dtype=float)
        values, base = contributions[:, : len(self.names)], contributions[:, -1]
        shown = features[self.names].reset_index(drop=True)
        if not grouped:
            data = (
                np.column_stack([_numeric(shown[n]) for n in self.names])
                if len(self.names)
                else np.empty((len(shown), 0))
            )
            return shap.Explanation(
                values=values,
                base_values=base,
                data=data,
                display_data=shown.astype(object).to_numpy(),
                feature_names=self.titles,
            )
        summed = self.groups.sum(values)
        # Per group, the member with the largest mean |contribution| here stands for its values.
        weight = np.abs(values).mean(axis=0) if len(values) else np.zeros(len(self.names))
        lead = np.empty(len(self.groups.keys), dtype=np.int64)
        for g in range(len(self.groups.keys)):
            members = np.flatnonzero(self.groups.member_of == g)
            lead[g] = members[np.argmax(weight[members])]
        columns = [self.names[i] for i in lead]
        return shap.Explanation(
            values=summed,
            base_values=base,
            data=np.column_stack([_numeric(shown[c]) for c in columns]),
            display_data=shown[columns].astype(object).to_numpy(),
            feature_names=self.group_titles,
        )

    def lead_explanation(
        self, features: pd.DataFrame, contributions: np.ndarray, row: int
    ) -> shap.Explanation:
        """One row's grouped explanation, each group named in the lead's own words ("Requested
        a demo 2 times in the last 7 days, last 3 days ago"): for a waterfall a rep can read."""
        import shap

        contributions = np.asarray(contributions, dtype=float)
        summed = self.groups.sum(contributions[row : row + 1])[0]
        phrases = np.empty(len(summed), dtype=object)
        shown = features.reset_index(drop=True)
        for sign, chosen in ((1, np.flatnonzero(summed >= 0)), (-1, np.flatnonzero(summed < 0))):
            if len(chosen):
                phrases[chosen] = group_words(
                    contributions[:, : len(self.names)], shown, self.names, self.specs,
                    self.groups, np.full(len(chosen), row), chosen, sign, self.phrases,
                )  # fmt: skip
        return shap.Explanation(
            values=summed,
            base_values=float(contributions[row, -1]),
            feature_names=[str(p) for p in phrases],
        )

    def probability_points(self, contributions: np.ndarray) -> pd.DataFrame:
        """Per group, what it is worth in these rows: mean |contribution| (log-odds), and the mean
        change of the booster's probability, in percentage points, if the group's contribution
        were taken away (``mean_points``: signed, ``mean_abs_points``: its size); largest first."""
        contributions = np.asarray(contributions, dtype=float)
        values = contributions[:, : len(self.names)]
        total = values.sum(axis=1) + contributions[:, -1]
        summed = self.groups.sum(values)
        p = 1 / (1 + np.exp(-total))
        without = 1 / (1 + np.exp(-(total[:, None] - summed)))
        points = 100 * (p[:, None] - without)
        table = pd.DataFrame(
            {
                "group": list(self.groups.keys),
                "title": self.group_titles,
                "mean_abs_log_odds": np.abs(summed).mean(axis=0),
                "mean_log_odds": summed.mean(axis=0),
                "mean_points": points.mean(axis=0),
                "mean_abs_points": np.abs(points).mean(axis=0),
            }
        )
        return table.sort_values("mean_abs_log_odds", ascending=False, ignore_index=True)
