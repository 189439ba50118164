"""The dataset-level drift verdict: per-feature tests, a multiple-testing correction, a share.

:func:`check` is the entry point of a drift check: it tests every feature of the window that the
DriftPolicy names (:func:`roost.stats.drift.check_feature`), corrects the p-value tests for their
number (:func:`adjust`), and calls dataset drift when the share of drifted features exceeds
``driftedShare`` (:func:`decide`).

Why a correction: with 30 features each tested at 5%, a window from the reference distribution
raises at least one false alarm with probability ``1 - 0.95**30 ~ 79%``. Bonferroni keeps the
probability of any false alarm (the family-wise error rate) at ``alpha``; Benjamini-Hochberg keeps
the expected share of false alarms among the drifted features (the false discovery rate) at
``alpha`` and loses less power when many features really drift. Distance tests (PSI, Wasserstein,
Jensen-Shannon) have no p-value and are compared with their thresholds as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from roost.api import driftpolicy
from roost.stats import drift, reference

FloatArray = npt.NDArray[np.float64]
Correction = driftpolicy.Correction


def bonferroni(p_values: npt.ArrayLike) -> FloatArray:
    """Bonferroni-adjusted p-values ``min(1, m p_i)`` for a family of ``m`` tests (Dunn 1961).

    Rejecting where the adjusted value is below ``alpha`` keeps the family-wise error rate at
    ``alpha`` under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    return np.asarray(np.minimum(1.0, p * p.shape[0]), dtype=np.float64)


def benjamini_hochberg(p_values: npt.ArrayLike) -> FloatArray:
    """Benjamini-Hochberg step-up adjusted p-values (Benjamini & Hochberg, JRSS B 57(1), 1995).

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` over the sorted p-values, returned in the input
    order; equal to ``scipy.stats.false_discovery_control(p, method="bh")``. Rejecting where
    ``q_i`` is below ``alpha`` keeps the false discovery rate at ``alpha`` for independent or
    positively dependent tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.shape[0]
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(1.0, q)
    return out


def adjust(p_values: npt.ArrayLike, correction: Correction | str) -> FloatArray:
    """Adjusted p-values for ``correction`` (``bonferroni``, ``benjamini-hochberg`` or ``none``)."""
    c = Correction(correction)
    if c is Correction.BONFERRONI:
        return bonferroni(p_values)
    if c is Correction.BENJAMINI_HOCHBERG:
        return benjamini_hochberg(p_values)
    return np.asarray(p_values, dtype=np.float64).copy()


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The outcome of a drift check.

    Attributes:
        features: one result per tested feature, in the reference's order; p-value tests carry the
            corrected p-value (raw one in ``detail["rawPValue"]``) and the decision on it.
        drift_detected: ``drifted_share > share_threshold``; None when no feature had enough data.
        drifted_share: drifted features / features with a verdict; None when there are none.
        share_threshold: the policy's ``driftedShare``.
        correction: the multiple-testing correction applied to the p-value tests.
        family_size: how many p-value tests it was applied to (those with a verdict).
        tested: features with a verdict.
        drifted: names of the drifted features.
        insufficient: names of the features without a verdict.
        rows: rows in the window.
    """

    features: tuple[drift.FeatureResult, ...]
    drift_detected: bool | None
    drifted_share: float | None
    share_threshold: float
    correction: str
    family_size: int
    tested: int
    drifted: tuple[str, ...]
    insufficient: tuple[str, ...]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready camelCase data."""
        return {
            "driftDetected": self.drift_detected, "driftedShare": self.drifted_share,
            "shareThreshold": self.share_threshold, "correction": self.correction, "familySize": self.family_size,
            "tested": self.tested, "drifted": list(self.drifted), "insufficient": list(self.insufficient),
            "rows": self.rows, "features": [f.to_dict() for f in self.features],
        }


def decide(
    results: Sequence[drift.FeatureResult], *, correction: Correction | str = Correction.NONE,
    drifted_share: float = 0.0, rows: int = 0,
) -> DriftReport:
    """Correct the p-value tests of ``results`` for their number and give the dataset verdict.

    The family is the p-value tests (``ks``, ``chi2``) that have a verdict; each gets its adjusted
    p-value as ``p_value`` (the raw one in ``detail["rawPValue"]``, the correction's name in
    ``detail["correction"]``) and ``drifted = adjusted < threshold``. Insufficient results are left
    out of the family and of the share. Dataset drift: more than ``drifted_share`` of the features
    with a verdict drifted (with the default 0, any drifted feature).

    Args:
        results: per-feature results, uncorrected (as :mod:`roost.stats.drift` returns them).
        correction: ``bonferroni``, ``benjamini-hochberg`` or ``none``.
        drifted_share: the policy's ``driftedShare``, in [0, 1].
        rows: rows in the window (reported).
    """
    c = Correction(correction)
    family = [i for i, r in enumerate(results) if r.sufficient and r.p_value is not None]
    out = list(results)
    if family:
        raw = np.asarray([results[i].p_value for i in family], dtype=np.float64)
        adjusted = adjust(raw, c)
        for i, p_raw, p_adj in zip(family, raw.tolist(), adjusted.tolist(), strict=True):
            r = results[i]
            out[i] = dataclasses.replace(
                r, p_value=p_adj, drifted=bool(p_adj < r.threshold),
                detail={**r.detail, "rawPValue": p_raw, "correction": c.value},
            )
    judged = [r for r in out if r.sufficient]
    drifted = tuple(r.name for r in judged if r.drifted)
    share = len(drifted) / len(judged) if judged else None
    return DriftReport(
        features=tuple(out),
        drift_detected=None if share is None else share > drifted_share,
        drifted_share=share,
        share_threshold=drifted_share,
        correction=c.value,
        family_size=len(family),
        tested=len(judged),
        drifted=drifted,
        insufficient=tuple(r.name for r in out if not r.sufficient),
        rows=rows,
    )


def check(
    ref: reference.Reference, window: pd.DataFrame, config: driftpolicy.Features | Mapping[str, Any] | None = None,
    *, min_samples: int = 1,
) -> DriftReport:
    """Test a window of live rows against the reference, feature by feature, and give the verdict.

    Args:
        ref: the prepared reference (:func:`roost.stats.reference.prepare`).
        window: the current rows, one column per feature (other columns are ignored).
        config: the DriftPolicy's ``spec.features``: a :class:`roost.api.driftpolicy.Features`, or
            its wire dict (camelCase, as in the manifest: ``{"include": [...], "numeric":
            {"method": "ks", "pValue": 0.05}, "categorical": {...}, "correction":
            "benjamini-hochberg", "driftedShare": 0.3}``); None for the defaults (numeric PSI >
            0.2, categorical chi-squared at 0.05, Bonferroni, any drifted feature).
        min_samples: the policy's ``minSamples``: a feature with fewer usable values in the window
            gets no verdict.

    Returns:
        The :class:`DriftReport`. ``include`` names that the reference lacks (or does not test,
        e.g. datetimes) and reference features absent from the window are reported as
        insufficient, not raised.

    Raises:
        roost.errors.PermanentError: ``InvalidSpec`` when ``config`` does not validate or a
            method lacks its bound (``ks``/``chi2`` take ``pValue``, the others ``threshold``).
    """
    features = drift.features_config(config)
    names = list(features.include) if features.include else list(ref.features)
    results = [
        drift.check_feature(
            ref.features.get(name), window[name] if name in window.columns else None, features,
            name=name, min_samples=min_samples, why_absent=ref.skipped.get(name),
        )
        for name in names
    ]
    return decide(results, correction=features.correction, drifted_share=features.drifted_share, rows=len(window))
