"""Evidently's side of the drift benchmark, in its own virtualenv (``evidently==0.7.23``, ``pandas<3``).

Reference preparation: ``evidently.Dataset.from_pandas`` on the reference rows, once (Evidently keeps no
other reference state: every report recomputes from the rows). Timed per window: wrapping the window in a
``Dataset`` and ``Report([DataDriftPreset(...)], include_tests=True).run(window, reference)``, which is what
a user runs per window. Two configurations:

- ``default``: ``DataDriftPreset()`` with its default test selection (for a reference of more than 1,000
  rows: Wasserstein distance normalised by the reference std >= 0.1 for numeric columns with more than
  5 distinct values, Jensen-Shannon distance >= 0.1 for categorical ones);
- ``as-roost``: Roost's default tests where Evidently has them: ``num_method="psi"``, ``num_threshold=0.2``
  (Evidently bins on Sturges edges over reference + window, Roost on the reference deciles) and
  ``cat_method="chisquare"`` with threshold ``0.05 / columns`` (Bonferroni, as Roost corrects by default).

Per-column flags: the preset's "Value Drift for column X" test, FAIL meaning drift; scores: its value.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import _child
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

PREFIX = "Value Drift for column "


def presets(kind: str, columns: int) -> dict[str, DataDriftPreset]:
    return {
        "default": DataDriftPreset(),
        "as-roost": DataDriftPreset(num_method="psi", num_threshold=0.2, cat_method="chisquare",
                                    cat_threshold=0.05 / columns),
    }


def run(job: dict[str, Any]) -> dict[str, Any]:
    columns: list[str] = job["columns"]
    kind: str = job["kind"]
    definition = (DataDefinition(numerical_columns=columns) if kind == "numeric"
                  else DataDefinition(categorical_columns=columns))
    ref_frame = pd.DataFrame(_child.load(job["reference"]), columns=columns, copy=False)
    ref, t_ref = _child.clock(lambda: Dataset.from_pandas(ref_frame, data_definition=definition))
    rss_prep = _child.peak_rss_mib()
    windows = []
    for w in job["windows"]:
        data = pd.DataFrame(_child.load(w["path"]), columns=columns, copy=False)
        out: dict[str, Any] = {}
        for name, preset in presets(kind, len(columns)).items():
            def call(p: DataDriftPreset = preset, window: pd.DataFrame = data) -> Any:
                current = Dataset.from_pandas(window, data_definition=definition)
                return Report([p], include_tests=True).run(current, ref).dict()
            snapshot, t = _child.timed(call, job["repeat"], job["budget"])
            flags: dict[str, bool | None] = dict.fromkeys(columns)
            for test in snapshot["tests"]:
                if test["name"].startswith(PREFIX):
                    flags[test["name"][len(PREFIX):]] = str(test["status"]).endswith("FAIL")
            scores = {m["config"]["column"]: float(m["value"]) for m in snapshot["metrics"]
                      if m["config"].get("type") == "evidently:metric_v2:ValueDrift"}
            methods = sorted({m["config"].get("method") for m in snapshot["metrics"]
                              if m["config"].get("type") == "evidently:metric_v2:ValueDrift"})
            out[name] = {**t, "flags": flags, "scores": scores, "methods": methods}
        windows.append({"scenario": w["scenario"], "rows": w["rows"], "configs": out})
        del data
    return {"library": "evidently", "version": metadata.version("evidently"), "prep": {"reference": t_ref},
            "rssPrepMiB": rss_prep, "windows": windows}


if __name__ == "__main__":
    _child.main(run)
