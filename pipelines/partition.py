"""``leadscore partition``: any CRM export, through its mapping, as a partitioned CRM
(features/partitioned.py) that the nightly job scores partition by partition."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from features.outputs import refuse_overlap
from features.partitioned import PartitionWriter
from features.urls import display_url
from pipelines.params import section
from pipelines.steps import crm_contract, read_source, resolve_extracted_at

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


def run_partition(
    params: dict[str, Any],
    source: str | Path,
    out: str | Path,
    partitions: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Read the export at ``source`` through the CRM's mapping (``crm.mapping``) and write it to
    ``out`` as a partitioned CRM; returns its meta (partitions, rows per table).

    The export's values are kept as they are (validation reads each partition as it reads the
    export); its extraction time is carried over, so that the job scores as of it."""
    refuse_overlap({"source": source}, {"--out": out})
    contract = crm_contract(params)
    tables = read_source(params, source, progress, contract)
    n = partitions_for(params, len(tables["leads"]), partitions)
    writer = PartitionWriter(Path(out), n, contract)
    writer.write(tables)
    extracted_at = resolve_extracted_at(source, section(params, "crm").get("extracted_at"))
    mapping = section(params, "crm").get("mapping")
    return writer.close(
        {
            "extracted_at": extracted_at.isoformat(),
            "source": display_url(source),
            "mapping": str(mapping) if mapping else None,
        }
    )
