"""alibi-detect's side of the drift benchmark, in its own virtualenv (``alibi-detect==0.13.0`` alone: no
TensorFlow or PyTorch, which TabularDrift does not need).

Reference preparation: ``TabularDrift(x_ref, p_val=0.05, correction="bonferroni", categories_per_feature=...)``
(every column categorical for the categorical data set, with its categories taken from the reference;
none for the numeric one). Timed per window: ``predict(x, drift_type="batch", return_p_val=True)``, which
runs a KS test (scipy ``ks_2samp``, asymptotic p-value, against all reference rows) per numeric column
and a chi-squared test of homogeneity (``scipy.stats.chi2_contingency`` on reference and window counts)
per categorical column. Per-column flags: p-value < ``p_val / columns``, the Bonferroni threshold
``predict`` returns; scores: the p-values.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import _child
import numpy as np
from alibi_detect.cd import TabularDrift


def run(job: dict[str, Any]) -> dict[str, Any]:
    columns: list[str] = job["columns"]
    x_ref = _child.load(job["reference"])
    categories = {i: None for i in range(len(columns))} if job["kind"] == "categorical" else None
    detector, t_init = _child.clock(
        lambda: TabularDrift(x_ref, p_val=0.05, correction="bonferroni", categories_per_feature=categories))
    rss_prep = _child.peak_rss_mib()
    windows = []
    for w in job["windows"]:
        x = _child.load(w["path"])
        answer, t = _child.timed(lambda x=x: detector.predict(x, drift_type="batch", return_p_val=True),
                                 job["repeat"], job["budget"])
        p = np.asarray(answer["data"]["p_val"], dtype=np.float64)
        threshold = float(answer["data"]["threshold"])
        flags = {c: bool(p[i] < threshold) for i, c in enumerate(columns)}
        scores = {c: float(p[i]) for i, c in enumerate(columns)}
        windows.append({"scenario": w["scenario"], "rows": w["rows"],
                        "configs": {"default": {**t, "flags": flags, "scores": scores, "threshold": threshold}}})
        del x
    return {"library": "alibi-detect", "version": metadata.version("alibi-detect"), "prep": {"init": t_init},
            "rssPrepMiB": rss_prep, "windows": windows}


if __name__ == "__main__":
    _child.main(run)
