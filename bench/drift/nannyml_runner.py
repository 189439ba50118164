"""NannyML's side of the drift benchmark, in its own virtualenv (``nannyml==0.13.1``; ``pandas<3`` and
``statsmodels``, which nannyml 0.13.1 imports without declaring it).

One chunk = the window: ``UnivariateDriftCalculator(column_names, continuous_methods=["kolmogorov_smirnov",
"jensen_shannon", "wasserstein"], categorical_methods=["chi2", "jensen_shannon"], chunk_size=<window rows>)``
(every column ``treat_as_categorical`` for the categorical data set). Reference preparation:
``fit(reference)``, once per window size, since NannyML derives its default thresholds from the reference
cut into chunks of that size (mean + 3 std of the statistic over the reference chunks; chi2 alerts on
p < 0.05 instead). A reference smaller than the chunk is a single chunk, whose spread is undefined: NannyML
then sets the threshold to 0 and alerts on every column; that is its behaviour, reported as it is.
Timed per window: ``calculate(window)`` plus ``filter(period="analysis").to_df()``. Per-column flags of
NannyML's own default (its default method is ``jensen_shannon``): that method's ``alert``; the other
methods' alerts are reported as well.
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata
from typing import Any

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no usage events sent anywhere

import _child
import nannyml as nml
import pandas as pd

CONTINUOUS = ["kolmogorov_smirnov", "jensen_shannon", "wasserstein"]
CATEGORICAL = ["chi2", "jensen_shannon"]


def run(job: dict[str, Any]) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    columns: list[str] = job["columns"]
    categorical = job["kind"] == "categorical"
    rows = {w["rows"] for w in job["windows"]}
    assert len(rows) == 1, "one window size per runner: the chunk size is the window"
    reference = pd.DataFrame(_child.load(job["reference"]), columns=columns, copy=False)
    calculator = nml.UnivariateDriftCalculator(
        column_names=columns, treat_as_categorical=columns if categorical else None,
        continuous_methods=CONTINUOUS, categorical_methods=CATEGORICAL, chunk_size=rows.pop())
    _, t_fit = _child.clock(lambda: calculator.fit(reference))
    rss_prep = _child.peak_rss_mib()
    methods = CATEGORICAL if categorical else CONTINUOUS
    windows = []
    for w in job["windows"]:
        data = pd.DataFrame(_child.load(w["path"]), columns=columns, copy=False)
        table, t = _child.timed(lambda d=data: calculator.calculate(d).filter(period="analysis").to_df(),
                                job["repeat"], job["budget"])
        assert len(table) == 1, f"expected one chunk, got {len(table)}"
        per_method = {
            m: {"flags": {c: bool(table[(c, m, "alert")].iloc[0]) for c in columns},
                "scores": {c: float(table[(c, m, "value")].iloc[0]) for c in columns},
                "upper": {c: _float(table[(c, m, "upper_threshold")].iloc[0]) for c in columns}}
            for m in methods
        }
        default = per_method["jensen_shannon"]
        windows.append({"scenario": w["scenario"], "rows": w["rows"], "configs": {"default": {
            **t, "flags": default["flags"], "scores": default["scores"], "methods": per_method}}})
        del data
    return {"library": "nannyml", "version": metadata.version("nannyml"), "prep": {"fit": t_fit},
            "rssPrepMiB": rss_prep, "windows": windows}


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


if __name__ == "__main__":
    _child.main(run)
