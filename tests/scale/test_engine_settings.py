"""The engine switch: params.yaml, --engine and --scheduler."""

from __future__ import annotations

import pytest

from pipelines.engines import EngineSettings, PandasEngine, open_engine


def test_the_params_choose_unless_an_option_says_otherwise():
    params = {"engine": {"name": "dask", "workers": 3, "memory_limit": "1GiB"}}
    assert EngineSettings.from_params(params).name == "dask"
    assert EngineSettings.from_params(params).workers == 3
    assert EngineSettings.from_params(params, name="pandas").name == "pandas"
    assert EngineSettings.from_params({}).name == "pandas"
    assert EngineSettings.from_params({"engine": "dask"}).name == "dask"
    assert EngineSettings.from_params({}).train_sample_rows == 2_000_000
    sampled = {"engine": {"train_sample_rows": 5000}}
    assert EngineSettings.from_params(sampled, name="dask").train_sample_rows == 5000


def test_a_scheduler_address_means_the_dask_engine():
    settings = EngineSettings.from_params({}, scheduler="tcp://10.0.0.5:8786")
    assert (settings.name, settings.scheduler) == ("dask", "tcp://10.0.0.5:8786")
    with pytest.raises(ValueError, match="--scheduler needs the dask engine"):
        EngineSettings.from_params({}, name="pandas", scheduler="tcp://10.0.0.5:8786")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"engine": {"name": "spark"}}, "engine must be one of pandas, dask"),
        ({"engine": {"workers": 0}}, "must be >= 1"),
        ({"engine": {"train_sample_rows": 0}}, "train_sample_rows must be >= 1"),
    ],
)
def test_bad_settings_are_refused_in_one_line(params, message):
    with pytest.raises(ValueError, match=message):
        EngineSettings.from_params(params)


def test_the_pandas_engine_runs_items_in_order_in_this_process():
    engine = open_engine(EngineSettings())
    assert isinstance(engine, PandasEngine)
    assert list(engine.map_unordered(lambda i, k: i * k, [1, 2, 3], 10)) == [
        (1, 10),
        (2, 20),
        (3, 30),
    ]
