"""Where per-partition work runs: this process (``engine: pandas``) or a Dask cluster
(``engine: dask``), behind one small interface.

Both run the same functions on the same partitions (no second implementation of any rule or
feature): the pandas engine one partition after another, so that a CRM larger than memory is
processed with the peak memory of one partition; the Dask engine on the workers of a cluster,
an existing one (``--scheduler tcp://host:8786``) or a :class:`distributed.LocalCluster` of
worker processes on this machine (loopback only). A worker that dies mid-task is replaced and
its partitions are computed again by the scheduler: the results the caller sees are complete.

Settings: ``engine`` in params.yaml::

    engine:
      name: pandas            # or dask
      scheduler: null         # an existing scheduler's address; null: a LocalCluster
      workers: 2              # LocalCluster: worker processes
      threads_per_worker: 1
      memory_limit: auto      # LocalCluster: per worker ("4GiB", or auto: the machine's / workers)
      staging_dir: null       # a run's staged scores; null: the system's temporary folder
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ENGINES = ("pandas", "dask")


@dataclass(frozen=True)
class EngineSettings:
    """The ``engine`` section of params.yaml, overridden by ``--engine`` / ``--scheduler``."""

    name: str = "pandas"
    scheduler: str | None = None
    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | None = "auto"
    staging_dir: str | None = None
    #: Rows of a partitioned train split read into memory (whole leads) by what needs rows but
    #: not all of them: the leakage scan, the search, the baseline, the value model.
    train_sample_rows: int = 2_000_000

    @classmethod
    def from_params(
        cls, params: dict[str, Any], name: str | None = None, scheduler: str | None = None
    ) -> EngineSettings:
        """Settings from params.yaml ``engine`` (a section, or just a name) and the options."""
        raw = params.get("engine") or {}
        if isinstance(raw, str):
            raw = {"name": raw}
        chosen = name or raw.get("name") or "pandas"
        if scheduler and not name:  # a scheduler address means the Dask engine
            chosen = "dask"
        if chosen not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {chosen!r}")
        if scheduler and chosen != "dask":
            raise ValueError("--scheduler needs the dask engine (--engine dask)")
        workers = int(raw.get("workers", 2))
        threads = int(raw.get("threads_per_worker", 1))
        if workers < 1 or threads < 1:
            raise ValueError(
                f"engine.workers and engine.threads_per_worker must be >= 1, got {workers}, {threads}"
            )
        sample = int(raw.get("train_sample_rows", cls.train_sample_rows))
        if sample < 1:
            raise ValueError(f"engine.train_sample_rows must be >= 1, got {sample}")
        return cls(
            name=chosen,
            scheduler=scheduler or raw.get("scheduler"),
            workers=workers,
            threads_per_worker=threads,
            memory_limit=raw.get("memory_limit", "auto"),
            staging_dir=raw.get("staging_dir"),
            train_sample_rows=sample,
        )


class PandasEngine:
    """One partition after another, in this process."""

    name = "pandas"
    workers = 1

    def share(self, value: Any) -> Any:
        """A value every task reads (a model, the shared tables): here, the value itself."""
        return value

    def map_unordered(
        self, fn: Callable[..., Any], items: Sequence[Any], *args: Any
    ) -> Iterator[tuple[Any, Any]]:
        """``(item, fn(item, *args))`` for each item, as each finishes."""
        for item in items:
            yield item, fn(item, *args)

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        """The engine in a log line."""
        return "pandas engine (this process, one partition at a time)"


class DaskEngine:
    """The tasks on a Dask cluster: an existing scheduler, or a LocalCluster of processes."""

    name = "dask"

    def __init__(self, settings: EngineSettings) -> None:
        from distributed import Client, LocalCluster

        self.cluster = None
        if settings.scheduler:
            self.client = Client(settings.scheduler, set_as_default=False)
            where = settings.scheduler
        else:
            # Worker processes (the GIL would serialise pandas' Python parts), loopback only,
            # no dashboard (its port would clash between jobs and it needs bokeh). A task's
            # memory is its own while it runs and its result leaves at once: spilling to disk
            # and pausing (Dask's defaults from 60% and 80% of the limit) only slow it down
            # (measured: a partition 1.3x slower under a 1 GiB limit); the nanny still restarts
            # a worker past 95% of its limit, and the task is retried (EngineError if it keeps
            # dying).
            import dask

            memory = {f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause")}
            with dask.config.set(memory):
                self.cluster = self._local_cluster(LocalCluster, settings)
            self.client = Client(self.cluster, set_as_default=False)
            where = f"a local cluster of {settings.workers} worker process(es)"
        info = self.client.scheduler_info()

        self.workers = max(len(info.get("workers", {})), 1)
        # The task code's imports (pandas, LightGBM, ...: seconds) start on every worker now,
        # while the driver prepares the job, instead of when the first task arrives.
        self._warm = [
            self.client.submit(
                _warm_up, settings.threads_per_worker, workers=[address], pure=False,
                allow_other_workers=False, key=f"warm-up-{address}",
            )
            for address in info.get("workers", {})
        ]  # fmt: skip
        log.info("dask engine: %s, %d worker(s)", where, self.workers)
        self._where = where

    @staticmethod
    def _local_cluster(cls, settings: EngineSettings):
        return cls(
            n_workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            memory_limit=settings.memory_limit,
        )

    def share(self, value: Any) -> Any:
        """A value every task reads, sent to every worker once (not once per task)."""
        return self.client.scatter(value, broadcast=True, hash=False)

    def map_unordered(
        self, fn: Callable[..., Any], items: Sequence[Any], *args: Any
    ) -> Iterator[tuple[Any, Any]]:
        """``(item, fn(item, *args))`` for each item, as the cluster finishes them. A task lost
        with its worker is run again by the scheduler; a task that raises raises here."""
        from distributed import KilledWorker, as_completed

        futures = {
            self.client.submit(fn, item, *args, pure=False, key=f"{fn.__name__}-{_item_name(item)}-{time.time_ns()}"): item
            for item in items
        }  # fmt: skip
        for future in as_completed(futures, loop=self.client.loop):
            try:
                result = future.result()
            except BaseException as error:
                for other in futures:  # stop the rest: the job stops at the first error
                    other.cancel()
                if isinstance(error, KilledWorker):
                    raise EngineError(
                        f"partition {_item_name(futures[future])} was lost with its worker "
                        "again and again (out of memory, most often): give workers more memory "
                        "(engine.memory_limit in params.yaml) or write the CRM in more "
                        "partitions (leadscore partition --partitions)"
                    ) from None
                raise
            item = futures[future]
            future.release()  # the result is the caller's now: free the worker's copy
            yield item, result

    def close(self) -> None:
        """Disconnect; a LocalCluster of ours is shut down."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def describe(self) -> str:
        """The engine in a log line."""
        return f"dask engine ({self._where}, {self.workers} worker(s))"


def _warm_up(threads: int) -> None:
    """On a worker: import the per-partition code, and give Arrow the worker's threads (not
    the machine's: workers beside each other would oversubscribe the cores)."""
    import pyarrow as pa

    import pipelines.partitioned_scoring  # noqa: F401
    import pipelines.score_job  # noqa: F401

    pa.set_cpu_count(threads)


class EngineError(RuntimeError):
    """The cluster could not finish a task (its workers kept dying)."""


def _item_name(item: Any) -> str:
    return str(item[0] if isinstance(item, tuple) else item)


def open_engine(settings: EngineSettings) -> PandasEngine | DaskEngine:
    """The engine the settings name (the caller closes it)."""
    return DaskEngine(settings) if settings.name == "dask" else PandasEngine()
