"""The analyst notebook runs top to bottom on a small synthetic CRM, so it cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explain_leads.py"


def test_the_analyst_notebook_runs_and_shows_no_personal_data(trained_world, tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    from pipelines.registry import run_register

    root, params = trained_world
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # the registry's artifacts land beside its store
    registered = run_register(
        params, root / "model", root / "eval", root / "sets", params_path=root / "params.yaml"
    )
    assert registered["champion"]
    # The notebook's defaults, pointed at the small world (the kernel inherits this process's
    # environment); the champion comes from the registry, as for an analyst.
    monkeypatch.setenv("LEADSCORE_TRAINING", str(root / "sets"))
    monkeypatch.setenv("LEADSCORE_PARAMS", str(root / "params.yaml"))
    monkeypatch.setenv("LEADSCORE_SAMPLE", "800")
    notebook = jupytext.read(NOTEBOOK)
    # No per-cell time limit: a busy machine may be slow, never wrong.
    NotebookClient(
        notebook, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # bar, beeswarm, cohorts, two waterfalls
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "version 1" in text and text.count("  for: ") == 2 and "score " in text
    # Lead ids only: none of the CRM's personal values appears in what the notebook showed.
    leads = pd.read_parquet(root / "crm" / "leads.parquet")
    personal = pd.concat([leads[c] for c in ("first_name", "last_name", "email", "phone")])
    personal = {str(v) for v in personal.dropna() if len(str(v)) >= 5}
    assert not personal & set(re.findall(r"[\w.@+()-]{5,}", text))
