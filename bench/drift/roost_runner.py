"""Roost's side of the drift benchmark, in the repository's .venv: the operator's own code path.

The reference profile comes from the Dataset worker (:func:`roost.workers.profile.run`, run by ``run.py``
once per data set, timed there); this runner reads that JSON document, prepares it as the drift worker
does (:func:`roost.stats.reference.prepare`; the sorted samples' lookup grids, otherwise built by the
first check, are built here and timed with it), and calls :func:`roost.stats.verdict.check` on each
window, given as a pandas DataFrame as the drift worker gives it. Timed per window: ``verdict.check``
over all columns for each configuration (see ``CONFIGS``), each the DriftPolicy ``spec.features`` that
asks for the same tests and thresholds as a competitor where Roost has them. The drift worker prepares
the profile at every check; here that cost is reported apart, as the issue asks.

Also timed, as a diagnostic that is not the operator's path (``ks-exact``, windows of up to 10,000 rows): the
``as-alibi`` check with scipy's exact KS p-values throughout, to show what exactness would cost (the operator's
``method="auto"`` is asymptotic from an effective size of 400, as alibi-detect always is).

After the timings, not timed: the KS exactness check. Roost's KS test compares the window with the
profile's capped, sorted reference sample (10,000 values per column), not with all reference rows, so
its statistic and raw p-value are compared with ``scipy.stats.ks_2samp(sample, window, method=<Roost's
mode>)`` on exactly that sample (the statistic to 1e-12, the p-value to 1e-6), and, for information, its
statistic with
``ks_2samp(all reference rows, window)``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import _child
import numpy as np
import pandas as pd
from scipy import stats

from roost.stats import drift, reference, verdict

BONFERRONI = "bonferroni"
CONFIGS: dict[str, list[dict[str, Any]]] = {
    # Roost's defaults (DriftPolicy spec.features omitted): PSI > 0.2 on the reference deciles; chi2 p < 0.05;
    # Bonferroni over the p-value tests.
    "default": [{}],
    # Evidently's default selection for a reference over 1,000 rows: Wasserstein distance normalised by the
    # reference std > 0.1 for numeric columns, Jensen-Shannon distance > 0.1 for categorical ones.
    "as-evidently": [{"numeric": {"method": "wasserstein", "threshold": 0.1},
                      "categorical": {"method": "jensenshannon", "threshold": 0.1}, "correction": "none"}],
    # alibi-detect TabularDrift: KS (numeric), chi2 (categorical), p < 0.05 with Bonferroni.
    "as-alibi": [{"numeric": {"method": "ks", "pValue": 0.05}, "categorical": {"method": "chi2", "pValue": 0.05},
                  "correction": BONFERRONI}],
}
NANNYML = {
    # NannyML's methods run here, one check per method (verdict.check runs one method per kind):
    # numeric KS, JS, Wasserstein; categorical chi2, JS. chi2 at p < 0.05 uncorrected, as NannyML alerts.
    "numeric": [{"numeric": {"method": "ks", "pValue": 0.05}, "correction": "none"},
                {"numeric": {"method": "jensenshannon", "threshold": 0.1}},
                {"numeric": {"method": "wasserstein", "threshold": 0.1}}],
    "categorical": [{"categorical": {"method": "chi2", "pValue": 0.05}, "correction": "none"},
                    {"categorical": {"method": "jensenshannon", "threshold": 0.1}}],
}
NANNYML_METHODS = {"numeric": ["ks", "jensenshannon", "wasserstein"], "categorical": ["chi2", "jensenshannon"]}


def frame(matrix: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The window as the drift worker hands it to ``verdict.check``: a DataFrame over the (column-major)
    matrix, without a copy, so each column is one contiguous array (as in the competitors' runners)."""
    return pd.DataFrame(matrix, columns=columns, copy=False)


def flags(report: verdict.DriftReport) -> tuple[dict[str, bool | None], dict[str, float | None]]:
    return ({f.name: f.drifted for f in report.features},
            {f.name: (f.p_value if f.p_value is not None else f.statistic) for f in report.features})


