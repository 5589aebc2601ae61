"""What every write-back sink shares: the columns of a score, the sink interface, batch errors.

A scoring run hands a sink its scores in batches (a frame of :data:`SCORE_COLUMNS`, one row per
lead). For each batch the sink must, as one unit that either happens or does not:

- upsert the *current* score fields of each lead, keyed by ``lead_id`` (a newer ``scored_at``
  is never overwritten by an older one), and
- append one row per lead to the *score history* (:data:`HISTORY_COLUMNS`), keyed by
  ``(run_id, lead_id)`` so that a re-run of the same run adds no duplicate.

A batch that cannot be written (after the sink's own retries) raises :class:`BatchWriteError`
with its lead ids; the runner records it and goes on with the next batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import pandas as pd

#: One scored lead, as written back (current-score fields), in order.
SCORE_COLUMNS = [
    "lead_id", "score", "probability", "expected_amount", "expected_value", "stage",
    "stage_reason", "bant_score", "gate_budget", "gate_authority", "gate_need", "gate_timeline",
    "reasons_for", "reasons_against", "amount_reasons", "stage_since", "last_sales_touch_at",
    "follow_up_due", "model_name", "model_version", "scored_at", "run_id",
]  # fmt: skip
#: The score columns that hold instants (naive UTC).
DATETIME_COLUMNS = ["stage_since", "last_sales_touch_at", "scored_at"]
#: One row of the append-only score history, in order.
HISTORY_COLUMNS = [
    "run_id",
    "lead_id",
    "score",
    "probability",
    "stage",
    "model_name",
    "model_version",
    "scored_at",
    # since when the lead is in this stage: the next run carries it over (pipelines/follow_up.py)
    "stage_since",
]


class SinkConfigurationError(ValueError):
    """A sink cannot be set up as asked (a missing credential, an unknown object...)."""


class BatchWriteError(RuntimeError):
    """A batch that could not be written; carries the lead ids so that none is silently lost."""

    def __init__(
        self, message: str, lead_ids: Iterable[str], attempts: int = 1, status: int | None = None
    ):
        super().__init__(message)
        self.lead_ids = [str(i) for i in lead_ids]
        self.attempts = attempts
        #: The HTTP status that failed the batch, if any (401/403 stop the run).
        self.status = status


def no_stages() -> pd.DataFrame:
    """No previous stages: the frame :meth:`ScoreSink.previous_stages` returns before a first run."""
    return pd.DataFrame(
        {
            "lead_id": pd.Series(dtype="str"),
            "stage": pd.Series(dtype="str"),
            "stage_since": pd.Series(dtype="datetime64[us]"),
        }
    )


class ScoreSink(ABC):
    """Where scores go. Subclasses: SQL database, Parquet/CSV files, HubSpot, Salesforce."""

    #: Leads per batch (the API's maximum for HTTP sinks; a transaction's size for SQL).
    batch_size: int = 50_000

    @abstractmethod
    def describe(self) -> str:
        """Where this sink writes, for people: logs, messages, reports (secrets masked)."""

    @abstractmethod
    def identity(self) -> str:
        """Which destination this sink writes to, canonical: equal for every spelling of one
        destination, different for different ones. Run records match "the same sink" by it.

        Every sink computes it with :func:`pipelines.writeback.identity.sink_identity`.
        """

    def prepare(self) -> None:
        """Create what the sink needs (tables, folders) before the first batch. Idempotent."""
        return None  # nothing to do unless a sink needs it

    def previous_stages(self) -> pd.DataFrame:
        """Each lead's stage and ``stage_since`` as the sink holds them now, before this run's
        writes (:func:`no_stages` columns): the follow-up carries ``stage_since`` over while a
        lead's stage stays. Empty: every lead is in its stage since this run."""
        return no_stages()

    @abstractmethod
    def written_lead_ids(self, run_id: str) -> set[str]:
        """Leads whose history row for ``run_id`` exists: what a resumed run must not redo."""

    @abstractmethod
    def write_batch(self, batch: pd.DataFrame) -> None:
        """Upsert current scores and append history for one batch, all or nothing.

        Raises :class:`BatchWriteError` (with the batch's lead ids) if the batch was not written.
        """

    def finish(self, run_id: str) -> None:
        """Called once every batch of ``run_id`` was attempted (e.g. to publish a merged file)."""
        return None  # nothing to do unless a sink needs it

    def close(self) -> None:
        """Release connections."""
        return None  # nothing to do unless a sink needs it
