"""``leadscore partition``: any CRM export, through its mapping, as a partitioned CRM
(features/partitioned.py) that the nightly job scores partition by partition."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from features.outputs import refuse_overlap
from features.partitioned import PartitionWriter, check_dataset_writable, clear_dataset
from features.urls import display_url
from pipelines.params import section
from pipelines.steps import crm_contract, iter_source, read_source, resolve_extracted_at

log = logging.getLogger(__name__)


def partitions_for(params: dict[str, Any], n_leads: int, partitions: int | None) -> int:
    """``partitions`` if given, else ``ceil(leads / partition.leads_per_partition)`` (>= 1)."""
    if partitions is not None:
        if partitions < 1:
            raise ValueError(f"--partitions must be >= 1, got {partitions}")
        return int(partitions)
    per = int((params.get("partition") or {}).get("leads_per_partition", 250_000))
    if per < 1:
        raise ValueError(f"partition.leads_per_partition must be >= 1, got {per}")
    return max(math.ceil(n_leads / per), 1)


def read_chunk_rows(params: dict[str, Any]) -> int:
    """``partition.read_chunk_rows``: rows of an export table read (and written) at a time."""
    rows = int((params.get("partition") or {}).get("read_chunk_rows", 1_000_000))
    if rows < 1:
        raise ValueError(f"partition.read_chunk_rows must be >= 1, got {rows}")
    return rows


def run_partition(
    params: dict[str, Any],
    source: str | Path,
    out: str | Path,
    partitions: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Read the export at ``source`` through the CRM's mapping (``crm.mapping``) and write it to
    ``out`` as a partitioned CRM; returns its meta (partitions, rows per table).

    Out of core: each table is read and written ``partition.read_chunk_rows`` rows at a time,
    so the export may be larger than memory (a flat export, one table the mapping splits in
    several, is read whole). Without ``partitions``, a first pass counts the leads. The
    export's values are kept as they are (validation reads each partition as it reads the
    export); its extraction time is carried over, so that the job scores as of it."""
    refuse_overlap({"source": source}, {"--out": out})
    contract = crm_contract(params)
    rows = read_chunk_rows(params)
    check_dataset_writable(Path(out))
    if contract.flat:  # one table the mapping splits in several: read once, whole
        tables = read_source(params, source, progress, contract)
        chunks = (item for item in tables.items())
        n_leads = len(tables["leads"])
    else:
        n_leads = 0
        if partitions is None:
            leads = iter_source(params, source, None, contract, rows, only="leads")
            n_leads = sum(len(frame) for _, frame in leads)
            log.info("partition: %d leads in the export", n_leads)
        chunks = iter_source(params, source, progress, contract, rows)
    # The source is checked (every table there, the first chunk read) before `out` is touched.
    first = next(chunks, None)
    extracted_at = resolve_extracted_at(source, section(params, "crm").get("extracted_at"))
    with contextlib.closing(chunks):  # the reader's file or connection, whatever happens
        writer = PartitionWriter(Path(out), partitions_for(params, n_leads, partitions), contract)
        try:
            for table, frame in itertools.chain([first] if first else [], chunks):
                writer.write({table: frame})
        except BaseException:
            # No half-copied CRM left to be scored: what was written goes (it is ours).
            clear_dataset(Path(out))
            raise
    mapping = section(params, "crm").get("mapping")
    return writer.close(
        {
            "extracted_at": extracted_at.isoformat(),
            "source": display_url(source),
            "mapping": str(mapping) if mapping else None,
        }
    )
