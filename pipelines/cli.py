"""`leadscore`: the command line of the lead-conversion propensity pipeline.

Each command is one step of the pipeline (and one stage of dvc.yaml): it reads params.yaml,
calls the library and writes its outputs. Run `leadscore COMMAND --help` for details.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from features.urls import display_url, mask_secrets
from pipelines.reporting import ProgressReporter

app = typer.Typer(
    help=(
        "Lead-conversion propensity pipeline: synthetic or real CRM data in, point-in-time "
        "features and leak-free training sets out. The DVC pipeline (dvc.yaml) chains these "
        "commands; `make demo` runs it end to end. Exit codes: 0 done, 1 stopped with an "
        "error (one line on stderr; nothing, or nothing further, written), 2 a usage error "
        "or, for `score`, a partial run."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()
log = logging.getLogger("leadscore")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="The params.yaml to read.")]
TrainingOpt = Annotated[Path, typer.Option(help="Folder written by `leadscore training-set`.")]
ValidatedOpt = Annotated[Path, typer.Option(help="Folder written by `leadscore validate`.")]
FeaturesOpt = Annotated[Path, typer.Option("--features", help="Output of `leadscore features`.")]
LabelledOpt = Annotated[Path, typer.Option(help="Output of `leadscore label`.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Where a partitioned CRM's partitions run: pandas (this process, one at a time: out "
        "of core) or dask (a cluster). Default: engine.name in params.yaml.",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Address of a running Dask scheduler (tcp://host:8786); implies --engine dask. "
        "Without it the dask engine starts a local cluster (engine.workers processes).",
    ),
]
ScoresWhereArg = Annotated[
    str,
    typer.Argument(help="Where scores were written: an SQLAlchemy URL or a folder of score files."),
]
_state = {"verbose": False}


class Stage(StrEnum):
    """The stages a lead can be in."""

    SQL = "SQL"
    MQL = "MQL"
    nurture = "nurture"
    disqualified = "disqualified"
    in_sales = "in_sales"


class FileFormat(StrEnum):
    """Formats of a CRM folder."""

    parquet = "parquet"
    csv = "csv"


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Log debug detail (and the traceback of an unexpected error)."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")
    ] = False,
) -> None:
    """Configure logging once, for every command: rich on a terminal; one dated line per
    message (ISO time, level, logger) and periodic "n of N" progress lines under cron."""
    from pipelines.reporting import configure_logging

    # Nothing in the pipeline may phone home.
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    _state["verbose"] = verbose
    configure_logging(
        logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO, console
    )


def _load(params: Path) -> dict:
    from pipelines.params import load_params

    return load_params(params)


MappingOpt = Annotated[
    Path | None,
    typer.Option(
        help="The CRM's mapping file (default: crm.mapping in params.yaml). See docs/mapping.md."
    ),
]


def _with_mapping(params: dict, mapping: Path | None) -> dict:
    """params with ``crm.mapping`` set to ``mapping`` when one is given on the command line."""
    if mapping is not None:
        params = {**params, "crm": {**params.get("crm", {}), "mapping": str(mapping)}}
    return params


def _fail(message: str, code: int = 1) -> None:
    """One line on stderr, secrets masked, then exit ``code``."""
    line = " ".join(mask_secrets(str(message)).split())  # one line, whatever the message held
    console.print(
        f"[bold red]error:[/] {escape(line)}", markup=True, highlight=False, soft_wrap=True
    )
    raise typer.Exit(code=code)


def _user_errors(command):
    """Turn every error of a command into one line and exit 1: the user never sees a traceback
    (``--verbose`` logs it for an unexpected one)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import pyarrow as pa
        import sqlalchemy as sa

        from features.outputs import OutputError
        from features.validation import ContractError

        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except (ContractError, OutputError) as err:
            _fail(str(err))
        except (OSError, sa.exc.SQLAlchemyError, pa.ArrowException) as err:
            # Unreachable database, unwritable folder, unreadable file: said in one line.
            first = (str(getattr(err, "orig", None) or err).splitlines() or [""])[0]
            _fail(f"{err.__class__.__name__}: {first}")
        except (ValueError, LookupError, RuntimeError) as err:
            # The library's own errors (bad settings, nothing to score, drift refused, a lease
            # held by another job...) say what to do in their message.
            text = err.args[0] if isinstance(err, KeyError) and err.args else err
            _fail(str(text))
        except Exception as err:  # noqa: BLE001 - a bug still gets one line, not a traceback
            log.debug("unexpected error", exc_info=True)
            hint = "" if _state["verbose"] else " (run again with --verbose for the traceback)"
            _fail(f"unexpected {err.__class__.__name__}: {err}{hint}")

    return wrapper


def _read_json(path: Path, producer: str) -> dict:
    """A JSON report written by an earlier step, or a clear error naming the step to run."""
    if not path.exists():
        _fail(f"{path} not found: run `{producer}` (or `make demo`) first")
    return json.loads(path.read_text())


@app.command()
@_user_errors
def generate(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[
        str, typer.Option(help="Folder (or SQLAlchemy URL) to write the CRM tables to.")
    ] = "data/crm",
    oracle: Annotated[
        Path,
        typer.Option(help="Where to write the true propensity per snapshot (never a feature)."),
    ] = Path("data/oracle/true_propensity.parquet"),
    fmt: Annotated[
        FileFormat, typer.Option("--format", help="parquet or csv (ignored for a database URL).")
    ] = FileFormat.parquet,
    n_leads: Annotated[int | None, typer.Option(help="Override generate.n_leads.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override generate.seed.")] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Write a partitioned CRM of this many partitions (`leadscore partition`'s "
            "layout), partition.generate_chunk_leads leads at a time: the CRM may be larger "
            "than memory. Each chunk is a world of its own, its ids prefixed (c0003-...).",
        ),
    ] = None,
) -> None:
    """Generate a synthetic B2B CRM (leads, accounts, events, opportunities, and the history of
    its BANT answers and firmographics, which the tables hold as of today) with known propensity.

    The world is a hidden Markov funnel (see docs/synthetic-crm.md); the oracle file holds the
    exact probability of closed-won within the horizon for each snapshot of the policy in
    params.yaml, for evaluation only. Sizes, seed, market shift and defect rates come from the
    `generate` section.
    """
    from pipelines.steps import run_generate, run_generate_partitioned

    p = _load(params)
    overrides = {k: v for k, v in {"n_leads": n_leads, "seed": seed}.items() if v is not None}
    if partitions is not None:
        with ProgressReporter(console) as progress:
            meta = run_generate_partitioned(
                p, out, oracle, partitions,
                progress=lambda k, n: progress("chunks", k + 1, n), **overrides,
            )  # fmt: skip
        _print_rows(f"synthetic CRM in {out}: {partitions} partition(s)", meta["rows"])
        return
    with ProgressReporter(console) as progress:
        meta = run_generate(
            p,
            out,
            oracle,
            fmt=str(fmt),
            progress=lambda day, n: progress("days", day + 1, n),
            **overrides,
        )
    _print_rows(f"synthetic CRM in {display_url(out)}", meta["rows"])


def _print_rows(title: str, rows: dict[str, int]) -> None:
    """A table of rows per CRM table."""
    table = Table(title=title)
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    out_console.print(table)


@app.command()
@_user_errors
def partition(
    source: Annotated[
        str,
        typer.Argument(help="The CRM export: a folder of Parquet/CSV tables or an SQLAlchemy URL."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the partitioned CRM (new, or ours).")],
    params: ParamsOpt = Path("params.yaml"),
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Number of partitions (default: leads / partition.leads_per_partition, rounded up).",
        ),
    ] = None,
    mapping: MappingOpt = None,
) -> None:
    """Write a CRM export as a partitioned Parquet dataset, for CRMs that outgrow one process.

    Leads, their opportunities, events and field history are co-partitioned by a hash of the
    lead id (every row of a lead in one partition); accounts and their history are shared by
    all. Read through the CRM's mapping (--mapping or crm.mapping): the dataset holds the
    contract's tables and columns, with the export's values (validation reads them as it reads
    the export). `leadscore score OUT` then scores it partition by partition (--engine).

    Out of core: each table is read and written partition.read_chunk_rows rows at a time, so
    the export may be larger than memory (a flat export is read whole). Nothing is written
    until the source is found readable; a copy that fails half-way is removed.
    """
    from pipelines.partition import run_partition

    p = _with_mapping(_load(params), mapping)
    with ProgressReporter(console) as progress:
        meta = run_partition(p, source, out, partitions, progress)
    _print_rows(f"partitioned CRM in {out}: {meta['partitions']} partition(s)", meta["rows"])


