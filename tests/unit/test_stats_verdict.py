"""The dataset-level verdict: corrections against scipy, no false alarm on a fresh draw, drift on
exactly the shifted features, and the report's bookkeeping.

The reference is a 30-feature dataset profiled by the real Dataset worker.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from scipy import stats

from roost import errors
from roost.api import driftpolicy
from roost.stats import drift, reference, verdict
from roost.storage import store as store_mod
from roost.workers import profile

FEATURES = 30
SHIFTED = ("f03", "f11", "f27")
NUMERIC_CONFIGS: dict[str, dict[str, Any]] = {
    "ks-bonferroni": {"numeric": {"method": "ks", "pValue": 0.05}, "correction": "bonferroni"},
    "ks-benjamini-hochberg": {"numeric": {"method": "ks", "pValue": 0.05}, "correction": "benjamini-hochberg"},
    "psi": {"numeric": {"method": "psi", "threshold": 0.2}},
    "wasserstein": {"numeric": {"method": "wasserstein", "threshold": 0.1}},
    "jensenshannon": {"numeric": {"method": "jensenshannon", "threshold": 0.1}},
}


def draw(rng: np.random.Generator, rows: int, shifted: tuple[str, ...] = ()) -> pd.DataFrame:
    """30 numeric features of three shapes; ``shifted`` ones move by one standard deviation."""
    columns: dict[str, np.ndarray] = {}
    for i in range(FEATURES):
        name = f"f{i:02d}"
        if i % 3 == 0:
            v, sd = rng.normal(i, 1 + i / 10, rows), 1 + i / 10
        elif i % 3 == 1:
            v, sd = rng.lognormal(0, 0.5, rows), float(np.sqrt((np.exp(0.25) - 1) * np.exp(0.25)))
        else:
            v, sd = rng.poisson(30, rows).astype(np.float64), float(np.sqrt(30))
        columns[name] = v + sd if name in shifted else v
    return pd.DataFrame(columns)


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> reference.Reference:
    tmp = tmp_path_factory.mktemp("verdict")
    frame = draw(np.random.default_rng(100), 20_000)
    frame["color"] = np.random.default_rng(101).choice(["red", "green", "blue"], size=20_000, p=[0.5, 0.3, 0.2])
    frame["y"] = np.random.default_rng(102).integers(0, 2, 20_000)
    path = tmp / "train.csv"
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), str(path))
    store = store_mod.Store(f"file://{tmp / 'store'}")
    job = {"dataset": {"namespace": "default", "name": "t"},
           "spec": {"source": {"uri": f"file://{path}"}, "target": "y"}, "previousDigest": None}
    result = profile.run(job, store, store.uri("work", "t"), options=profile.Options())
    return reference.prepare(json.loads(store.read_bytes(result["profileURI"], result["profileDigest"])))


def numeric_only(config: dict[str, Any]) -> dict[str, Any]:
    return {"include": [f"f{i:02d}" for i in range(FEATURES)], **config}


def consistent(report: verdict.DriftReport) -> None:
    """Every verdict agrees with the numbers shown next to it, and the report is NaN-free JSON."""
    for f in report.features:
        if f.sufficient:
            assert f.statistic is not None
            if f.p_value is not None:
                assert f.drifted == (f.p_value < f.threshold)
            else:
                assert f.drifted == (f.statistic > f.threshold)
    json.dumps(report.to_dict(), allow_nan=False)


# ----- corrections ------------------------------------------------------------------------------


def test_bonferroni_multiplies_by_the_family_size_and_caps_at_one() -> None:
    np.testing.assert_allclose(verdict.bonferroni([0.001, 0.01, 0.2, 0.5]), [0.004, 0.04, 0.8, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benjamini_hochberg_equals_scipy_false_discovery_control(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 25), rng.uniform(0, 0.01, 5), [0.03, 0.03]])  # ties included
    rng.shuffle(p)
    np.testing.assert_allclose(verdict.benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"),
                               rtol=1e-12)


def test_benjamini_hochberg_is_less_strict_than_bonferroni() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert (verdict.benjamini_hochberg(p) <= verdict.bonferroni(p)).all()
    assert verdict.adjust(p, "none").tolist() == p.tolist()
    assert verdict.benjamini_hochberg([]).shape == (0,)


# ----- the dataset verdict on real profiles --------------------------------------------------------


@pytest.mark.parametrize("name", list(NUMERIC_CONFIGS))
def test_a_fresh_draw_of_the_reference_distribution_raises_no_alarm(name: str, ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(200), 2000)
    report = verdict.check(ref, window, numeric_only(NUMERIC_CONFIGS[name]))
    assert report.tested == FEATURES and report.insufficient == ()
    assert report.drifted == () and report.drift_detected is False and report.drifted_share == 0.0
    consistent(report)


@pytest.mark.parametrize("name", list(NUMERIC_CONFIGS))
def test_a_one_sd_shift_is_found_on_exactly_the_shifted_features(name: str, ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(300), 2000, shifted=SHIFTED)
    report = verdict.check(ref, window, numeric_only(NUMERIC_CONFIGS[name]))
    assert report.drifted == SHIFTED
    assert report.drift_detected is True and report.drifted_share == pytest.approx(3 / FEATURES)
    consistent(report)


def test_bonferroni_keeps_the_false_alarm_rate_of_thirty_ks_tests_near_alpha(ref: reference.Reference) -> None:
    # Under no drift each raw p-value is ~uniform: 30 uncorrected tests at 5% alarm on ~79% of the
    # windows; Bonferroni on ~5%. Windows of 12,000 rows take the asymptotic p-value (fast).
    raw = corrected = 0
    windows = 20
    for seed in range(windows):
        window = draw(np.random.default_rng(400 + seed), 12_000)
        report = verdict.check(ref, window, numeric_only({"numeric": {"method": "ks", "pValue": 0.05},
                                                         "correction": "none"}))
        assert {f.detail["mode"] for f in report.features} == {"asymp"}
        raw += bool(report.drift_detected)
        corrected += bool(verdict.decide(report.features, correction="bonferroni").drift_detected)
    print(f"alarms over {windows} windows: uncorrected {raw}, Bonferroni {corrected}")
    assert raw >= windows // 2 and corrected <= 2


def test_the_report_states_the_correction_and_keeps_raw_p_values(ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(500), 2000, shifted=SHIFTED)
    report = verdict.check(ref, window, numeric_only(NUMERIC_CONFIGS["ks-bonferroni"]))
    assert report.correction == "bonferroni" and report.family_size == FEATURES
    for f in report.features:
        assert f.detail["correction"] == "bonferroni"
        assert f.p_value == pytest.approx(min(1.0, FEATURES * f.detail["rawPValue"]))
    distance = verdict.check(ref, window, numeric_only(NUMERIC_CONFIGS["psi"]))
    assert distance.family_size == 0 and all("rawPValue" not in f.detail for f in distance.features)
    assert report.to_dict()["correction"] == "bonferroni"


def test_categorical_and_numeric_features_are_tested_together(ref: reference.Reference) -> None:
    rng = np.random.default_rng(600)
    window = draw(rng, 2000)
    window["color"] = rng.choice(["red", "green", "blue"], size=2000, p=[0.2, 0.3, 0.5])
    report = verdict.check(ref, window, {"numeric": {"method": "ks", "pValue": 0.05}})
    assert report.drifted == ("color",) and report.tested == FEATURES + 1 and report.family_size == FEATURES + 1
    color = next(f for f in report.features if f.name == "color")
    assert (color.kind, color.method, color.unseen) == ("categorical", "chi2", {})
    consistent(report)


def test_drifted_share_must_be_exceeded(ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(700), 2000, shifted=SHIFTED)  # 3 of 30 features drift: 10%
    at = verdict.check(ref, window, numeric_only({**NUMERIC_CONFIGS["psi"], "driftedShare": 0.1}))
    below = verdict.check(ref, window, numeric_only({**NUMERIC_CONFIGS["psi"], "driftedShare": 0.09}))
    assert at.drifted == below.drifted == SHIFTED
    assert at.drift_detected is False and below.drift_detected is True and at.share_threshold == 0.1


def test_features_without_data_get_no_verdict_and_do_not_count(ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(800), 500, shifted=("f03",)).drop(columns=["f05"])
    window["f07"] = np.nan
    config = {"include": ["f03", "f05", "f07", "f08", "nope"], "numeric": {"method": "ks", "pValue": 0.05}}
    report = verdict.check(ref, window, config)
    reasons = {f.name: f.detail.get("insufficient") for f in report.features}
    assert reasons == {"f03": None, "f05": drift.NOT_IN_WINDOW, "f07": drift.ALL_MISSING, "f08": None,
                       "nope": drift.NOT_IN_REFERENCE}
    assert report.tested == 2 and report.family_size == 2 and report.drifted == ("f03",)
    assert report.drifted_share == 0.5 and report.insufficient == ("f05", "f07", "nope")
    consistent(report)


def test_an_empty_window_gives_no_verdict(ref: reference.Reference) -> None:
    report = verdict.check(ref, draw(np.random.default_rng(900), 0), None)
    assert report.drift_detected is None and report.drifted_share is None and report.tested == 0
    assert len(report.insufficient) == len(ref.features) and report.rows == 0
    consistent(report)


def test_min_samples_withholds_the_verdict_on_small_windows(ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(901), 150)
    report = verdict.check(ref, window, numeric_only({}), min_samples=200)
    assert report.drift_detected is None
    assert {f.detail["insufficient"] for f in report.features} == {drift.TOO_FEW_SAMPLES}


def test_the_policy_model_and_its_wire_dict_give_the_same_report(ref: reference.Reference) -> None:
    window = draw(np.random.default_rng(902), 1000, shifted=SHIFTED)
    wire = numeric_only({"numeric": {"method": "wasserstein", "threshold": 0.1}, "correction": "none",
                         "driftedShare": 0.05})
    model = driftpolicy.Features.model_validate(wire)
    assert verdict.check(ref, window, wire).to_dict() == verdict.check(ref, window, model).to_dict()


@pytest.mark.parametrize("config", [
    {"numeric": {"method": "ks", "threshold": 0.1, "pValue": None}},
    {"numeric": {"method": "cosine"}},
    {"correction": "holm"},
], ids=["ks-without-p-value", "unknown-method", "unknown-correction"])
def test_invalid_configurations_are_refused(config: dict[str, Any], ref: reference.Reference) -> None:
    with pytest.raises(errors.PermanentError) as info:
        verdict.check(ref, draw(np.random.default_rng(903), 10), config)
    assert info.value.reason == "InvalidSpec"


def test_decide_on_hand_made_results() -> None:
    def result(name: str, p: float | None, statistic: float = 0.0, threshold: float = 0.05) -> drift.FeatureResult:
        return drift.FeatureResult(
            name=name, kind="numeric", method="ks" if p is not None else "psi", statistic=statistic, p_value=p,
            threshold=threshold, drifted=(p < threshold) if p is not None else statistic > threshold,
            samples=10, missing=0, unseen=None, detail={},
        )

    results = [result("a", 0.01), result("b", 0.02), result("c", 0.04), result("d", None, 0.3, 0.2)]
    bonf = verdict.decide(results, correction="bonferroni")
    assert bonf.drifted == ("a", "d") and bonf.family_size == 3  # 0.03, 0.06, 0.12 against 0.05
    bh = verdict.decide(results, correction="benjamini-hochberg")
    assert bh.drifted == ("a", "b", "c", "d")  # q = 0.03, 0.03, 0.04
    none = verdict.decide(results, correction="none", drifted_share=0.5)
    assert none.drifted_share == 1.0 and none.drift_detected is True and none.correction == "none"
    assert verdict.decide([]).drift_detected is None


def test_the_report_serialises_as_camel_case(ref: reference.Reference) -> None:
    report = verdict.check(ref, draw(np.random.default_rng(904), 300), numeric_only({}))
    doc = report.to_dict()
    assert set(doc) == {"driftDetected", "driftedShare", "shareThreshold", "correction", "familySize", "tested",
                        "drifted", "insufficient", "rows", "features"}
    assert set(doc["features"][0]) == {"name", "kind", "method", "statistic", "pValue", "threshold", "drifted",
                                       "samples", "missing", "unseen", "detail"}