def run(job: dict[str, Any]) -> dict[str, Any]:
    columns: list[str] = job["columns"]
    kind: str = job["kind"]
    profile_doc = json.loads(Path(job["profile"]).read_text())
    ref, t_prepare = _child.clock(lambda: reference.prepare(profile_doc))
    t0 = time.perf_counter()
    for feature in ref.features.values():
        if isinstance(feature, reference.NumericReference):
            feature.sample.slots(np.empty(0))  # builds the lookup grid the first check would build
    t_grid = time.perf_counter() - t0
    rss_prep = _child.peak_rss_mib()
    configs = {**CONFIGS, "as-nannyml": NANNYML[kind]}
    windows = []
    ks_rows: list[dict[str, Any]] = []
    for w in job["windows"]:
        data = frame(_child.load(w["path"]), columns)
        out: dict[str, Any] = {}
        for name, checks in configs.items():
            reports = []
            entry: dict[str, Any] = {"wall": 0.0, "cpu": 0.0}
            times = []
            for config in checks:
                report, t = _child.timed(lambda c=config, d=data: verdict.check(ref, d, c), job["repeat"],
                                         job["budget"])
                entry["wall"] += t["wall"]
                entry["cpu"] += t["cpu"]
                entry["runs"] = t["runs"]
                reports.append(report)
                times.append(t)
            if name == "as-nannyml":
                methods = NANNYML_METHODS[kind]
                entry["methods"] = {m: {**t, **dict(zip(("flags", "scores"), flags(r), strict=True))}
                                    for m, r, t in zip(methods, reports, times, strict=True)}
                reports = [reports[methods.index("jensenshannon")]]  # NannyML's default method
            entry["flags"], entry["scores"] = flags(reports[0])
            out[name] = entry
            if name == "as-alibi" and kind == "numeric":  # after the timings: scipy's time is not Roost's
                ks_rows.append(ks_check(reports[0], ref, data, w))
        if kind == "numeric" and w["rows"] <= 10_000:
            out["ks-exact"] = ks_exact(ref, data, columns, job)
        windows.append({"scenario": w["scenario"], "rows": w["rows"], "configs": out})
        del data
    result: dict[str, Any] = {
        "library": "roost",
        "prep": {"prepare": t_prepare, "grid": t_grid},
        "rssPrepMiB": rss_prep,
        "rssPeakMiB": _child.peak_rss_mib(),
        "windows": windows,
    }
    if ks_rows:  # for information: how far the sample's D is from the D of all reference rows
        full = _child.load(job["reference"])
        for row in ks_rows:
            window = _child.load(row.pop("path"))
            d = row.pop("d")
            row["fullReferenceDGap"] = max(
                abs(d[c] - float(stats.ks_2samp(full[:, i], window[:, i], method="asymp").statistic))
                for i, c in enumerate(columns))
            del window
        result["ksCheck"] = ks_rows
    return result


def ks_exact(ref: reference.Reference, data: pd.DataFrame, columns: list[str], job: dict[str, Any]
             ) -> dict[str, Any]:
    """Not the operator's path, a diagnostic: the ``as-alibi`` check with exact KS p-values throughout
    (``roost.stats.drift.numeric_ks(method="exact")`` per column, then Bonferroni by ``verdict.decide``), as
    scipy's ``method="auto"`` would give for windows of up to 10,000 rows; the operator's ``"auto"`` is
    asymptotic there, as alibi-detect is."""
    def call() -> verdict.DriftReport:
        results = []
        for c in columns:
            feature = ref.features[c]
            assert isinstance(feature, reference.NumericReference)
            results.append(drift.numeric_ks(feature, data[c], 0.05, method="exact"))
        return verdict.decide(results, correction=BONFERRONI, rows=len(data))
    report, t = _child.timed(call, job["repeat"], job["budget"])
    return {**t, **dict(zip(("flags", "scores"), flags(report), strict=True))}


def ks_check(report: verdict.DriftReport, ref: reference.Reference, data: pd.DataFrame, w: dict[str, Any]
             ) -> dict[str, Any]:
    """Largest gaps between Roost's KS (statistic, raw p-value) and ``ks_2samp(sample, window)``."""
    d_gap = p_gap = 0.0
    modes: set[str] = set()
    sizes: set[int] = set()
    d_values: dict[str, float] = {}
    for f in report.features:
        feature = ref.features[f.name]
        assert isinstance(feature, reference.NumericReference) and f.statistic is not None
        expected = stats.ks_2samp(feature.sample.values, data[f.name].to_numpy(), method=str(f.detail["mode"]))
        d_gap = max(d_gap, abs(f.statistic - float(expected.statistic)))
        raw = float(f.detail["rawPValue"])
        p_gap = max(p_gap, abs(raw - float(expected.pvalue)))
        modes.add(str(f.detail["mode"]))
        sizes.add(feature.sample.size)
        d_values[f.name] = f.statistic
    return {"scenario": w["scenario"], "rows": w["rows"], "path": w["path"], "columns": len(report.features),
            "dGap": d_gap, "pGap": p_gap, "modes": sorted(modes), "sampleSizes": sorted(sizes), "d": d_values,
            "pass": bool(d_gap <= 1e-12 and p_gap <= 1e-6 and math.isfinite(d_gap))}


if __name__ == "__main__":
    _child.main(run)