@app.command("export-foreign")
@_user_errors
def export_foreign(
    crm: Annotated[
        Path, typer.Argument(help="A native CRM folder (as `leadscore generate` writes it).")
    ] = Path("data/crm"),
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for the HubSpot-shaped export.")] = Path(
        "data/crm-hubspot"
    ),
    fmt: Annotated[
        FileFormat, typer.Option("--format", help="csv (as HubSpot exports) or parquet.")
    ] = FileFormat.csv,
    seed: Annotated[int, typer.Option(help="Seed of the sales calls and meetings added.")] = 0,
) -> None:
    """Re-export a native CRM the way a HubSpot user gets it: contacts, companies, engagements,
    deals and property history (when the CRM has a field history), HubSpot's names and values,
    sales calls and meetings, custom properties.

    The fixture for bring-your-own-CRM: validated with mappings/hubspot-example.yaml
    (`leadscore validate OUT --mapping mappings/hubspot-example.yaml`), it gives the native
    CRM's features exactly, plus its own. See docs/foreign-export.md.
    """
    from pipelines.foreign_export import run_export_foreign

    summary = run_export_foreign(_load(params), crm, out, fmt=str(fmt), seed=seed)
    out_console.print_json(json.dumps(summary, default=str))


@app.command()
@_user_errors
def validate(
    source: Annotated[
        str | None,
        typer.Argument(
            help="Folder of Parquet/CSV tables or an SQLAlchemy URL (default: crm.source in params.yaml)."
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for the clean, typed tables.")] = Path(
        "data/validated"
    ),
    rejects: Annotated[
        Path, typer.Option(help="Folder for quarantined rows (with a reason column).")
    ] = Path("data/rejects"),
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="The mapping file that turns this export into the contract (default: "
            "crm.mapping in params.yaml; none: the export uses the contract's names). "
            "See docs/mapping.md; `leadscore inspect` drafts one."
        ),
    ] = None,
) -> None:
    """Check the CRM against the data contract; quarantine unusable rows with a reason.

    With a mapping file (--mapping, or crm.mapping), the export's own tables, columns, values,
    activity types and custom fields are turned into the contract first; a mistake in the file is
    one line naming the key.

    A missing column or a column of the wrong type stops with an error naming the table, the
    column and example rows. Unusable rows (duplicates, unknown leads, future timestamps, events
    before their lead existed, unreadable keys, times or outcomes) go to the rejects folder with a
    reason and are counted. An unreadable value in an optional field (a firmographic, a BANT
    answer, a flag) is set to missing and counted; the row is kept. See docs/data-contract.md.

    A broken export stops with one line and writes nothing: an unreadable file (corrupt Parquet,
    wrong encoding: crm.encoding), a table without rows, a required column empty in every row,
    or more than validate.max_quarantined_fraction of a table's rows quarantined. --out and
    --rejects may not be, contain or lie inside the source or each other, and only files
    leadscore wrote there are ever replaced. Exit codes: 0 done, 1 stopped, 2 a usage error.
    """
    from pipelines.steps import run_validate

    p = _load(params)
    source = source or p.get("crm", {}).get("source") or "data/crm"
    with ProgressReporter(console) as progress:
        report = run_validate(p, source, out, rejects, progress=progress, mapping=mapping)
    table = Table(title=f"validation of {display_url(source)}")
    for col in ("table", "rows_in", "rows_rejected", "rows_out"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for row in report["counts"]:
        table.add_row(
            *(
                f"{row[c]:,}" if isinstance(row[c], int) else str(row[c])
                for c in ("table", "rows_in", "rows_rejected", "rows_out")
            )
        )
    out_console.print(table)


@app.command()
@_user_errors
def label(
    params: ParamsOpt = Path("params.yaml"),
    validated: ValidatedOpt = Path("data/validated"),
    out: Annotated[Path, typer.Option(help="Parquet file of labelled snapshots.")] = Path(
        "data/labels/labelled_snapshots.parquet"
    ),
) -> None:
    """Take snapshots by the policy in params.yaml and label them (closed-won within the horizon).

    Snapshots of leads already won or lost, and snapshots whose horizon is not over by the end
    of the data (censored), are left out and counted.
    """
    from pipelines.steps import run_label

    summary = run_label(_load(params), validated, out)
    out_console.print_json(json.dumps(summary))


@app.command()
@_user_errors
def features(
    params: ParamsOpt = Path("params.yaml"),
    validated: ValidatedOpt = Path("data/validated"),
    snapshots: Annotated[
        Path, typer.Option(help="Parquet file of (lead_id, as_of) snapshots.")
    ] = Path("data/labels/labelled_snapshots.parquet"),
    out: Annotated[
        Path, typer.Option(help="Parquet file of features, one row per snapshot.")
    ] = Path("data/features/features.parquet"),
    mapping: MappingOpt = None,
) -> None:
    """Build point-in-time features for each snapshot with the builders chosen in params.yaml.

    A feature as of a snapshot sees only rows dated strictly before as_of; builders that would
    read a field known only later are refused. The feature catalog (names, readable labels,
    sources and when they are known) is written beside the output.
    """
    from pipelines.steps import run_features

    with ProgressReporter(console) as progress:
        frame = run_features(
            _with_mapping(_load(params), mapping), validated, snapshots, out, progress=progress
        )
    out_console.print(f"{frame.shape[1] - 2} features x {len(frame):,} snapshots -> {out}")


@app.command("training-set")
@_user_errors
def training_set(
    params: ParamsOpt = Path("params.yaml"),
    features_path: FeaturesOpt = Path("data/features/features.parquet"),
    snapshots: LabelledOpt = Path("data/labels/labelled_snapshots.parquet"),
    validated: ValidatedOpt = Path("data/validated"),
    out: Annotated[
        Path, typer.Option(help="Folder for train/validation/test Parquet and manifest.json.")
    ] = Path("data/training"),
    crm: Annotated[
        Path | None,
        typer.Option(
            help="A partitioned CRM (`leadscore partition`, `leadscore generate --partitions`): "
            "validate, label, build the features and split it partition by partition, instead "
            "of reading --features, --snapshots and --validated."
        ),
    ] = None,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
    mapping: MappingOpt = None,
) -> None:
    """Join labels and features, split by as_of into train / validation / test, write a manifest.

    With --crm, a partitioned CRM is taken from its export to its training set partition by
    partition (--engine pandas: one at a time in this process; dask: on a cluster). The split is
    the whole CRM's, row for row; the train split is written as one file per partition
    (`train/part-00007.parquet`), validation and test as one file each, with the validation
    report, the quarantined rows (`rejects/`) and the feature catalog beside them.
    """
    if crm is not None:
        from pipelines.engines import EngineSettings
        from pipelines.partitioned_training import run_training_set_partitioned

        loaded = _with_mapping(_load(params), mapping)
        settings = EngineSettings.from_params(loaded, engine, scheduler)
        _print_manifest(run_training_set_partitioned(loaded, crm, out, settings))
        return
    from pipelines.steps import run_training_set

    result = run_training_set(_load(params), features_path, snapshots, validated, out)
    _print_manifest(result)


@app.command("manifest")
@_user_errors
def show_manifest(
    path: Annotated[
        Path, typer.Argument(help="A manifest.json written by `leadscore training-set`.")
    ] = Path("data/training/manifest.json"),
    oracle: Annotated[
        Path | None,
        typer.Option(help="Oracle file of a synthetic CRM: adds the oracle ROC AUC per split."),
    ] = None,
) -> None:
    """Print a training set's manifest: rows, positive rate and dates per split, and its inputs."""
    result = _read_json(path, "leadscore training-set")
    ceiling = None
    if oracle is not None:
        from pipelines.oracle import oracle_auc_by_split

        ceiling = oracle_auc_by_split(path.parent, oracle)
    _print_manifest(result, ceiling)


def _print_manifest(result: dict, oracle_auc: dict | None = None) -> None:
    table = Table(
        title=f"training set: {result['rows']:,} snapshots, {result['n_features']} features, "
        f"{100 * result['positive_rate']:.2f}% positive"
    )
    cols = ["split", "rows", "leads", "positives", "positive rate", "as_of from", "as_of to"]
    if oracle_auc:
        cols.append("oracle ROC AUC")
    for c in cols:
        table.add_column(c, justify="left" if c == "split" else "right")
    for name, s in result["splits"].items():
        row = [
            name,
            f"{s['rows']:,}",
            f"{s['leads']:,}",
            f"{s['positives']:,}",
            f"{100 * s['positive_rate']:.2f}%" if s["positive_rate"] is not None else "-",
            s["as_of_from"] or "-",
            s["as_of_to"] or "-",
        ]
        if oracle_auc:
            auc = oracle_auc.get(name)
            row.append(f"{auc:.3f}" if auc is not None else "-")
        table.add_row(*row)
    out_console.print(table)
    out_console.print(f"left out: {result['excluded_snapshots']}")
    if result.get("time", "dates") != "dates":
        out_console.print(f"time axis: {result['time']} (the as_of dates above are pseudo-time)")
    declared = result.get("features_resting_on_a_declaration") or {}
    if declared:
        out_console.print(
            f"{len(declared)} feature(s) rest on a knowledge time the mapping declares (not on "
            f"field history): {', '.join(list(declared)[:12])}{', ...' if len(declared) > 12 else ''}"
        )
    out_console.print(f"input fingerprint: {result['input_fingerprint'][:16]}…")


@app.command()
@_user_errors
def train(
    params: ParamsOpt = Path("params.yaml"),
    training: TrainingOpt = Path("data/training"),
    out: Annotated[
        Path, typer.Option(help="Folder for the booster, calibrator, baseline and metadata.")
    ] = Path("data/model"),
    validated: Annotated[
        Path | None,
        typer.Option(
            help="The validated CRM: the drift reference is then the open leads at the end of the validation period (else the validation split)."
        ),
    ] = None,
    mapping: MappingOpt = None,
    no_mlflow: Annotated[
        bool,
        typer.Option(
            "--no-mlflow",
            help="Do not track the training in MLflow (default: one run per model, in the experiment register.experiment of MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
        ),
    ] = False,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Train the propensity model: LightGBM with settings fitted to the data, then calibrated.

    First the leakage alarm: each feature alone, out of time; a leak stops training and is
    named. LightGBM's size-dependent settings are scaled to the rows and positives, then a
    budgeted search (train.search) tries variations around them. Validation is cut in two by
    lead: one part stops the trees and judges the search, the other (rows neither saw) fits
    the calibrator (isotonic, sigmoid or none, folds grouped by lead), the MQL/SQL cutoffs and the
    validation report that registration is judged on. A logistic-regression baseline is
    trained on the same split for every report to compare.

    A partitioned training set (`leadscore training-set --crm`): the boosters learn from every
    train row on --engine (dask: `lightgbm.dask` on the cluster, the workers reading the
    parts; pandas: the parts gathered here); the leakage scan, the search, the baseline and the
    value model read a sample of whole leads (engine.train_sample_rows), and the category
    grouping is fitted on every row's counts.

    Before fitting, the data-sufficiency check (params.yaml `sufficiency`: leads and won
    leads in the recent window, won leads per split) says what is missing, and stops training
    if `sufficiency.action` is `stop`.

    The training is tracked in MLflow (one run per model folder): params, the splits as
    datasets, validation metrics, the training curve, the search's trials and the feature
    importance; evaluate and register add to the same run. Tracking is not registering: no
    version is made here.
    """
    from pipelines.engines import EngineSettings
    from pipelines.modeling import run_train

    loaded = _with_mapping(_load(params), mapping)
    meta = run_train(
        loaded, training, out, validated, track=not no_mlflow, params_path=params,
        engine=EngineSettings.from_params(loaded, engine, scheduler),
    )  # fmt: skip
    v = meta["validation"]
    auc = v["intervals"]["roc_auc"]
    search = meta["search"]
    out_console.print(
        f"LightGBM: {meta['best_iteration']} trees, {len(meta['features'])} features, "
        f"{search['n_trials']} search trial(s); calibration: "
        f"{meta['calibration']['method']}; validation ROC AUC {v['roc_auc']:.3f} "
        f"[{auc['low']:.3f}, {auc['high']:.3f}], ECE {v['ece']:.4f} -> {out}"
    )
    for line in meta.get("cutoff_warnings", []):
        out_console.print(f"[yellow]cutoffs:[/yellow] {line}")
    for line in (meta.get("data_sufficiency") or {}).get("missing", []):
        out_console.print(f"[yellow]below the data-sufficiency bar:[/yellow] {escape(line)}")


@app.command("cross-validate")
@_user_errors
def cross_validate(
    params: ParamsOpt = Path("params.yaml"),
    training: TrainingOpt = Path("data/training"),
    out: Annotated[Path, typer.Option(help="JSON report.")] = Path(
        "data/evaluation/cross_validation.json"
    ),
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    stop_fraction: Annotated[
        float, typer.Option(help="Share of each fold's training leads used for early stopping.")
    ] = 0.2,
    model: Annotated[
        Path | None,
        typer.Option(
            help="A `leadscore train` folder: each fold refits its settings and number of trees (else scaled settings, early-stopped per fold)."
        ),
    ] = None,
    mapping: MappingOpt = None,
) -> None:
    """Cross-validate the booster by lead (stratified, grouped): NOT out of time.

    Every labelled row (train, validation and test together) in folds that keep each lead on
    one side. Folds mix periods, so the figure compares with published cross-validated ones;
    the out-of-time test split of `leadscore evaluate` is the honest figure for production.
    """
    from pipelines.cross_validation import run_cross_validate

    summary = run_cross_validate(
        _with_mapping(_load(params), mapping), training, out, folds, seed, stop_fraction, model
    )
    mean, sd = summary["mean"], summary["sd"]
    out_console.print(
        f"{summary['what']}: ROC AUC {mean['roc_auc']:.4f} (sd {sd['roc_auc']:.4f}), PR AUC "
        f"{mean['pr_auc']:.4f} (sd {sd['pr_auc']:.4f}), lift in top decile "
        f"{mean['lift_top_decile']:.2f}; {summary['caveat']} -> {out}"
    )


@app.command()
@_user_errors
def explain(
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[
        str | None,
        typer.Option(
            help="models:/name@alias, models:/name/N or a `leadscore train` folder (default: explain.model_uri in params.yaml, the champion)."
        ),
    ] = None,
    training: TrainingOpt = Path("data/training"),
    split: Annotated[
        str, typer.Option(help="Which split's snapshots to explain: train, validation or test.")
    ] = "test",
    out: Annotated[
        Path, typer.Option(help="Folder for the PNG plots, CSV tables and report.html.")
    ] = Path("data/explain"),
    lead_id: Annotated[
        list[str] | None,
        typer.Option(
            "--lead-id",
            help="A lead to explain on its own (its newest snapshot in the split): a waterfall, its probability, score, stage, gates and reasons. Repeat for several.",
        ),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="Another model (URI or folder), e.g. the champion when explaining a challenger: which feature groups gained or lost weight."
        ),
    ] = None,
    mapping: MappingOpt = None,
    no_mlflow: Annotated[
        bool,
        typer.Option(
            "--no-mlflow", help="Do not attach the results to the registered version's MLflow run."
        ),
    ] = False,
) -> None:
    """Explain a model with SHAP: what it has learned, by cohort, and why one lead scores as it does.

    On a sample of a training set's split (explain.sample snapshots, the test split by default):
    global importance (mean |SHAP| per group of features, and in probability points), a
    beeswarm, dependence plots of the strongest numeric features, mean contributions by cohort
    (each category feature and the stage, side by side), a waterfall per --lead-id in the
    lead's own words, and with --compare the change from another version. Contributions are
    exact (equal to LightGBM's pred_contrib) and in log-odds: +0.7 doubles the odds. Writes PNG
    and CSV files and one self-contained report.html (no network needed) to --out, and for a
    registered version logs them to its MLflow run (explain/). Lead ids only: no names, emails
    or phones are read or written.
    """
    from models.cutoffs import percent
    from pipelines.explain import run_explain

    loaded = _with_mapping(_load(params), mapping)
    uri = model or loaded.get("explain", {}).get("model_uri") or "models:/lead-conversion@champion"
    summary = run_explain(
        loaded, uri, training, out, lead_ids=lead_id, compare=compare, split=split,
        mapping=mapping, log_to_mlflow=not no_mlflow,
    )  # fmt: skip
    top = ", ".join(g["title"] for g in summary["top_groups"][:5])
    out_console.print(
        f"explained {summary['model']['name']} version {summary['model']['version']} on "
        f"{summary['rows']:,} snapshots of the {summary['split']} split; strongest: {top}; "
        f"{len(summary['figures'])} figures and report.html -> {out}"
    )
    for lead in summary["leads"]:
        out_console.print(
            f"[bold]{escape(lead['lead_id'])}[/]  score {lead['score']}/99, probability "
            f"{percent(lead['probability'])}  [bold]{lead['stage']}[/]  ({escape(lead['stage_reason'])})"
        )
        out_console.print(f"   for: {escape(lead['reasons_for']) or '-'}")
        out_console.print(f"   against: {escape(lead['reasons_against']) or '-'}")


@app.command()
@_user_errors
def recalibrate(
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[
        Path, typer.Option(help="The `leadscore train` folder whose booster is kept as it is.")
    ] = Path("data/model"),
    training: TrainingOpt = Path("data/training"),
    out: Annotated[Path, typer.Option(help="Folder for the recalibrated model.")] = Path(
        "data/recalibrated"
    ),
    validated: Annotated[
        Path | None,
        typer.Option(help="The validated CRM, for the drift reference (as `leadscore train`)."),
    ] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="Do not track the recalibration in MLflow.")
    ] = False,
) -> None:
    """Refit only the calibrator: ranking often holds for months while probabilities drift.

    Keeps the booster and category grouping of --model, fits a new calibrator on all of the
    validation split of --training (newer outcomes the booster never learned from; refused
    otherwise), and derives the cutoffs, validation report, drift reference and score scale
    again. Then `leadscore evaluate` and `leadscore challenge --model <out>` compare it with the
    champion and promote it under the same policy as a retrained model.
    """
    from pipelines.modeling import run_train

    meta = run_train(
        _load(params), training, out, validated, track=not no_mlflow, params_path=params,
        booster_from=model,
    )  # fmt: skip
    v = meta["validation"]
    out_console.print(
        f"recalibrated the booster of {model} ({meta['training_data']['booster_range']}) on "
        f"{meta['recalibrated_from']['calibration_range']}: calibration "
        f"{meta['calibration']['method']}, validation ECE {v['ece']:.4f}, cutoffs SQL "
        f"{meta['cutoffs']['sql']:.3f} / MQL {meta['cutoffs']['mql']:.3f} -> {out}"
    )


@app.command()
@_user_errors
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    training: TrainingOpt = Path("data/training"),
    model: Annotated[Path, typer.Option(help="Folder written by `leadscore train`.")] = Path(
        "data/model"
    ),
    out: Annotated[
        Path, typer.Option(help="Folder for metrics.json, plot data and PNG plots.")
    ] = Path("data/evaluation"),
    oracle: Annotated[
        Path | None, typer.Option(help="Oracle file of a synthetic CRM: adds the ceiling.")
    ] = None,
    no_mlflow: Annotated[
        bool,
        typer.Option("--no-mlflow", help="Do not add the results to the model's MLflow run."),
    ] = False,
    validated: Annotated[
        Path | None,
        typer.Option(
            help="The validated CRM (`leadscore validate --out`): adds conversion by time to "
            "the first sales touch (the mapping's actor: company activities)."
        ),
    ] = None,
) -> None:
    """Evaluate on the out-of-time test split: model vs baseline (and the oracle on synthetic data).

    Writes ROC AUC, PR AUC, log loss, Brier score, expected calibration error and lift to
    metrics.json (`dvc metrics show`), gains and reliability tables, and PNG plots (`dvc plots
    show`): ROC, precision-recall, reliability, cumulative gains, score distribution. The test
    metrics and plots are added to the model's training run in MLflow, if it has one.
    """
    from pipelines.modeling import run_evaluate
    from pipelines.params import section

    loaded = _load(params)
    result = run_evaluate(loaded, training, model, out, oracle, validated)
    if not no_mlflow:
        from pipelines.tracking import log_evaluation

        log_evaluation(model, out, section(loaded, "register")["experiment"])
    _print_metrics(result)


@app.command()
@_user_errors
def register(
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[Path, typer.Option(help="Folder written by `leadscore train`.")] = Path(
        "data/model"
    ),
    evaluation: Annotated[
        Path, typer.Option(help="Folder written by `leadscore evaluate`.")
    ] = Path("data/evaluation"),
    training: TrainingOpt = Path("data/training"),
    summary: Annotated[
        Path | None, typer.Option(help="Write what was registered to this JSON file.")
    ] = None,
    explain: Annotated[
        Path | None,
        typer.Option(
            help="A `leadscore explain` folder of this model: its plots and report.html are logged to the run (explain/)."
        ),
    ] = None,
) -> None:
    """Track the run in MLflow and register the model version with its cutoffs.

    Tracking URI: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db. The version carries its MQL and
    SQL cutoffs, gate rules and training data range as tags; the first version becomes
    `champion`. A model below the thresholds in params.yaml `register` (judged on validation;
    the test split only reports) is not registered. A model folder registered before is not
    registered again (the version says which folder it holds: tag model_digest).

    Not a DVC stage: an experiment (`dvc exp run`) never registers anything; `make demo` runs
    this after `dvc repro`.
    Browse with: mlflow ui --backend-store-uri sqlite:///mlflow.db
    """
    from features.outputs import check_writable, refuse_overlap
    from pipelines.registry import run_register

    if summary is not None:  # checked before a version is registered, not after
        refuse_overlap(
            {"--model": model, "--evaluation": evaluation, "--training": training},
            {"--summary": summary},
        )
        check_writable(summary)
    result = run_register(
        _load(params), model, evaluation, training, params_path=params, explain=explain
    )
    if summary is not None:
        from features.outputs import write_json

        write_json(summary, result)
    if result.get("already_registered"):
        out_console.print(
            f"{model} is registered already: [bold]{result['model_name']}[/] version "
            f"{result['version']} (nothing new); tracking {result['tracking_uri']}"
        )
    elif result["registered"]:
        cut = result["cutoffs"]
        out_console.print(
            f"registered [bold]{result['model_name']}[/] version {result['version']}"
            f"{' (alias champion)' if result.get('champion') else ''}: SQL cutoff {cut['sql']:.3f}, "
            f"MQL cutoff {cut['mql']:.3f}; tracking {result['tracking_uri']}"
        )
        out_console.print("open the MLflow UI: mlflow ui --backend-store-uri sqlite:///mlflow.db")
    else:
        out_console.print(
            f"[yellow]not registered[/]: {'; '.join(result['refused'])} (run {result['run_id']})"
        )


@app.command()
@_user_errors
def challenge(
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[
        Path, typer.Option(help="The challenger: a folder written by `leadscore train`.")
    ] = Path("data/model"),
    evaluation: Annotated[
        Path, typer.Option(help="Folder written by `leadscore evaluate` for the challenger.")
    ] = Path("data/evaluation"),
    training: TrainingOpt = Path("data/training"),
    crm: Annotated[
        Path, typer.Option(help="The CRM export whose open leads the migration is shown on.")
    ] = Path("data/crm"),
    explain: Annotated[
        Path | None,
        typer.Option(help="A `leadscore explain` folder of the challenger, logged to its run."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Scoring instant of the migration (default: as `leadscore score`)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Compare and show the migration; register nothing, move no alias."
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write comparison.json and migration.csv to this folder.")
    ] = None,
) -> None:
    """A new model (the challenger) against the champion; promote it only if params.yaml
    `promote` says so.

    Both are scored on the challenger's test split (the newest out-of-time window; the
    champion must not have learned from it), with lead-clustered paired intervals on the
    differences. Rules: ROC AUC gain >= promote.min_gain with its interval above 0; ECE no worse
    by more than promote.max_ece_increase; each stage's conversion rate at least
    promote.min_stage_rate_ratio of the champion's. Before any alias moves, the migration: how
    many open leads would change stage, by segment. Then the challenger is registered (alias
    `challenger`) and, if every rule holds, becomes `champion` (the old one `previous`).
    The decision is recorded on the version's tags and in its MLflow run.
    """
    from pipelines.challenge import run_challenge

    result = run_challenge(
        _load(params), model, evaluation, training, crm, params_path=params, explain=explain,
        as_of=as_of, dry_run=dry_run, out=out,
    )  # fmt: skip
    _print_challenge(result)


def _print_challenge(result: dict) -> None:
    """The comparison, the rules, the migration and the decision of `leadscore challenge`."""
    from pipelines.challenge import difference

    comparison = result.get("comparison")
    if comparison is None:
        out_console.print(result["decision"])
        return
    window = comparison["window"]
    table = Table(
        title=f"champion (version {result['champion_version']}) against challenger on the test "
        f"window {window['range']} ({window['rows']:,} snapshots, {window['leads']:,} leads)"
    )
    for column in ("metric", "champion", "challenger", "difference [95% interval]"):
        table.add_column(column)
    scorers, diff = comparison["scorers"], comparison["differences"]
    for metric in diff:
        a, b, d = scorers["champion"][metric], scorers["challenger"][metric], diff[metric]
        table.add_row(metric, f"{a['value']:.4f}", f"{b['value']:.4f}", difference(d))
    out_console.print(table)
    for rule in comparison["rules"]:
        mark = "[green]ok[/]" if rule["passed"] else "[red]fails[/]"
        out_console.print(f"  {mark} {escape(rule['rule'])}: {escape(rule['value'])}")
    moves = Table(
        title=f"open leads as of {result['as_of']} whose stage would change ({result['open_leads']:,} open)"
    )
    for column in ("segment", "now", "with the challenger", "leads"):
        moves.add_column(column)
    for row in result["migration"][:15] + result["migration"][-1:]:
        moves.add_row(
            str(row["segment"]), str(row["stage_now"]), str(row["stage_new"]), f"{row['leads']:,}"
        )
    out_console.print(moves)
    out_console.print(f"decision: [bold]{result['decision']}[/]")


@app.command()
@_user_errors
def retrain(
    source: Annotated[
        str | None,
        typer.Argument(
            help="The CRM export: a folder of files or an SQLAlchemy URL (default: crm.source)."
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Read outcomes as on this day (YYYY-MM-DD): only snapshots whose label window had "
            "closed by then train (default: label.as_of, else the export's date)."
        ),
    ] = None,
    work: Annotated[
        Path, typer.Option(help="Folder for every step's output (validated/ ... challenge/).")
    ] = Path("data/retrain"),
    mapping: MappingOpt = None,
    oracle: Annotated[
        Path | None, typer.Option(help="Oracle file of a synthetic CRM: adds the ceiling.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Compare and show the migration; register nothing, move no alias."
        ),
    ] = False,
) -> None:
    """Retrain on the latest closed outcomes and put the new model against the champion.

    Validates the export, labels it as of the cutoff, builds the features, splits out of time,
    trains (one MLflow run) and evaluates a challenger, then runs `leadscore challenge`: both
    models on the newest out-of-time window neither learned from, lead-clustered intervals on
    the differences, the migration of the open leads, and promotion only if params.yaml
    `promote` says so. Writes only under --work; a `dvc exp run` never reaches the registry.
    """
    from pipelines.params import section
    from pipelines.retrain import run_retrain

    loaded = _load(params)
    source = source or section(loaded, "crm")["source"]
    with ProgressReporter(console) as progress:
        result = run_retrain(
            loaded, source, work, as_of=as_of, dry_run=dry_run, params_path=params,
            oracle=oracle, mapping=mapping, progress=progress,
        )  # fmt: skip
    _print_manifest(result["manifest"])
    _print_metrics(result["metrics"])
    _print_challenge(result["challenge"])


@app.command()
@_user_errors
def rollback(params: ParamsOpt = Path("params.yaml")) -> None:
    """Move the alias `champion` back to the version called `previous` (and `previous` to the
    one it replaces, so a rollback can be undone the same way)."""
    import mlflow

    from pipelines.challenge import rollback as swap
    from pipelines.params import section
    from pipelines.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    name = section(_load(params), "register")["model_name"]
    now, before = swap(mlflow.MlflowClient(), name)
    out_console.print(f"{name}: champion is version {now} again (was {before}, now `previous`)")


@app.command()
@_user_errors
def backtest(
    params: ParamsOpt = Path("params.yaml"),
    features_path: FeaturesOpt = Path("data/features/features.parquet"),
    snapshots: LabelledOpt = Path("data/labels/labelled_snapshots.parquet"),
    validated: ValidatedOpt = Path("data/validated"),
    out: Annotated[
        Path,
        typer.Option(help="Folder for months.csv, summary.json, backtest.png and the models."),
    ] = Path("data/backtest"),
    oracle: Annotated[
        Path | None,
        typer.Option(help="Oracle file of a synthetic CRM: the ceiling, and the recovery shares."),
    ] = None,
    shift: Annotated[
        str | None,
        typer.Option(
            help="Date of a known market change to measure (YYYY-MM-DD; the synthetic CRM's "
            "own is read from its validated crm_meta.json)."
        ),
    ] = None,
) -> None:
    """Replay the CRM's history month by month: at each month start a model learns from the
    outcomes known that day and scores the month that follows; compare with what happened.

    Side by side: **static** (the first month's model, never retrained), **retrained** (every
    `backtest.every_months`, as `leadscore train` would), **recalibrated** (the static booster,
    its calibrator refitted on the newest outcomes), and with `--oracle` the true probability.
    With a market-change date, months are pooled into phases (before it, after it but before
    its outcomes are known, then each retraining cycle) with lead-clustered intervals, and the
    share of the AUC lost to the change that retraining won back. Touches no registry and no
    CRM; see docs/backtest.md.
    """
    from pipelines.backtest import run_backtest

    summary = run_backtest(
        _load(params), features_path, snapshots, validated, out, oracle_path=oracle, shift=shift
    )
    _print_backtest(summary, out)


def _print_backtest(summary: dict, out: Path) -> None:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"backtest: {len(summary['cutoffs'])} months, retrained every "
        f"{summary['every_months']} month(s)"
        + (f"; market shift {summary['shift']}" if summary["shift"] else ""),
    )
    for column in ("phase\nmonths", "won\nleads", "ROC AUC\nstatic", "ROC AUC\nretrained",
                   "ROC AUC\noracle", "ECE\nstatic", "ECE\nrecal."):  # fmt: skip
        table.add_column(column, no_wrap=True)

    def value(scorers: dict, name: str, metric: str, digits: int) -> str:
        entry = scorers.get(name, {}).get(metric)
        return "" if not entry else f"{entry['value']:.{digits}f}"

    def interval(entry: dict, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
        low, high = entry.get("low"), entry.get("high")
        shown = f"{entry['value'] * scale:.{digits}f}{unit}"
        if low is None or high is None:
            return shown
        return f"{shown} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"

    for phase in summary["phases"]:
        s = phase.get("scorers", {})
        table.add_row(
            f"{phase['phase']}\n{phase['months']}", f"{phase['won_leads']:,}",
            value(s, "static", "roc_auc", 3), value(s, "retrained", "roc_auc", 3),
            value(s, "oracle", "roc_auc", 3), value(s, "static", "ece", 4),
            value(s, "recalibrated", "ece", 4),
        )  # fmt: skip
    out_console.print(table)
    for phase in summary["phases"]:
        parts = []
        for variant, metric, digits in (("retrained", "roc_auc", 3), ("recalibrated", "ece", 4)):
            d = phase.get("differences", {}).get(f"{variant}_vs_static", {}).get(metric)
            if d:
                name = "ROC AUC" if metric == "roc_auc" else "ECE"
                parts.append(f"{variant} - static {name} {interval(d, digits)}")
        r = phase.get("recovery") or {}
        lost = r.get("auc_lost_to_shift") or {}
        if lost.get("value") is not None:
            text = f"ROC AUC lost to the shift {interval(lost)}"
            if (lost.get("low") or 0) <= 0:
                text += " (not distinguishable from none)"
            elif r["auc_share_recovered"]["value"] is not None:
                text += (
                    f", won back by retraining {interval(r['auc_share_recovered'], 0, 100, '%')}"
                )
            parts.append(text)
        added = r.get("ece_added_by_shift") or {}
        if added.get("value") is not None and (added.get("low") or 0) > 0:
            parts.append(
                f"ECE added {interval(added, 4)}, removed by recalibration "
                f"{interval(r['ece_share_recovered'], 0, 100, '%')}"
            )
        if parts:
            out_console.print(f"{phase['phase']}: " + "; ".join(parts))
    out_console.print(f"per month: {out / 'months.csv'}; plot: {out / 'backtest.png'}")


@app.command("metrics")
@_user_errors
def show_metrics(
    path: Annotated[
        Path, typer.Argument(help="A metrics.json written by `leadscore evaluate`.")
    ] = Path("data/evaluation/metrics.json"),
    registered: Annotated[
        Path | None, typer.Option(help="The summary written by `leadscore register --summary`.")
    ] = None,
) -> None:
    """Print the test metrics of the model, the baseline and (on synthetic data) the oracle."""
    _print_metrics(_read_json(path, "leadscore evaluate"))
    if registered is not None and registered.exists():
        r = json.loads(registered.read_text())
        if r["registered"]:
            out_console.print(
                f"registered: {r['model_name']} version {r['version']}"
                f"{' (alias champion)' if r.get('champion') else ''} in {r['tracking_uri']}; "
                f"SQL cutoff {r['cutoffs']['sql']:.3f}, MQL cutoff {r['cutoffs']['mql']:.3f}"
            )
            out_console.print("MLflow UI: mlflow ui --backend-store-uri sqlite:///mlflow.db")
        else:
            out_console.print(f"not registered: {'; '.join(r['refused'])}")


def _print_metrics(metrics: dict) -> None:
    table = Table(title="out-of-time test split")
    cols = ["scorer", "ROC AUC", "PR AUC", "log loss", "Brier", "ECE", "top-decile lift"]
    for c in cols:
        table.add_column(c, justify="left" if c == "scorer" else "right")
    shown = {"model_uncalibrated": "uncalibrated"}  # short enough for an 80-column terminal
    for name, r in metrics["test"].items():
        table.add_row(
            shown.get(name, name),
            *(f"{r[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece")),
            f"{r['lift_top_decile']:.2f}",
        )
    out_console.print(table)
    intervals = metrics.get("intervals") or {}

    def between(block: dict | None) -> str:
        return f" [{block['low']:.3f}, {block['high']:.3f}]" if block else ""

    if intervals:
        rows = metrics.get("test_rows", {})
        out_console.print(
            f"95% intervals: a lead-clustered bootstrap ({intervals['valid']} replicates; "
            f"{rows.get('rows', '?'):,} rows of {rows.get('leads', '?'):,} leads, "
            f"{rows.get('won_leads', '?'):,} won)"
        )
        scorers = intervals.get("scorers", {})
        for name in ("model", "baseline", "oracle"):
            if name in scorers:
                auc = scorers[name]["roc_auc"]
                out_console.print(f"  {name} ROC AUC {auc['value']:.3f}{between(auc)}")
        gap = intervals.get("differences", {}).get("model_vs_baseline", {}).get("roc_auc")
        if gap:
            out_console.print(f"  model - baseline ROC AUC {gap['value']:+.3f}{between(gap)}")
    if "model_roc_auc_vs_oracle" in metrics:
        ratio = intervals.get("ratios", {}).get("model_over_oracle", {}).get("roc_auc")
        out_console.print(
            f"model ROC AUC / oracle ROC AUC = {metrics['model_roc_auc_vs_oracle']:.3f}"
            f"{between(ratio)}"
        )
    out_console.print(
        f"calibration: {metrics['calibration_method']}; trees: {metrics['best_iteration']}"
    )
    if metrics.get("calibration_note"):
        out_console.print(f"[yellow]{metrics['calibration_note']}[/yellow]")
    if "tiers" in metrics:
        cut = metrics["cutoffs"]
        tiers = Table(
            title=f"stages on the test split (SQL cutoff {cut['sql']:.3f}, MQL cutoff {cut['mql']:.3f})"
        )
        for c in ("stage", "leads", "conversion rate", "share of conversions"):
            tiers.add_column(c, justify="left" if c == "stage" else "right")
        for stage, t in metrics["tiers"].items():
            rate = "-" if t["conversion_rate"] is None else f"{100 * t['conversion_rate']:.1f}%"
            tiers.add_row(
                stage, f"{int(t['leads']):,}", rate, f"{100 * t['share_of_conversions']:.1f}%"
            )
        out_console.print(tiers)
    if "value" in metrics:
        _print_value(metrics["value"])
    touch = (metrics.get("follow_up") or {}).get("by_time_to_first_touch")
    if touch:
        table = Table(
            title="conversion by time to the first sales touch (test leads, 95% intervals)"
        )
        for c in ("first touch", "leads", "conversion rate"):
            table.add_column(c, justify="left" if c == "first touch" else "right")
        for r in touch:
            rate = (
                "-"
                if r["conversion_rate"] is None
                else f"{100 * r['conversion_rate']:.1f}% [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"
            )
            table.add_row(r["first_touch"], f"{r['leads']:,}", rate)
        out_console.print(table)


def _print_value(value: dict) -> None:
    """The value gains table: won revenue the top 10% and 20% capture per ranking, the value
    model against its baseline, expected value against revenue, and the SQL list by value."""
    intervals = value["intervals"]

    def share(block: dict) -> str:
        low, high = block.get("low"), block.get("high")
        inside = f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else ""
        return f"{100 * block['value']:.1f}%{inside}"

    table = Table(title="value gains: share of won revenue captured (test split, 95% intervals)")
    for c in ("ranking", "top 10%", "top 20%"):
        table.add_column(c, justify="left" if c == "ranking" else "right")
    names = {
        "value": "expected value (model)",
        "probability": "probability alone",
        "baseline": "expected value (baseline)",
    }
    captured = intervals["captured"]
    for key, label in names.items():
        table.add_row(label, *(share(captured[top][key]) for top in ("top_0.1", "top_0.2")))
    out_console.print(table)
    gap = intervals["captured_differences"]["top_0.1"]["value_vs_probability"]
    out_console.print(
        f"  top 10%: by value - by probability {100 * gap['value']:+.1f} points "
        f"[{100 * gap['low']:+.1f}, {100 * gap['high']:+.1f}]"
        if gap.get("low") is not None
        else f"  top 10%: by value - by probability {100 * gap['value']:+.1f} points"
    )
    mae = intervals.get("log_mae") or {}
    diff = (intervals.get("log_mae_differences") or {}).get("value_model_vs_baseline")
    if mae and diff:
        out_console.print(
            f"value model ({value['model_kind']}): mean absolute error of log amount "
            f"{mae['value_model']['value']:.3f} vs segment-median baseline "
            f"{mae['baseline']['value']:.3f}, difference {diff['value']:+.3f} "
            f"[{diff['low']:+.3f}, {diff['high']:+.3f}] on {value['won_leads']:,} won leads"
        )
    out_console.print(
        f"expected value summed over test snapshots ${value['expected_value_sum']:,.0f}; "
        f"revenue won ${value['revenue_won_sum']:,.0f}"
    )
    change = value.get("sql_list_by_value_vs_probability")
    if change:
        p, v = change["by_probability"], change["by_value"]
        out_console.print(
            f"SQL list (ranked by {change['sql_ranked_by']}, {p['rows']:,} snapshots): by "
            f"value {change['entering']['rows']:,} enter and {change['leaving']['rows']:,} leave; "
            f"conversions {p['conversions']} by probability vs {v['conversions']} by value, "
            f"revenue ${p['revenue']:,.0f} vs ${v['revenue']:,.0f}"
        )


@app.command()
@_user_errors
def catalog(
    params: ParamsOpt = Path("params.yaml"),
    mapping: MappingOpt = None,
    validated: Annotated[
        Path | None,
        typer.Option(
            help="A validated CRM folder (`leadscore validate --out`): without a mapping, the "
            "fields its field history names are listed as read as of each snapshot, as the "
            "features step reads them."
        ),
    ] = None,
) -> None:
    """List every feature the configured builders produce under the CRM's mapping: name,
    readable label, sources and when each is known. Custom fields and the CRM's own activity
    types are listed; a feature whose field is not known at the snapshot is marked "left out"
    with the reason, and a source whose knowledge time rests on a declaration of the mapping
    (not on field history) is marked "declared"."""
    from features.build import feature_plan
    from pipelines.params import behavioral_params, section
    from pipelines.steps import crm_contract

    p = _load(params)
    contract = crm_contract(p, mapping)
    history = None if validated is None else Path(validated) / "field_history.parquet"
    if history is not None and history.is_file():
        import pandas as pd

        from features.mapping.contract import with_export_history

        contract = with_export_history(
            contract, pd.read_parquet(history, columns=["entity", "field"])
        )
    behavioral = contract.behavioral(behavioral_params(p))
    plan = feature_plan(section(p, "features")["builders"], behavioral, contract)
    table = Table(title="feature catalog")
    for c in ("name", "builder", "label", "sources (knowledge)", "used"):
        table.add_column(c)
    for s in plan.specs:
        known = ", ".join(
            f"{src} ({k.value}{', declared' if tuple(src.split('.', 1)) in contract.declared else ''})"
            for src, k in zip(s.sources, s.knowledge_in(contract), strict=True)
        )
        used = f"left out: {plan.left_out[s.name]}" if s.name in plan.left_out else "yes"
        table.add_row(s.name, s.builder, escape(s.label), known, used)
    out_console.print(table)


@app.command()
@_user_errors
def inspect(
    export: Annotated[
        Path,
        typer.Argument(
            help="The export: a folder of CSV/Parquet files (one per table), or one file with "
            "one row per lead (a flat export, .csv, .csv.gz or .parquet)."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for mapping.draft.yaml, profile.json and profile.md.")
    ] = Path("data/inspect"),
    separator: Annotated[
        str, typer.Option(help="CSV separator: auto (detected per file), ',', ';', tab or '|'.")
    ] = "auto",
    encoding: Annotated[str, typer.Option(help="Text encoding of CSV files.")] = "utf-8",
    layout: Annotated[
        str, typer.Option(help="auto (one table: flat), flat or relational.")
    ] = "auto",
    outcome: Annotated[
        str | None,
        typer.Option(help="The outcome column (y, deals.dealstage; default: the best candidate)."),
    ] = None,
    won: Annotated[
        list[str] | None,
        typer.Option(help="A value of the outcome column that means won (repeat for several)."),
    ] = None,
    sample_size: Annotated[
        int, typer.Option(help="Values per column that decide types and date formats.")
    ] = 10_000,
    auc_threshold: Annotated[
        float,
        typer.Option(
            help="A column whose values alone separate converted leads with at least this AUC "
            "is a leak hint (declared after_outcome in the draft)."
        ),
    ] = 0.8,
) -> None:
    """Profile a CRM export and write a draft mapping file to edit: the first hour with a new CRM.

    For each table and column: type, missing share, distinct values, date formats (a day/month
    order that the data cannot settle is reported, not guessed), candidate id, created-time,
    join-key and outcome columns, and **leak hints**: columns filled mostly for converted leads,
    or whose values alone separate them (declared after_outcome in the draft, with why). Every
    other field is drafted as at_extraction (not a feature) until you say when it is known; see
    docs/mapping.md and docs/inspect.md. Nothing the user wrote is overwritten.
    """
    from pipelines.inspect_export import run_inspect

    if layout not in ("auto", "flat", "relational"):
        _fail(f"--layout must be auto, flat or relational, not {layout!r}", code=2)
    summary = run_inspect(
        export,
        out,
        separator=None if separator == "auto" else separator,
        encoding=encoding,
        layout=layout,
        outcome=outcome,
        won=won,
        sample_size=sample_size,
        auc_threshold=auc_threshold,
    )
    hints = summary.get("leak_hints") or []
    log.info(
        "inspected %s: %d table(s); %d leak hint(s); draft mapping written to %s",
        export,
        len(summary.get("tables") or []),
        len(hints),
        out / "mapping.draft.yaml",
    )
    out_console.print_json(json.dumps(summary, default=str))


@app.command()
@_user_errors
def score(
    source: Annotated[
        str | None,
        typer.Argument(
            help="The CRM: folder of Parquet/CSV tables or an SQLAlchemy URL (default: crm.source in params.yaml)."
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    model: Annotated[
        str | None,
        typer.Option(
            help="Model URI: models:/<name>@<alias>, models:/<name>/<version> or a `leadscore train` folder (default: score.model_uri)."
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            help="Where scores go: SQLAlchemy URL, folder, hubspot://..., salesforce://... (default: score.to)."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Score as of this instant (ISO 8601, UTC; default: score.as_of, else the CRM's "
            "extraction time, else now); -3d: three days before that (an earlier night replayed)."
        ),
    ] = None,
    lead_ids: Annotated[
        list[str] | None, typer.Option("--lead-id", help="Score only this lead (repeatable).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score only the first N open leads (by lead id).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Score and show what would be written; write nothing.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(help="Finish an unfinished run of the same model version into the same sink."),
    ] = True,
    ledger: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the run ledger (default: see score.ledger)."),
    ] = None,
    summary: Annotated[
        Path | None, typer.Option(help="Write the run summary to this JSON file.")
    ] = None,
    show: Annotated[int, typer.Option(min=0, help="Leads to show in the preview table.")] = 10,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the scores database or folder if it does not exist (the first run). Without it a missing sink is an error: a mistyped path must not become a new, empty CRM.",
        ),
    ] = False,
    mapping: MappingOpt = None,
    engine: EngineOpt = None,
    scheduler: SchedulerOpt = None,
) -> None:
    """Score every open lead with a registered model and write score, stage and reasons back.

    Open leads: created before the scoring instant, no opportunity closed (won or lost), younger
    than the model's max_age_days (score.older_leads). For each: probability (calibrated chance
    of closed-won within the horizon), score (1-99: the lead's percentile among the model
    version's reference leads, so the best leads score in the 90s), BANT gates, stage (SQL /
    MQL / nurture / disqualified / in_sales) with the cutoffs of that model version, and the
    top reasons for and against in words. Writes are upserts of the current score plus an
    append-only history, in all-or-nothing batches; a failed batch is recorded with its lead
    ids, and running the command again finishes an interrupted run without duplicates.
    The drift of features and scores (PSI) against the model's training data is checked first.

    The job stops before writing anything when the export is broken: a required table empty,
    a required column empty, or more than validate.max_quarantined_fraction of a table's rows
    quarantined. One job at a time writes into a sink: a second one refuses to start while the
    first holds the sink's lease (score.lease).

    A partitioned CRM (`leadscore partition`) is scored partition by partition, on this
    machine with the memory of one partition (--engine pandas) or on a Dask cluster (--engine
    dask, --scheduler); the checks and the writing are the same (docs/scale-out.md).

    Exit codes: 0 succeeded (or dry run); 1 stopped with an error, said in one line (nothing
    written, or nothing further: the run record says where it stopped, and the next run
    resumes); 2 partial (some batches failed: see `leadscore scoring-runs --failures`; run
    again to retry them) or a usage error (a wrong option or value).
    """
    from features.outputs import check_writable, refuse_overlap, write_json
    from pipelines.score_job import run_score

    p = _with_mapping(_load(params), mapping)
    source = source or p.get("crm", {}).get("source") or "data/crm"
    uri = model or p.get("score", {}).get("model_uri", "")
    destination = to or p.get("score", {}).get("to")
    inputs = {
        "source": source,
        "--model": None if str(uri).startswith("models:/") else uri,
        "--to": destination,
    }
    if summary is not None:  # checked now: a refusal after the scores were written would be late
        refuse_overlap(inputs, {"--summary": summary})
        check_writable(summary)
    with ProgressReporter(console) as progress:
        result = run_score(
            p, source, model_uri=model, to=to, as_of=as_of, lead_ids=lead_ids, limit=limit,
            dry_run=dry_run, resume=resume, ledger_url=ledger, progress=progress, create=create,
            engine=engine, scheduler=scheduler,
        )  # fmt: skip
    preview = result.pop("preview", None)
    if summary is not None:
        write_json(summary, result)
    _print_score_summary(result)
    if preview is not None:
        table = Table(
            title=f"dry run: {len(preview):,} leads would be written to {display_url(result['sink'])} (first {min(show, len(preview))})"
        )
        for c in ("lead_id", "score", "stage", "reasons_for", "reasons_against"):
            table.add_column(c, justify="right" if c == "score" else "left", overflow="fold")
        for r in preview.head(show).itertuples(index=False):
            cells = (r.lead_id, r.score, r.stage, r.reasons_for, r.reasons_against)
            table.add_row(*(_cell(c) for c in cells))
        out_console.print(table)
    if result.get("status") == "partial":
        raise typer.Exit(code=2)


def _cell(value: object) -> str:
    """A value for a rich table cell: text as written (never read as markup), missing as '-'."""
    import pandas as pd

    return (
        "-"
        if value is None or (not isinstance(value, str) and pd.isna(value))
        else escape(str(value))
    )


def _print_score_summary(r: dict) -> None:
    counts = r["counts"]
    out_console.print(
        f"model [bold]{r['model_name']}[/] version {r['model_version']}"
        f"{' ([bold yellow]rules-only[/]: points, below the data-sufficiency bar)' if r.get('model_kind') == 'rules' else ''}"
        f" as of {r['as_of']}: "
        f"{counts['leads_in_crm']:,} leads, {counts['open']:,} open, {counts['scored']:,} scored "
        f"(left out: won {counts['already_won']:,}, lost {counts['already_lost']:,}, "
        f"too old {counts['older_than_max_age']:,}; already written {counts.get('already_written', 0):,})"
    )
    out_console.print(
        f"cutoffs of this model version: SQL {r['cutoffs']['sql']:.3f}, MQL {r['cutoffs']['mql']:.3f}"
    )
    stages = Table(title="stages")
    for c in ("stage", "leads"):
        stages.add_column(c, justify="left" if c == "stage" else "right")
    for stage, n in r["stages"].items():
        stages.add_row(stage, f"{n:,}")
    out_console.print(stages)
    drift = r["drift"]
    if drift["verdict"] != "not_checked":
        psi = drift.get("probability_psi")
        out_console.print(
            f"drift: {drift['verdict']}"
            + (f"; probability PSI {psi:.3f}" if psi is not None else "")
            + "; largest: "
            + ", ".join(f"{t['feature']} {t['psi']}" for t in drift["top"][:3])
        )
    if not r["dry_run"]:
        colour = "green" if r["status"] == "succeeded" else "yellow"
        out_console.print(
            f"run {r['run_id']} [{colour}]{r['status']}[/]: {r['leads_written']:,} written, "
            f"{r['leads_failed']:,} failed, to {r['sink']} in {r['seconds']:.1f} s"
        )


def _current_scores(where: str, params: Path):
    """The current scores a run wrote to ``where`` (an SQLAlchemy URL or a folder of score
    files), or a one-line error."""
    import pandas as pd
    import sqlalchemy as sa

    from features.outputs import local_path

    table_name = _load(params).get("score", {}).get("tables", {}).get("current", "lead_scores")
    file = local_path(where)
    if file is not None and not file.exists():  # reading must not create an empty database
        _fail(
            f"{file} does not exist: run `leadscore score --to {display_url(where)}` first, or check the path"
        )
    try:
        if "://" in where:
            engine = sa.create_engine(where)
            with engine.connect() as conn:
                scores = pd.read_sql_table(table_name, conn)
            engine.dispose()
        else:
            files = sorted(Path(where).glob("lead_scores.*"))
            if not files:
                _fail(
                    f"no lead_scores.parquet or lead_scores.csv in {where}: run `leadscore score --to {where}` first"
                )
            scores = (
                pd.read_parquet(files[0])
                if files[0].suffix == ".parquet"
                else pd.read_csv(files[0], dtype={"lead_id": str})
            )
    except (OSError, ValueError, sa.exc.SQLAlchemyError) as err:
        _fail(
            f"cannot read scores from {display_url(where)}: {str(err).splitlines()[0]} (run `leadscore score` first)"
        )
    return scores


@app.command("scores")
@_user_errors
def show_scores(
    where: ScoresWhereArg = "sqlite:///data/crm.db",
    params: ParamsOpt = Path("params.yaml"),
    top: Annotated[
        int, typer.Option(min=1, help="How many leads to show, highest score first.")
    ] = 5,
    stage: Annotated[
        Stage | None, typer.Option(help="Only this stage.", case_sensitive=False)
    ] = None,
) -> None:
    """Show the current scores a run wrote back: the highest first, with stage and reasons in words."""
    scores = _current_scores(where, params)
    if stage:
        scores = scores[scores["stage"] == str(stage)]
    from models.cutoffs import percent

    shown = scores.sort_values(["probability", "lead_id"], ascending=[False, True]).head(top)
    out_console.print(
        f"{len(scores):,} leads scored in {display_url(where)}; the {len(shown)} highest:"
    )
    for r in shown.itertuples(index=False):
        out_console.print(
            f"[bold]{escape(str(r.lead_id))}[/]  score {r.score}/99, probability "
            f"{percent(r.probability)}  [bold]{r.stage}[/]  ({escape(str(r.stage_reason))})"
        )
        out_console.print(
            f"   for: {escape(r.reasons_for) if isinstance(r.reasons_for, str) else '-'}"
        )
        out_console.print(
            f"   against: {escape(r.reasons_against) if isinstance(r.reasons_against, str) else '-'}"
        )


@app.command("scoring-runs")
@_user_errors
def scoring_runs(
    ledger: Annotated[
        str, typer.Argument(help="SQLAlchemy URL of the ledger (the CRM database for SQL sinks).")
    ] = "sqlite:///data/crm.db",
    params: ParamsOpt = Path("params.yaml"),
    failures: Annotated[
        bool, typer.Option(help="List failed batches with their lead ids too.")
    ] = False,
    last: Annotated[int, typer.Option(min=1, help="How many runs to show.")] = 10,
) -> None:
    """List scoring runs (newest first): status, model version, leads read, scored, written, failed."""
    import pandas as pd

    from pipelines.writeback import Ledger

    book = Ledger(ledger, _load(params).get("score", {}).get("tables"))
    try:
        if not book.exists():  # creates nothing: a mistyped path must not become a database
            _fail(
                f"no scoring runs in {display_url(ledger)}: check the path, or run `leadscore score` first"
            )
        runs = book.runs_frame().head(last)
        table = Table(title=f"scoring runs in {display_url(ledger)}", box=None, pad_edge=False)
        # The run id starts with the as-of instant: no separate column, the table fits 80 columns.
        cols = {"run_id": "run (as of - id)", "status": "status", "model_version": "version",
                "leads_read": "read", "leads_scored": "scored", "leads_written": "written", "leads_failed": "failed"}  # fmt: skip
        for c, title in cols.items():
            table.add_column(
                title, justify="right" if c.startswith("leads") else "left", no_wrap=True
            )
        for r in runs.itertuples(index=False):
            table.add_row(
                r.run_id,
                r.status,
                str(r.model_version),
                *(
                    f"{int(v):,}" if pd.notna(v) else "-"
                    for v in (r.leads_read, r.leads_scored, r.leads_written, r.leads_failed)
                ),
            )
        out_console.print(table)
        if failures:
            for f in book.failures_frame().itertuples(index=False):
                out_console.print(
                    escape(
                        f"run {f.run_id} batch {f.batch_no}: {f.n_leads} leads failed ({f.error}); lead ids {f.lead_ids}"
                    )
                )
    except typer.Exit:
        raise
    except (OSError, ValueError, RuntimeError, ImportError) as err:  # a user error, said plainly
        _fail(f"cannot read the ledger at {display_url(ledger)}: {err}")
    finally:
        book.close()


@app.command("follow-ups")
@_user_errors
def follow_ups(
    where: ScoresWhereArg = "sqlite:///data/crm.db",
    params: ParamsOpt = Path("params.yaml"),
    limit: Annotated[int, typer.Option(min=1, help="How many leads to show.")] = 20,
    csv: Annotated[
        Path | None, typer.Option(help="Also write every overdue lead to this CSV file.")
    ] = None,
) -> None:
    """The morning list: SQL and MQL leads past their follow-up SLA (params.yaml `follow_up`)
    with no sales touch since they entered their stage, the longest waiting first, with their
    stage, score, expected value and top reasons. Written by `leadscore score`, which reads the
    company's own activities (a mapping's `actor: company` types) from the CRM."""
    import pandas as pd

    from features.outputs import check_writable, write_csv
    from models.cutoffs import money, percent

    scores = _current_scores(where, params)
    if "follow_up_due" not in scores:
        _fail(
            f"the scores in {display_url(where)} were written before follow-up existed: run "
            "`leadscore score` again"
        )
    # SQLite reads booleans back as 0/1, a CSV file as text: one reading for all.
    due = scores["follow_up_due"].astype(str).str.lower().isin(["true", "1", "1.0"])
    overdue = scores[due.to_numpy()].copy()
    if scores["follow_up_due"].isna().all() and len(scores):
        out_console.print(
            "follow-up is not known: the CRM declares no company activity (actor: company in "
            "the mapping's events.types), so a touched lead cannot be told from an untouched one"
        )
        return
    overdue["stage_since"] = pd.to_datetime(overdue["stage_since"])
    # The longest waiting first; among equals, SQL before MQL, then the most expected value.
    overdue["_rank"] = (overdue["stage"] != "SQL").astype(int)
    value = overdue["expected_value"] if "expected_value" in overdue else 0.0
    overdue["_value"] = -pd.to_numeric(value, errors="coerce").fillna(0.0)
    overdue = overdue.sort_values(["stage_since", "_rank", "_value", "lead_id"], kind="stable")
    overdue = overdue.drop(columns=["_rank", "_value"])
    scored_at = pd.to_datetime(scores["scored_at"]).max()
    if csv is not None:
        check_writable(csv)
        write_csv(csv, overdue)
    if overdue.empty:
        out_console.print(
            f"no qualified lead waits for a sales touch past its SLA (scores of {scored_at})"
        )
        return
    counts = ", ".join(f"{k} {v:,}" for k, v in overdue["stage"].value_counts().items())
    out_console.print(
        f"[bold]{len(overdue):,} qualified leads past their follow-up SLA with no sales touch "
        f"since they entered their stage[/] ({counts}; scores of {scored_at:%Y-%m-%d %H:%M}), "
        "the longest waiting first:"
    )
    for r in overdue.head(limit).itertuples(index=False):
        waited = scored_at - r.stage_since
        touched = (
            f"last touched {pd.Timestamp(r.last_sales_touch_at):%Y-%m-%d}"
            if pd.notna(r.last_sales_touch_at)
            else "never touched"
        )
        value = getattr(r, "expected_value", None)
        worth = f", expected value {money(value)}" if value is not None and pd.notna(value) else ""
        out_console.print(
            f"[bold]{escape(str(r.lead_id))}[/]  [bold]{r.stage}[/] for {waited.days}d "
            f"{waited.seconds // 3600}h, {touched}; score {r.score} ({percent(r.probability)})"
            f"{worth}"
        )
        why = r.reasons_for if isinstance(r.reasons_for, str) and r.reasons_for else "-"
        out_console.print(f"   why: {escape(why)}")
    if len(overdue) > limit:
        out_console.print(f"... and {len(overdue) - limit:,} more (--limit, or --csv FILE for all)")


if __name__ == "__main__":
    app()
