"""The nightly scoring job: score every open lead and write the scores back, exactly once.

Order of work, so that bad input stops the job before anything is written:

1. load the model (by URI) and open the sink and the ledger;
2. read and validate the CRM as of the scoring instant (quarantined rows are counted);
3. pick the open leads of the model's population (its ``max_age_days``; ``score.older_leads``);
   build their features; predict, gate, stage (``in_sales`` for a lead sales works, under a
   model of the lead-scoring population); reasons in words;
4. check drift (PSI of each feature and of the probabilities against the model's training reference):
   warn, or refuse before writing if configured;
5. write in batches, each all-or-nothing; a batch that fails is recorded with its lead ids.

A run is a record in the ledger (``scoring_runs``). If a run of the same model version into the
same sink and as of the same instant (the same CRM export) did not finish (killed, or batches
failed), the next run resumes it: same run id, and only the leads without a history row for
that run are written. An unfinished run of an earlier instant is marked ``superseded`` by the
new run instead, so a nightly job always scores the latest export.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.mapping.contract import EffectiveContract
from features.outputs import check_writable, refuse_overlap, save_figure
from features.partitioned import is_partitioned, partition_of
from features.urls import display_url
from features.validation import TABLE_ORDER, ValidationResult, validate_crm, write_rejects
from pipelines.engines import EngineSettings
from pipelines.follow_up import company_types, follow_up, last_touch, sla_settings
from pipelines.params import behavioral_params, section
from pipelines.partitioned_scoring import (
    ScoredParts,
    ScoredRun,
    remove_staging,
    score_partitioned,
    staging_folder,
)
from pipelines.scoring import (
    OLDER_LEADS,
    SCORING_STAGES,
    explainer_for,
    load_scoring_model,
    open_leads,
    report_unseen_categories,
    score_leads,
    scoring_features,
    select_leads,
    stage_in_sales,
)
from pipelines.steps import (
    _read_meta,
    crm_contract,
    naive_utc,
    read_source,
    resolve_extracted_at,
    validation_settings,
)
from pipelines.writeback import open_ledger, open_sink, sink_kind
from pipelines.writeback.base import (
    SCORE_COLUMNS,
    BatchWriteError,
    SinkConfigurationError,
    no_stages,
)
from pipelines.writeback.identity import CREATE_HINT, check_database_exists
from pipelines.writeback.lease import Lease, LeaseLost

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


class NothingToScore(ValueError):
    """No open lead to score (with the counts of those left out)."""


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def _no_progress(task: str, done: int, total: int) -> None:
    pass


def resolve_as_of(
    params: dict[str, Any], source: str | Path | Mapping, as_of: str | None
) -> tuple[pd.Timestamp, bool]:
    """The scoring instant: the argument, else ``score.as_of``, else the CRM's extraction time
    (``crm.extracted_at`` or the export's ``crm_meta.json``), else now; and whether it was
    pinned (known from the data or the caller) rather than "now".

    ``as_of`` ``-3d``: three days before the instant it would otherwise be (an earlier night
    replayed: the point-in-time features see only what was known then)."""
    earlier = re.fullmatch(r"-(\d+)d", as_of.strip()) if as_of else None
    if earlier:
        base, pinned = resolve_as_of(params, source, None)
        return base - pd.Timedelta(days=int(earlier.group(1))), pinned
    chosen = (
        as_of or section(params, "score").get("as_of") or section(params, "crm").get("extracted_at")
    )
    if chosen:
        return naive_utc(chosen), True
    if not isinstance(source, str | Path):
        raise ValueError("scoring tables handed over in memory needs an explicit as_of")
    recorded = {} if "://" in str(source) else _read_meta(Path(source))
    if "extracted_at" in recorded:
        return naive_utc(recorded["extracted_at"]), True
    return resolve_extracted_at(source, None), False


def validated_tables(
    params: dict[str, Any],
    source: str | Path,
    as_of: pd.Timestamp,
    progress: Progress = _no_progress,
    contract: EffectiveContract | None = None,
) -> ValidationResult:
    """Read and validate the CRM at ``source`` as of the scoring instant.

    Returns the validation result (clean tables, quarantined rows and counts). A broken export
    (a required table or column empty, too many rows quarantined) raises ``ContractError``
    before anything is written.
    """
    extracted_at = resolve_extracted_at(source, section(params, "crm").get("extracted_at"))
    if as_of > extracted_at:
        log.warning(
            "scoring as of %s, after the CRM's extraction (%s): later activity is not in the data",
            as_of,
            extracted_at,
        )
    contract = contract or crm_contract(params)  # the CRM's mapping file, unless given
    validation = validate_crm(
        read_source(params, source, progress, contract),
        extracted_at=max(extracted_at, as_of),
        progress=progress,
        contract=contract,
        **validation_settings(params, contract),
    )
    return validation


def _write_quarantine(settings: dict[str, Any], validation) -> None:
    """Quarantined rows to ``score.rejects`` (once the job is sure to write: a job that stops
    writes nothing)."""
    if validation is None:
        return
    quarantined = {
        t: int(n) for t, n in validation.counts.set_index("table")["rows_rejected"].items()
    }
    if settings.get("rejects") and any(quarantined.values()):
        write_rejects(validation, settings["rejects"])
        log.info("quarantined rows written to %s: %s", settings["rejects"], quarantined)


def older_leads_setting(settings: Mapping[str, Any]) -> str:
    """``score.older_leads``: ``leave_out`` (default) or ``score`` the open leads older than the
    model's population (its ``max_age_days``).

    The retired ``score.max_lead_age_days`` is still read, with a warning: ``null`` (no cap) as
    ``older_leads: score``; a number is ignored (the cap is the model's); either is ignored when
    ``older_leads`` is set.
    """
    chosen = settings.get("older_leads")
    if "max_lead_age_days" in settings:
        old = settings["max_lead_age_days"]
        if chosen is not None:
            what = "ignored (score.older_leads is set)"
        elif old is None:
            chosen, what = "score", "read as score.older_leads: score (older leads are scored)"
        else:
            what = (
                f"ignored ({old} days): the age cap is the model's population max_age_days, "
                "older leads are left out"
            )
        log.warning(
            "score.max_lead_age_days is deprecated and %s; remove it and set score.older_leads "
            "(%s) instead",
            what,
            " | ".join(OLDER_LEADS),
        )
    chosen = "leave_out" if chosen is None else chosen
    if chosen not in OLDER_LEADS:
        raise ValueError(
            f"score.older_leads must be one of {', '.join(OLDER_LEADS)}, got {chosen!r}"
        )
    return chosen


def score_crm(
    params: dict[str, Any],
    source: str | Path | Mapping[str, pd.DataFrame],
    model,
    as_of: pd.Timestamp,
    lead_ids: Sequence[str] | None = None,
    limit: int | None = None,
    skip: set[str] | None = None,
    progress: Progress = _no_progress,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], ValidationResult | None]:
    """Validate the CRM at ``source`` (or take already validated tables), score its open leads.

    The leads are the model's population: leads older than its ``max_age_days`` are left out
    (or scored, with a warning, under ``score.older_leads: score``), and under a model of the
    lead-scoring population a lead with an opportunity open is staged ``in_sales`` (scored all
    the same).

    Returns the scores (one row per lead, reasons included), the features they were scored
    from, counts (leads read, left out by reason, older leads scored, leads staged in_sales,
    quarantined rows, already written, leads per category feature with a value unseen in
    training) and the validation result (None for tables validated by the caller).
    """
    settings = section(params, "score")
    population = model.population
    older_leads_setting(settings)  # a bad setting is refused before the CRM is read
    if population.max_age_days is None:
        log.info(
            "model %s version %s does not record the age of its training leads "
            "(population.max_age_days): open leads of every age are scored",
            model.name,
            model.version,
        )
    contract = crm_contract(params)  # the mapping file, read once per run
    validation = None
    if isinstance(source, str | Path):
        validation = validated_tables(params, source, as_of, progress, contract)
        tables = validation.tables
        quarantined = {
            t: int(n) for t, n in validation.counts.set_index("table")["rows_rejected"].items()
        }
    else:  # tables validated by the caller (e.g. `leadscore validate` output, or a benchmark)
        tables, quarantined = source, {}
    scored, features, counts = score_tables(
        params, tables, model, as_of, contract, lead_ids, limit, skip, progress
    )
    counts["quarantined_rows"] = quarantined
    if counts["scored"] == 0 and not counts.get("already_written"):
        raise nothing_to_score(counts, as_of, population.max_age_days)
    return scored, features, counts, validation


def nothing_to_score(
    counts: Mapping[str, Any], as_of: pd.Timestamp, max_age_days: int | None
) -> NothingToScore:
    """The error of a run with no open lead, with the counts of those left out."""
    too_old = (
        "no age cap"
        if max_age_days is None
        else f"older than the model's {max_age_days} days {counts['older_than_max_age']}"
    )
    return NothingToScore(
        f"no open lead to score as of {as_of} (leads in the CRM: {counts['leads_in_crm']}, "
        f"won {counts['already_won']}, lost {counts['already_lost']}, {too_old}, "
        f"created later {counts['created_after_as_of']})"
    )


def warn_older_leads_scored(n: int, max_age_days: int | None, as_of: pd.Timestamp) -> None:
    """One warning line for the ``n`` open leads older than the model's population that are
    scored all the same (``score.older_leads: score``); nothing when there are none."""
    if n:
        log.warning(
            "scoring %d open lead(s) created more than %d days before %s, older than any the "
            "model was trained on (score.older_leads: score): their scores are extrapolations",
            n, max_age_days, as_of,
        )  # fmt: skip


def score_tables(
    params: dict[str, Any],
    tables: Mapping[str, pd.DataFrame],
    model,
    as_of: pd.Timestamp,
    contract: EffectiveContract,
    lead_ids: Sequence[str] | None = None,
    limit: int | None = None,
    skip: set[str] | None = None,
    progress: Progress = _no_progress,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Score the open leads of validated ``tables`` (the whole CRM, or one partition of it):
    the scores, the features they were scored from, and the counts (see :func:`score_crm`)."""
    settings = section(params, "score")
    population, older_leads = model.population, older_leads_setting(settings)
    snapshots, counts = open_leads(tables, as_of, population.max_age_days, older_leads)
    warn_older_leads_scored(counts["older_than_max_age_scored"], population.max_age_days, as_of)
    snapshots = select_leads(snapshots, lead_ids, limit)
    counts["already_written"] = 0
    if skip:
        already = snapshots["lead_id"].isin(skip).to_numpy()
        counts["already_written"] = int(already.sum())
        snapshots = snapshots[~already].reset_index(drop=True)
    features_settings = section(params, "features")
    progress("features", 0, 1)
    features = scoring_features(tables, snapshots, model, features_settings, contract)
    progress("features", 1, 1)
    # Category values the model never saw in training (scored as "other"), per feature.
    counts["unseen_categories"] = report_unseen_categories(features, model)
    reasons = settings.get("reasons", {})
    top_k = int(reasons.get("top_k", 3))
    # Its phrases and contribution tables take ~0.4 s to build: not when no reason is said.
    explainer = explainer_for(model, features_settings, contract) if top_k > 0 else None
    chunk = int(reasons.get("chunk_rows", 100_000))
    parts = []
    for start in range(0, len(features), chunk):
        part = features.iloc[start : start + chunk]
        parts.append(
            score_leads(
                part, model, explainer,
                top_k=top_k,
                min_log_odds=float(reasons.get("min_log_odds", 0.01)),
                min_log_amount=float(reasons.get("min_log_amount", 0.05)),
            )
        )  # fmt: skip
        progress("score", min(start + chunk, len(features)), len(features))
    scored = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCORE_COLUMNS)
    counts["in_sales"] = 0
    if population.policy == "lead_scoring":  # sales works these leads: not lead scoring's to route
        scored, counts["in_sales"] = stage_in_sales(scored, tables["opportunities"], as_of)
    # The company's own activities (actor: company): the last sales touch of each lead.
    touch_types = company_types(contract, behavioral_params(params))
    counts["sales_touch_types"] = touch_types
    scored["last_sales_touch_at"] = last_touch(
        tables["events"], scored["lead_id"], touch_types, as_of
    ).to_numpy()
    # Set by run_score from the sink's previous stages (pipelines/follow_up.py).
    scored["stage_since"] = pd.Series(pd.NaT, index=scored.index, dtype="datetime64[us]")
    scored["follow_up_due"] = pd.array([pd.NA] * len(scored), dtype="boolean")
    scored = scored.assign(model_name=model.name, model_version=model.version, scored_at=as_of)
    scored["scored_at"] = scored["scored_at"].astype("datetime64[us]")
    counts["scored"] = len(scored)
    return scored.reset_index(drop=True), features, counts


def run_score(
    params: dict[str, Any],
    source: str | Path | Mapping[str, pd.DataFrame],
    model_uri: str | None = None,
    to: str | None = None,
    as_of: str | None = None,
    lead_ids: Sequence[str] | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    resume: bool = True,
    ledger_url: str | None = None,
    progress: Progress = _no_progress,
    create: bool = False,
    engine: str | None = None,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Score the open leads of the CRM at ``source`` and write them to ``to`` (see module doc).

    Returns the run summary; with ``dry_run`` nothing is written and the summary holds a
    ``preview`` frame of what would be. ``create``: make the sink (database file, folder) if
    it does not exist; otherwise a missing sink is an error (a typo is not a new CRM).

    A partitioned CRM (``leadscore partition``; features/partitioned.py) is scored partition by
    partition on ``engine`` (pandas: this process, out of core; dask: a cluster, ``scheduler``'s
    or a local one), pipelines/partitioned_scoring.py; the writing is the same.
    """
    settings = section(params, "score")
    started = _now()
    clock = time.perf_counter()
    destination = to or settings["to"]
    outputs = {
        "score.rejects": settings.get("rejects"),
        "score.drift.plot": (settings.get("drift") or {}).get("plot"),
    }
    if sink_kind(destination) == "files":  # a database sink may well be the CRM's own database
        outputs["--to"] = destination
    uri = model_uri or settings["model_uri"]
    inputs = {
        "source": source if isinstance(source, str | Path) else None,
        "--model": None if str(uri).startswith("models:/") else uri,
    }
    refuse_overlap(inputs, outputs)
    # Every file the run may write, checked before any work: a refusal leaves nothing behind.
    rejects = Path(settings["rejects"]) if settings.get("rejects") else None
    check_writable(
        *(
            [rejects / f"{t}.parquet" for t in TABLE_ORDER] + [rejects / "summary.json"]
            if rejects
            else []
        ),
        *([outputs["score.drift.plot"]] if outputs["score.drift.plot"] else []),
    )
    ttl_s, heartbeat_s = _lease_settings(settings)
    partitioned = is_partitioned(source)
    engine_settings = EngineSettings.from_params(params, engine, scheduler)
    if partitioned and limit is not None:
        raise ValueError(
            "--limit is not available on a partitioned CRM (its first leads are in every "
            "partition): select leads with --lead-id, or score the whole CRM"
        )
    model = load_scoring_model(uri)
    explicit_ledger = ledger_url or settings.get("ledger")
    if explicit_ledger and not create:  # a mistyped ledger path must not start a fresh ledger
        check_database_exists(explicit_ledger, "scoring ledger", CREATE_HINT)
    ledger = open_ledger(destination, settings, ledger_url)
    sink = open_sink(destination, settings, ledger, create=create)
    lease: Lease | None = None
    staging: Path | None = None
    try:
        as_of_ts, pinned = resolve_as_of(params, source, as_of)
        run_id, skip, superseded, previous, earlier = None, set(), None, {}, None
        whole_population = not lead_ids and limit is None
        # ledger.exists() creates nothing: bad input leaves no trace.
        if not dry_run and resume and whole_population and ledger.exists():
            # Runs are matched by the sink's identity (one spelling per sink); records written
            # before identities existed hold the sink's description.
            earlier = ledger.unfinished_run(
                model.name, model.version, sink.identity()
            ) or ledger.unfinished_run(model.name, model.version, sink.describe())
            earlier_as_of = pd.Timestamp(earlier["as_of"]) if earlier else None
            if earlier and (earlier_as_of == as_of_ts or not pinned):
                # Same model, sink and instant (or no instant known but "now"): finish that run,
                # as of its own instant, instead of starting over.
                run_id, as_of_ts, previous = earlier["run_id"], earlier_as_of, earlier
                skip = sink.written_lead_ids(run_id)
                log.info(
                    "resuming run %s as of %s: %d leads already written",
                    run_id,
                    as_of_ts,
                    len(skip),
                )
                if not pinned:
                    log.warning(
                        "the run resumed is as of %s; run the job again to score as of now",
                        as_of_ts,
                    )
            elif earlier and earlier_as_of < as_of_ts:
                # A newer export: today's scores replace the unfinished run's; it is closed as such.
                superseded = earlier["run_id"]
            elif earlier:
                log.warning(
                    "run %s as of %s did not finish; this run is as of an earlier instant (%s) and "
                    "leaves it as it is", earlier["run_id"], earlier_as_of, as_of_ts,
                )  # fmt: skip
        run_id = run_id or f"{as_of_ts:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        if partitioned:
            staging = staging_folder(engine_settings.staging_dir)
            result = score_partitioned(
                params, source, model, as_of_ts, engine_settings, lead_ids, skip, progress,
                staging,
            )  # fmt: skip
            if len(result.parts) == 0 and not result.counts.get("already_written"):
                raise nothing_to_score(result.counts, as_of_ts, model.population.max_age_days)
        else:
            scored, features, counts, validation = score_crm(
                params, source, model, as_of_ts, lead_ids, limit, skip, progress
            )
            parts = ScoredParts()
            parts.add(None, scored)
            result = ScoredRun(parts, counts, validation, drift_counts(model, features, scored))
            del scored, features
        counts, validation = result.counts, result.validation
        if whole_population and not skip:
            drift_settings = dict(settings.get("drift", {}))
            if dry_run:  # a dry run writes nothing, not even the plot
                drift_settings["plot"] = None
            drift = _check_drift(model, result.drift, as_of_ts, drift_settings)
        else:  # a part of the population says nothing about the population's drift
            drift = {
                "verdict": "not_checked",
                "messages": ["not the whole open population (a selection or a resumed run)"],
                "top": [],
            }
        summary: dict[str, Any] = {
            "run_id": run_id,
            "model_name": model.name,
            "model_version": model.version,
            "model_uri": model.uri,
            # rules-only (a cold start: points from params.yaml) or lightgbm, said with each run.
            "model_kind": model.scorer.meta.get("kind", "lightgbm"),
            "cutoffs": model.cutoffs,
            # The leads the model is for: in_sales staging (lead_scoring) and the age cap.
            "population": {
                "policy": model.population.policy,
                "max_age_days": model.population.max_age_days,
            },
            "as_of": as_of_ts.isoformat(),
            "sink": sink.describe(),
            "dry_run": dry_run,
            "counts": counts,
            "stages": {s: int(result.parts.stages.get(s, 0)) for s in SCORING_STAGES},
            "drift": drift,
        }
        if partitioned:
            summary["engine"] = {
                "name": engine_settings.name, "partitions": result.partitions, **result.seconds
            }  # fmt: skip
        touches_known = bool(counts["sales_touch_types"])
        if dry_run:
            # Nothing is read from the sink either (it may not exist): stages since now.
            preview = [
                follow_up(part.assign(run_id=run_id), no_stages(), as_of_ts, sla_settings(params),
                          touches_known=touches_known)[SCORE_COLUMNS]
                for _, part in result.parts.frames()
            ]  # fmt: skip
            summary["preview"] = pd.concat(preview, ignore_index=True)
            summary["seconds"] = round(time.perf_counter() - clock, 2)
            return summary
        if drift["verdict"] == "refuse":
            raise DriftRefused("; ".join(drift["messages"]))
        # One job at a time into a sink. The lease is taken only now, so that bad input, a
        # dry run or refused drift leave no trace; what was decided before it (resume or start
        # afresh) is checked again under it.
        lease = Lease(ledger, sink.identity(), ttl_s, heartbeat_s)
        lease.acquire()
        _recheck_under_lease(
            ledger, sink, model, started, as_of_ts, earlier["run_id"] if earlier else None,
            run_id if previous else None, skip, check_unfinished=bool(resume and whole_population),
            any_instant=not pinned,
        )  # fmt: skip
        sink.prepare()
        # Under the lease: the stages this sink holds are the ones this run follows on from.
        stages_before = _previous_by_part(sink.previous_stages(), result.partitions)
        due = FollowUpCounts()

        def prepared() -> Iterator[pd.DataFrame]:
            for key, part in result.parts.frames():
                part = follow_up(
                    part.assign(run_id=run_id), stages_before.get(key, stages_before.get(None, no_stages())),
                    as_of_ts, sla_settings(params), touches_known=touches_known,
                )  # fmt: skip
                due.add(part)
                yield part

        _write_quarantine(settings, validation)
        already = counts.get("already_written", 0)
        if previous:
            ledger.clear_failures(run_id)  # their leads are in this attempt: retried now
            ledger.update_run(run_id, status="running", finished_at=None, leads_read=counts["leads_in_crm"],
                              leads_scored=already + counts["scored"], leads_already_written=already)  # fmt: skip
        else:
            ledger.start_run(
                {
                    "run_id": run_id, "model_name": model.name, "model_version": model.version,
                    "model_uri": model.uri, "as_of": as_of_ts.to_pydatetime(), "sink": sink.identity(),
                    "status": "running", "started_at": started.to_pydatetime(),
                    "leads_read": counts["leads_in_crm"], "leads_scored": counts["scored"],
                    "leads_already_written": 0,
                }
            )  # fmt: skip
        lease.set_run(run_id)
        if superseded:
            ledger.update_run(
                superseded,
                status="superseded",
                message=f"not finished; superseded by run {run_id} as of {as_of_ts}",
            )
            log.warning(
                "run %s did not finish; run %s as of %s supersedes it", superseded, run_id, as_of_ts
            )
        written, failed = _write(
            sink, ledger, run_id, prepared(), len(result.parts), progress, already, lease
        )
        summary["follow_up"] = _follow_up_summary(due, counts["sales_touch_types"])
        status = "succeeded" if failed == 0 else "partial"
        ledger.update_run(
            run_id,
            status=status,
            finished_at=_now().to_pydatetime(),
            message=None
            if failed == 0
            else f"{failed} leads in failed batches: see the failures table; run again to retry them",
        )
        summary |= {
            "status": status,
            "leads_written": written,
            "leads_failed": failed,
            "leads_written_in_run": already + written,
            "seconds": round(time.perf_counter() - clock, 2),
        }
        log.info(
            "run %s %s: %d written, %d failed, %s",
            run_id,
            status,
            written,
            failed,
            summary["stages"],
        )
        lease.release()  # the sink is free: tracking below is a report, and may be slow
        if model.uri.startswith("models:/") and settings.get("mlflow_experiment"):
            summary["mlflow_run_id"] = _track_in_mlflow(settings, summary)
        return summary
    finally:
        if lease is not None:
            lease.release()
        sink.close()
        ledger.close()
        remove_staging(staging)


class FollowUpCounts:
    """Overdue leads per stage and leads touched, summed over the parts a run writes."""

    def __init__(self) -> None:
        self.by_stage: Counter = Counter()
        self.touched = 0

    def add(self, scored: pd.DataFrame) -> None:
        """One part's (follow_up applied)."""
        due = scored["follow_up_due"].fillna(False).to_numpy(dtype=bool)
        self.by_stage.update(scored.loc[due, "stage"].astype(str).value_counts().to_dict())
        self.touched += int(scored["last_sales_touch_at"].notna().sum())


def _previous_by_part(previous: pd.DataFrame, partitions: int | None) -> dict[Any, pd.DataFrame]:
    """The sink's previous stages, split like the run's parts (None: the whole CRM's one part)."""
    if partitions is None or previous.empty:
        return {None: previous}
    part = partition_of(previous["lead_id"], partitions)
    return {int(k): g for k, g in previous.groupby(part, sort=False)}


def _follow_up_summary(due: FollowUpCounts, touch_types: list[str]) -> dict[str, Any]:
    """Follow-up counts of a run: overdue leads per stage, and the activity types read."""
    if not touch_types:
        log.warning(
            "follow-up: the CRM declares no company activity (actor: company in the mapping's "
            "events.types): the last sales touch and follow_up_due are not known"
        )
        return {"touch_types": [], "due": None}
    order = {s: i for i, s in enumerate(SCORING_STAGES)}
    by_stage = pd.Series(dict(sorted(due.by_stage.items(), key=lambda kv: order.get(kv[0], 99))))
    total = int(by_stage.sum())
    log.log(
        logging.WARNING if total else logging.INFO,
        "follow-up: %d qualified lead(s) past their SLA with no sales touch (%s); `leadscore "
        "follow-ups` lists them",
        total, ", ".join(f"{k} {v}" for k, v in by_stage.items()) or "none",
    )  # fmt: skip
    return {
        "touch_types": list(touch_types),
        "due": total,
        "due_by_stage": {str(k): int(v) for k, v in by_stage.items()},
        "touched": due.touched,
    }


def _lease_settings(settings: dict[str, Any]) -> tuple[float, float | None]:
    """``score.lease`` (ttl_s, heartbeat_s), checked before any work: 0 < heartbeat_s < ttl_s."""
    lease = settings.get("lease") or {}
    ttl_s = float(lease.get("ttl_s", 300))
    heartbeat_s = lease.get("heartbeat_s")
    if ttl_s <= 0 or (heartbeat_s is not None and not 0 < float(heartbeat_s) < ttl_s):
        raise ValueError(
            f"score.lease needs 0 < heartbeat_s < ttl_s, got ttl_s {ttl_s}, heartbeat_s {heartbeat_s}"
        )
    return ttl_s, None if heartbeat_s is None else float(heartbeat_s)


class DriftRefused(RuntimeError):
    """The data drifted from the model's training reference beyond the configured limit."""


class RunsChanged(RuntimeError):
    """Another job changed the sink's runs while this one was scoring (before it held the lease)."""


def _recheck_under_lease(
    ledger, sink, model, started: pd.Timestamp, as_of: pd.Timestamp, seen: str | None,
    resumed: str | None, skip: set[str], check_unfinished: bool, any_instant: bool = False,
) -> None:  # fmt: skip
    """Raise :class:`RunsChanged` if what this job decided without the lease no longer holds:
    the unfinished run it resumes (or did not see) changed, leads of the resumed run were
    written meanwhile, or a run of the same model version, sink and instant succeeded since this
    job started (two jobs started together: the second has nothing to do). ``any_instant``: the
    scoring instant is "now", different for each job, so a run of any instant counts."""
    where = sink.describe()
    if check_unfinished:
        now = ledger.unfinished_run(
            model.name, model.version, sink.identity()
        ) or ledger.unfinished_run(model.name, model.version, where)
        if (now["run_id"] if now else None) != seen:
            raise RunsChanged(
                f"another scoring job changed the runs of {where} while this one was scoring "
                "(it has finished now): run the job again, it resumes or starts as needed"
            )
    if resumed is not None and sink.written_lead_ids(resumed) - skip:
        raise RunsChanged(
            f"another scoring job wrote leads of run {resumed} into {where} meanwhile: run the job again"
        )
    runs = ledger.runs_frame()
    same = runs[
        (runs["model_name"] == model.name) & (runs["model_version"].astype(str) == str(model.version))
        & runs["sink"].isin([sink.identity(), where]) & (runs["status"] == "succeeded")
        & ((pd.to_datetime(runs["as_of"]) == as_of) | any_instant) & (pd.to_datetime(runs["finished_at"]) >= started)
    ]  # fmt: skip
    if len(same):
        raise RunsChanged(
            f"run {same['run_id'].iloc[0]} of {model.name} version {model.version} into {where} as of "
            f"{same['as_of'].iloc[0]} succeeded while this job was scoring (two jobs were started): "
            "nothing left to do"
        )


def _write(
    sink,
    ledger,
    run_id: str,
    parts: Iterable[pd.DataFrame],
    total: int,
    progress: Progress,
    already: int = 0,
    lease: Lease | None = None,
) -> tuple[int, int]:
    """Write the scores (``parts``: one frame, or one per partition; ``total`` rows) in the
    sink's batches, then let the sink finish the run; returns (leads written, leads in failed
    batches) by this attempt. The run record counts ``already`` written by earlier attempts of
    the same run too."""
    written = failed = 0
    size = max(int(sink.batch_size), 1)
    progress("write", 0, total)
    try:
        for batch_no, batch in enumerate(_batches(parts, size)):
            if lease is not None:
                lease.ensure_held()  # a job whose lease was taken over stops before the next batch
            try:
                sink.write_batch(batch)
                written += len(batch)
            except BatchWriteError as error:
                written += len(batch) - len(error.lead_ids)
                failed += len(error.lead_ids)
                ledger.record_failure(run_id, batch_no, error.lead_ids, str(error), error.attempts)
                log.error(
                    "batch %d (%d leads) not written: %s", batch_no, len(error.lead_ids), error
                )
                status = error.status
                if status in (401, 403):  # every later batch would be refused too: stop here
                    raise SinkConfigurationError(
                        f"{sink.describe()} refused the credentials (HTTP {status}); fix them and run "
                        "again: the run resumes where it stopped"
                    ) from error
            ledger.update_run(run_id, leads_written=already + written, leads_failed=failed)
            progress("write", written + failed, total)
        sink.finish(run_id)
    except LeaseLost:
        raise  # the run record may be the new holder's now: leave it alone
    except (
        BaseException
    ) as error:  # killed or crashed mid-way: the record says so; a re-run resumes
        ledger.update_run(
            run_id, status="failed", finished_at=_now().to_pydatetime(), leads_written=already + written,
            leads_failed=failed, message=f"stopped: {error.__class__.__name__}: {error}"[:2000],
        )  # fmt: skip
        raise
    return written, failed


def drift_counts(model, features: pd.DataFrame, scored: pd.DataFrame) -> dict | None:
    """The bin counts of the features and probabilities against the model's drift reference
    (None without one): what the drift check reads, summable over partitions."""
    reference = model.scorer.meta.get("drift_reference")
    if reference is None:
        return None
    from models.drift import bin_counts

    return bin_counts(reference, features, scored["probability"].to_numpy(dtype=float))


def _batches(parts: Iterable[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
    """Batches of ``size`` rows over the parts in order (a batch never spans two parts)."""
    for part in parts:
        for start in range(0, len(part), size):
            yield part.iloc[start : start + size]


def _check_drift(
    model, counts: dict | None, scored_at: pd.Timestamp | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """PSI of each feature and of the probabilities against the model's reference (from their
    bin counts, :func:`drift_counts`); the verdict."""
    from models.drift import ROWS, SCORE, drift_verdict, shares_from_counts, stability_from_counts

    reference = model.scorer.meta.get("drift_reference")
    n_rows = int(counts[ROWS][0]) if counts is not None else 0
    if reference is None or n_rows == 0:
        return {
            "verdict": "not_checked",
            "messages": ["the model carries no drift reference"] if reference is None else [],
            "top": [],
        }
    table = stability_from_counts(reference, counts)
    verdict, messages = drift_verdict(
        table, float(settings.get("warn_above", 0.25)), settings.get("refuse_above")
    )
    for message in messages:
        (log.error if verdict == "refuse" else log.warning)("drift: %s", message)
    top = table.head(int(settings.get("report_top", 10)))
    if settings.get("plot"):
        import matplotlib.pyplot as plt

        from models.plots import drift_figure

        path = Path(settings["plot"])
        explainer = model.scorer.explainer
        when = scored_at
        figure = drift_figure(
            table,
            shares_from_counts(reference["score"], counts[SCORE]),
            labels=dict(zip(explainer.names, explainer.titles, strict=True)),
            title=f"Drift of {n_rows:,} open leads against {model.name} version "
            f"{model.version}'s reference"
            + (
                f", scored as of {pd.Timestamp(when):%Y-%m-%d %H:%M} UTC"
                if when is not None
                else ""
            ),
        )
        save_figure(path, figure, dpi=110)
        plt.close(figure)
        log.info("drift plot: %s", path)
    return {
        "verdict": verdict,
        "messages": messages,
        "probability_psi": float(table.loc[table["feature"] == "__score__", "psi"].iloc[0])
        if (table["feature"] == "__score__").any()
        else None,
        "top": [
            {
                "feature": r.feature,
                "psi": None if np.isnan(r.psi) else round(float(r.psi), 4),
                "largest_shift": r.largest_shift,
            }
            for r in top.itertuples()
        ],
    }


def _track_in_mlflow(settings: dict[str, Any], summary: dict[str, Any]) -> str | None:
    """Log the run's counts, stages and drift to MLflow, beside the model's training runs, so
    that the nights can be compared in the MLflow UI. The scores are already written: a
    tracking failure is a warning, never a failed job."""
    import mlflow

    from pipelines.registry import tracking_uri

    try:
        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(settings["mlflow_experiment"])
        with mlflow.start_run(run_name=f"score {summary['run_id']}") as run:
            mlflow.set_tags(
                {
                    "scoring_run_id": summary["run_id"], "model_name": summary["model_name"],
                    "model_version": summary["model_version"], "as_of": summary["as_of"],
                    "sink": summary["sink"], "status": summary["status"], "drift": summary["drift"]["verdict"],
                }
            )  # fmt: skip
            counts = summary["counts"]
            metrics = {
                "leads_open": counts["open"], "leads_scored": counts["scored"],
                "leads_written": summary["leads_written"], "leads_failed": summary["leads_failed"],
                **{f"stage_{stage}": n for stage, n in summary["stages"].items()},
            }  # fmt: skip
            if summary["drift"].get("probability_psi") is not None:
                metrics["psi_probability"] = summary["drift"]["probability_psi"]
            metrics |= {
                f"psi_{t['feature']}": t["psi"]
                for t in summary["drift"]["top"]
                if t["psi"] is not None
            }
            mlflow.log_metrics({k.replace("__", ""): float(v) for k, v in metrics.items()})
            plot = settings.get("drift", {}).get("plot")
            if plot and Path(plot).exists() and summary["drift"]["verdict"] != "not_checked":
                mlflow.log_artifact(plot)
        return run.info.run_id
    except Exception as error:  # noqa: BLE001 - tracking is a report, not the job
        log.warning(
            "the scoring run was not logged to MLflow (%s): %s",
            display_url(tracking_uri()),
            display_url(error),
        )
        return None
