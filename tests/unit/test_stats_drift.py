"""Per-feature drift statistics: every number against scipy or a hand computation, every edge case.

References come from the real Dataset worker (:mod:`roost.workers.profile`) run on a ``file://``
Store, so the reference path is tested on the format production writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from scipy.spatial import distance

from roost import errors
from roost.stats import drift, reference
from roost.storage import store as store_mod
from roost.workers import profile

REPO = Path(__file__).resolve().parents[2]
BREAST_CANCER = REPO / "examples" / "data" / "breast_cancer.csv"


def profile_of(path: Path, store_dir: Path, target: str, **options: Any) -> dict[str, Any]:
    """The profile document the Dataset worker writes for the CSV at ``path``."""
    store = store_mod.Store(f"file://{store_dir}")
    job = {"dataset": {"namespace": "default", "name": "t"},
           "spec": {"source": {"uri": f"file://{path}"}, "target": target}, "previousDigest": None}
    result = profile.run(job, store, store.uri("work", "t"), options=profile.Options(**options))
    doc: dict[str, Any] = json.loads(store.read_bytes(result["profileURI"], result["profileDigest"]))
    return doc


def mixed_frame(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    return pd.DataFrame({
        "num": rng.normal(0, 1, rows),
        "const": np.full(rows, 5.0),
        "empty": np.full(rows, np.nan),
        "color": rng.choice(["A", "B", "C"], size=rows, p=[0.5, 0.3, 0.2]),
        "single": ["only"] * rows,
        "flag": rng.random(rows) < 0.3,
        "many": rng.choice([f"c{i}" for i in range(8)], size=rows),
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(rows), unit="h"),
        "y": rng.integers(0, 2, rows),
    })


@pytest.fixture(scope="module")
def breast_cancer_profile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return profile_of(BREAST_CANCER, tmp_path_factory.mktemp("bc") / "store", "target")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> reference.Reference:
    tmp = tmp_path_factory.mktemp("mixed")
    path = tmp / "mixed.csv"
    mixed_frame(np.random.default_rng(7), 10_000).to_csv(path, index=False)
    return reference.prepare(profile_of(path, tmp / "store", "y", top_k=4))


def numeric(ref: reference.Reference, name: str) -> reference.NumericReference:
    f = ref.features[name]
    assert isinstance(f, reference.NumericReference)
    return f


def categorical(ref: reference.Reference, name: str) -> reference.CategoricalReference:
    f = ref.features[name]
    assert isinstance(f, reference.CategoricalReference)
    return f


def no_nan(result: drift.FeatureResult) -> None:
    json.dumps(result.to_dict(), allow_nan=False)  # raises on NaN or inf anywhere


# ----- preparing the reference from the worker's profile -----------------------------------------


def test_prepare_reads_every_breast_cancer_feature_with_bins_and_the_whole_sample(
    breast_cancer_profile: dict[str, Any],
) -> None:
    ref = reference.prepare(breast_cancer_profile)
    frame = pd.read_csv(BREAST_CANCER)
    assert list(ref.features) == [c for c in frame.columns if c != "target"]
    assert ref.rows == 569 and ref.skipped == {} and ref.digest == breast_cancer_profile["digest"]
    for name, f in ref.features.items():
        assert isinstance(f, reference.NumericReference) and f.usable
        assert f.edges.shape == (9,) and np.all(np.diff(f.edges) >= 0)
        assert int(f.bin_counts.sum()) == 569
        np.testing.assert_array_equal(f.sample.values, np.sort(frame[name].to_numpy()))
        # The prepared bins count the reference exactly as the profile did.
        np.testing.assert_array_equal(drift.bin_counts(f.edges, frame[name].to_numpy()), f.bin_counts)
        assert f.std == pytest.approx(frame[name].std())
        assert not f.edges.flags.writeable and not f.sample.values.flags.writeable
    assert isinstance(ref.target, reference.CategoricalReference)
    assert ref.target.categories == ("1", "0") and ref.target.counts.tolist() == [357, 212, 0]


def test_prepare_handles_every_feature_type_of_the_profile(mixed: reference.Reference) -> None:
    assert set(mixed.features) == {"num", "const", "empty", "color", "single", "flag", "many"}
    assert mixed.skipped == {"when": "datetime features are not tested"}
    assert numeric(mixed, "num").usable and numeric(mixed, "const").usable
    empty = numeric(mixed, "empty")
    assert not empty.usable and empty.count == 0 and empty.missing == 10_000
    const = numeric(mixed, "const")
    assert const.sample.distinct.tolist() == [5.0] and const.std == 0.0
    color = categorical(mixed, "color")
    assert set(color.categories) == {"A", "B", "C"} and color.other == 0 and color.count == 10_000
    assert set(categorical(mixed, "flag").categories) == {"true", "false"}
    assert categorical(mixed, "single").categories == ("only",)
    many = categorical(mixed, "many")
    assert len(many.categories) == 4 and many.other > 0 and many.count == 10_000  # top_k=4 + __other__


@pytest.mark.parametrize(("doc", "words"), [
    ({"kind": "Something", "version": 1}, "DatasetProfile"),
    ({"kind": "DatasetProfile", "version": 99}, "version"),
    ({"kind": "DatasetProfile", "version": 1, "features": [
        {"name": "a", "type": "numeric", "count": 3, "histogram": {"edges": [0, 1, 2], "counts": [1, 1, 1]}}]},
     "'a'"),
    ({"kind": "DatasetProfile", "version": 1, "features": [{"name": "b", "type": "numeric"}]}, "'b'"),
], ids=["other-kind", "other-version", "counts-do-not-fit-edges", "no-count"])
def test_prepare_refuses_documents_it_cannot_read(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(errors.PermanentError) as info:
        reference.prepare(doc)
    assert info.value.reason == reference.REFERENCE_INVALID and words in info.value.message


# ----- locating values among the sample ----------------------------------------------------------

Draw = Callable[[np.random.Generator], np.ndarray]
DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "normal": lambda r, n: r.normal(0, 1, n),
    "lognormal": lambda r, n: r.lognormal(0, 1.5, n),
    "pareto": lambda r, n: r.pareto(1.1, n),
    "student-t": lambda r, n: r.standard_t(1.5, n),
    "integers": lambda r, n: r.integers(0, 50, n).astype(np.float64),
    "binary": lambda r, n: r.integers(0, 2, n).astype(np.float64),
    "zero-inflated": lambda r, n: np.where(r.random(n) < 0.7, 0.0, r.exponential(5, n)),
    "large-offset": lambda r, n: 1e6 + r.normal(0, 1e-3, n),
    "tiny": lambda r, n: r.normal(0, 1e-300, n),
}


@pytest.mark.parametrize("shape", list(DISTRIBUTIONS))
def test_slots_equal_searchsorted_on_every_shape(shape: str) -> None:
    rng = np.random.default_rng(11)
    gen = DISTRIBUTIONS[shape]
    sample = reference.SortedSample.build(gen(rng, 3000))
    x = np.concatenate([gen(rng, 50_000), sample.values[::7], [0.0, -0.0, 1e308, -1e308, 5e-324, -5e-324]])
    u = sample.distinct
    k = np.searchsorted(u, x, side="left")
    want = 2 * k + (u[np.minimum(k, u.shape[0] - 1)] == x)
    np.testing.assert_array_equal(sample.slots(x), want)
    np.testing.assert_array_equal(sample.counts(x), np.bincount(want, minlength=2 * u.shape[0] + 1))
    ends = np.append(u, u[-1])
    slots = np.empty(x.shape[0], dtype=np.int32)
    counts, dist = sample.counts_and_distances(x, slots=slots)
    np.testing.assert_array_equal(slots, want)
    np.testing.assert_array_equal(counts, np.bincount(want, minlength=2 * u.shape[0] + 1))
    want_dist = np.bincount(want, weights=np.abs(ends[want >> 1] - x), minlength=2 * u.shape[0] + 1)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-9, atol=0)


def test_an_empty_sample_puts_every_value_in_slot_zero() -> None:
    sample = reference.SortedSample.build([np.nan, np.inf])
    x = np.array([-1.0, 0.0, 3.5])
    np.testing.assert_array_equal(sample.slots(x), [0, 0, 0])
    np.testing.assert_array_equal(sample.counts(x), [3])


@pytest.mark.parametrize("shape", list(DISTRIBUTIONS))
@pytest.mark.parametrize("rows", [1, 40, 2000, 60_000])
def test_ks_statistic_is_scipys_bit_for_bit_and_wasserstein_its_value_at_any_size(shape: str, rows: int) -> None:
    """The compiled sweeps skip the slots a small window leaves empty (ks) and add gaps one by one
    (wasserstein): windows from one value (one slot touched) to 20 values per sample value (all touched)."""
    rng = np.random.default_rng(rows)
    gen = DISTRIBUTIONS[shape]
    ref = gen(rng, 5000)
    sample = reference.SortedSample.build(ref)
    for win in (gen(rng, rows), gen(rng, rows) * 1.3 + 0.1):
        assert drift.ks_statistic(sample, win) == float(stats.ks_2samp(ref, win, method="asymp").statistic)
        assert drift.wasserstein(sample, win) == pytest.approx(
            float(stats.wasserstein_distance(ref, win)), rel=1e-9, abs=1e-300)


def test_bin_counts_follow_the_profile_rule_with_open_outer_bins() -> None:
    rng = np.random.default_rng(2)
    edges = np.array([-1.0, -0.5, 0.0, 0.0, 0.5, 1.0, 1.0, 1.5, 2.0])  # ties, as discrete deciles give
    x = np.concatenate([rng.normal(0, 3, 10_000), edges, [-1e300, 1e300]])
    want = np.bincount(np.searchsorted(edges, x, side="right"), minlength=10)
    np.testing.assert_array_equal(drift.bin_counts(edges, x), want)
    assert drift.bin_counts(edges, x).sum() == x.shape[0]


# ----- statistics against scipy and by hand -------------------------------------------------------


def test_psi_equals_the_hand_computed_sum() -> None:
    expected = [25, 25, 25, 25]
    actual = [10, 20, 30, 40]
    by_hand = ((0.1 - 0.25) * math.log(0.1 / 0.25) + (0.2 - 0.25) * math.log(0.2 / 0.25)
               + (0.3 - 0.25) * math.log(0.3 / 0.25) + (0.4 - 0.25) * math.log(0.4 / 0.25))
    assert drift.psi(expected, actual) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.228218, abs=1e-6)
    assert drift.psi(expected, expected) == 0.0


def test_psi_gives_empty_bins_the_epsilon_share() -> None:
    # Bin 3 is empty in the reference: its share is taken as 1e-4; bin 4 is empty on both sides: 0.
    value = drift.psi([50, 50, 0, 0], [50, 25, 25, 0])
    by_hand = (0.5 - 0.5) * 0 + (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    assert value == pytest.approx(by_hand, rel=1e-12)
    assert math.isfinite(drift.psi([1, 0], [0, 1]))


@pytest.mark.parametrize("case", ["random", "zeros", "identical", "disjoint", "scaled"])
def test_jensenshannon_equals_scipy_base_2(case: str) -> None:
    rng = np.random.default_rng(3)
    p = rng.integers(1, 100, 10).astype(float)
    q = {"random": rng.integers(1, 100, 10).astype(float), "zeros": np.where(np.arange(10) % 3, p, 0) + 0.0,
         "identical": p.copy(), "disjoint": np.zeros(10), "scaled": p * 7}[case]
    if case == "disjoint":
        p, q = np.array([1.0, 2, 0, 0]), np.array([0.0, 0, 3, 4])
    value = drift.jensenshannon(p, q)
    assert value == pytest.approx(float(distance.jensenshannon(p, q, base=2)), abs=1e-12)
    assert 0.0 <= value <= 1.0
    if case in ("identical", "scaled"):
        assert value == pytest.approx(0.0, abs=1e-7)
    if case == "disjoint":
        assert value == pytest.approx(1.0)


def test_chi2_homogeneity_equals_scipys_contingency_test() -> None:
    rng = np.random.default_rng(21)
    for _ in range(200):
        buckets = int(rng.integers(2, 30))
        ref = rng.integers(0, 500, buckets).astype(np.float64)
        win = rng.integers(0, 50, buckets).astype(np.float64)
        ref[0], win[1] = 0, 0  # a bucket only the window has, one only the reference has
        statistic, p_value, df = drift.chi2_homogeneity(ref, win)
        table = np.stack([ref, win])[:, (ref + win) > 0]
        want = stats.chi2_contingency(table, correction=False)
        assert statistic == pytest.approx(float(want.statistic), rel=1e-12)
        assert p_value == pytest.approx(float(want.pvalue), rel=1e-9, abs=1e-300)
        assert df == int(want.dof)
    assert drift.chi2_homogeneity([10.0], [10.0]) == (0.0, 1.0, 0)
    assert drift.chi2_homogeneity([10.0, 0.0], [0.0, 0.0]) == (0.0, 1.0, 0)  # an empty window


KS_CASES: dict[str, tuple[Draw, Draw]] = {
    "same-exact": (lambda r: r.normal(0, 1, 5000), lambda r: r.normal(0, 1, 1000)),
    "shift-exact": (lambda r: r.normal(0, 1, 3000), lambda r: r.normal(0.2, 1, 500)),
    "equal-sizes-exact": (lambda r: r.normal(0, 1, 800), lambda r: r.normal(0.1, 1, 800)),
    "same-asymp": (lambda r: r.normal(0, 1, 10_000), lambda r: r.normal(0, 1, 30_000)),
    "shift-asymp": (lambda r: r.lognormal(0, 1, 10_000), lambda r: r.lognormal(0.05, 1, 20_000)),
    "ties": (lambda r: r.integers(0, 20, 4000).astype(float), lambda r: r.integers(0, 22, 15_000).astype(float)),
    "ties-exact": (lambda r: r.integers(0, 5, 300).astype(float), lambda r: r.integers(0, 5, 200).astype(float)),
    "tiny": (lambda r: r.normal(0, 1, 7), lambda r: r.normal(0, 1, 3)),
    "disjoint": (lambda r: r.normal(0, 1, 500), lambda r: r.normal(100, 1, 400)),
    "constant-reference": (lambda r: np.full(200, 3.0), lambda r: r.normal(3, 1, 300)),
    "heavy-tails": (lambda r: r.standard_t(1.2, 10_000), lambda r: r.standard_t(1.2, 40_000) * 1.05),
}


@pytest.mark.parametrize("case", list(KS_CASES))

def test_ks_statistic_and_p_value_equal_scipy_ks_2samp(case: str) -> None:
    rng = np.random.default_rng(5)
    make_ref, make_win = KS_CASES[case]
    ref, win = make_ref(rng), make_win(rng)
    sample = reference.SortedSample.build(ref)
    d, p, mode = drift.ks_2samp(sample, win)
    n1, n2 = ref.shape[0], win.shape[0]
    assert mode == ("exact" if n1 * n2 / (n1 + n2) < drift.KS_EXACT_BELOW else "asymp")
    want = stats.ks_2samp(ref, win, method=mode)
    assert abs(d - float(want.statistic)) <= 1e-12
    assert abs(p - float(want.pvalue)) <= 1e-6
    assert drift.ks_statistic(sample, win) == d
    for method in ("asymp", "exact"):
        if method == "exact" and max(n1, n2) > 10_000:
            continue  # scipy's exact computation: slow, and it falls back to asymp with a warning
        expected = stats.ks_2samp(ref, win, method=method)
        d2, p2, mode2 = drift.ks_2samp(sample, win, method=method)
        assert mode2 == method and abs(p2 - float(expected.pvalue)) <= 1e-6
        assert abs(d2 - float(expected.statistic)) <= 1e-12


@pytest.mark.parametrize(("n1", "n2"), [(800, 800), (1000, 1000), (5000, 450), (2000, 1000), (10_000, 420),
                                        (10_000, 1000), (10_000, 5000), (10_000, 10_000)])
def test_ks_auto_asymptotic_p_value_is_within_ten_percent_of_the_exact_one(n1: int, n2: int) -> None:
    """What ``method="auto"`` trades (see ``drift.ks_2samp``): from an effective size of 400 it takes the
    asymptotic p-value, within 10 % of scipy's exact one wherever p >= 1e-6 (where drift is decided)."""
    rng = np.random.default_rng(n1 + n2)
    en = n1 * n2 / (n1 + n2)
    worst, checked = 0.0, 0
    for shift in (0.0, 0.03, 0.06, 0.1, 0.15):
        ref = rng.normal(size=n1)
        win = rng.normal(size=n2) + shift * np.sqrt(1000 / en)
        _, p, mode = drift.ks_2samp(reference.SortedSample.build(ref), win)
        assert mode == "asymp"
        exact = float(stats.ks_2samp(ref, win, method="exact").pvalue)
        if exact >= 1e-6:
            worst = max(worst, abs(p - exact) / exact)
            checked += 1
    assert checked >= 3
    assert worst <= 0.10, worst


WASSERSTEIN_CASES: dict[str, tuple[Draw, Draw]] = {
    "same": (lambda r: r.normal(0, 1, 10_000), lambda r: r.normal(0, 1, 200_000)),  # many crossing gaps
    "shift": (lambda r: r.normal(0, 1, 5000), lambda r: r.normal(1, 1, 50_000)),
    "scale": (lambda r: r.normal(0, 1, 5000), lambda r: r.normal(0, 2, 20_000)),
    "ties": (lambda r: r.integers(0, 30, 5000).astype(float), lambda r: r.integers(0, 32, 30_000).astype(float)),
    "heavy-tails": (lambda r: r.pareto(1.5, 10_000), lambda r: r.pareto(1.4, 50_000)),
    "large-offset": (lambda r: 1e6 + r.normal(0, 1e-2, 5000), lambda r: 1e6 + r.normal(0, 1e-2, 20_000)),
    "constant-reference": (lambda r: np.full(100, 2.0), lambda r: r.normal(2, 1, 1000)),
    "one-value-window": (lambda r: r.normal(0, 1, 1000), lambda r: np.array([0.3])),
    "window-outside": (lambda r: r.uniform(0, 1, 1000), lambda r: r.uniform(5, 6, 1000)),
}


@pytest.mark.parametrize("case", list(WASSERSTEIN_CASES))
def test_wasserstein_equals_scipy(case: str) -> None:
    rng = np.random.default_rng(6)
    make_ref, make_win = WASSERSTEIN_CASES[case]
    ref, win = make_ref(rng), make_win(rng)
    value = drift.wasserstein(reference.SortedSample.build(ref), win)
    assert value == pytest.approx(float(stats.wasserstein_distance(ref, win)), rel=1e-9, abs=1e-15)


# ----- numeric features: thresholds, edge cases ----------------------------------------------------

NUMERIC_TESTS: dict[str, Callable[..., drift.FeatureResult]] = {
    "psi": lambda f, x, **kw: drift.numeric_psi(f, x, 0.2, **kw),
    "ks": lambda f, x, **kw: drift.numeric_ks(f, x, 0.05, **kw),
    "wasserstein": lambda f, x, **kw: drift.numeric_wasserstein(f, x, 0.1, **kw),
    "jensenshannon": lambda f, x, **kw: drift.numeric_jensenshannon(f, x, 0.1, **kw),
}


@pytest.mark.parametrize("method", list(NUMERIC_TESTS))
def test_numeric_tests_see_a_one_sd_shift_and_not_a_fresh_draw(method: str, mixed: reference.Reference) -> None:
    rng = np.random.default_rng(8)
    f = numeric(mixed, "num")
    same = NUMERIC_TESTS[method](f, rng.normal(0, 1, 1500))
    moved = NUMERIC_TESTS[method](f, rng.normal(1, 1, 1500))
    assert same.drifted is False and moved.drifted is True
    assert (same.kind, same.method, same.samples, same.missing, same.unseen) == ("numeric", method, 1500, 0, None)
    assert moved.statistic is not None and same.statistic is not None and moved.statistic > same.statistic
    no_nan(same)
    no_nan(moved)


def test_wasserstein_is_in_reference_standard_deviations(mixed: reference.Reference) -> None:
    f = numeric(mixed, "num")
    window = f.sample.values + 0.5 * (f.std or 0)  # the sample moved by half a std
    result = drift.numeric_wasserstein(f, window, 0.1)
    assert result.statistic == pytest.approx(0.5, rel=1e-9)
    assert result.detail["distance"] == pytest.approx(0.5 * (f.std or 0), rel=1e-9)


@pytest.mark.parametrize("method", list(NUMERIC_TESTS))
def test_constant_column_is_no_drift_when_unchanged_and_drift_when_moved_down(
    method: str, mixed: reference.Reference,
) -> None:
    f = numeric(mixed, "const")
    same = NUMERIC_TESTS[method](f, np.full(300, 5.0))
    down = NUMERIC_TESTS[method](f, np.full(300, 4.0))
    assert same.drifted is False and same.statistic == pytest.approx(0.0, abs=1e-12)
    assert down.drifted is True
    for r in (same, down):
        no_nan(r)
    if method == "ks":
        assert same.p_value == 1.0
    if method == "wasserstein":
        assert down.detail["scale"] == drift.WASSERSTEIN_MIN_SCALE and down.statistic == pytest.approx(1000.0)


def test_binned_tests_do_not_see_a_constant_column_move_up_as_documented(mixed: reference.Reference) -> None:
    # Every decile edge of a constant column is the constant: the last bin [5, inf) holds it and
    # everything above. KS and Wasserstein see the move; PSI and JS cannot.
    f = numeric(mixed, "const")
    up = np.full(300, 6.0)
    assert drift.numeric_psi(f, up, 0.2).statistic == 0.0
    assert drift.numeric_jensenshannon(f, up, 0.1).statistic == 0.0
    assert drift.numeric_ks(f, up, 0.05).drifted is True
    assert drift.numeric_wasserstein(f, up, 0.1).drifted is True


@pytest.mark.parametrize("method", list(NUMERIC_TESTS))
@pytest.mark.parametrize(("window", "reason", "missing"), [
    (np.array([], dtype=float), drift.WINDOW_EMPTY, 0),
    (np.full(40, np.nan), drift.ALL_MISSING, 40),
    (pd.Series([None] * 12, dtype=object), drift.ALL_MISSING, 12),
    (pd.Series([1.0, None, 2.0]), drift.TOO_FEW_SAMPLES, 1),
], ids=["empty", "all-nan", "all-none", "below-min-samples"])
def test_numeric_windows_without_enough_data_are_insufficient(
    method: str, window: Any, reason: str, missing: int, mixed: reference.Reference,
) -> None:
    result = NUMERIC_TESTS[method](numeric(mixed, "num"), window, min_samples=5)
    assert result.drifted is None and result.statistic is None and result.p_value is None
    assert not result.sufficient and result.detail["insufficient"] == reason and result.missing == missing
    no_nan(result)


def test_all_null_reference_feature_is_insufficient(mixed: reference.Reference) -> None:
    result = drift.numeric_ks(numeric(mixed, "empty"), np.arange(100.0), 0.05)
    assert result.drifted is None and result.detail["insufficient"] == drift.REFERENCE_EMPTY


def test_infinite_and_non_numeric_values_are_counted_invalid_and_left_out(mixed: reference.Reference) -> None:
    rng = np.random.default_rng(9)
    values = pd.Series([*rng.normal(0, 1, 500).tolist(), float("inf"), "oops", None, float("-inf")], dtype=object)
    result = drift.numeric_psi(numeric(mixed, "num"), values, 0.2)
    assert result.samples == 500 and result.missing == 1 and result.detail["invalid"] == 3
    assert result.drifted is False


# ----- categorical features ------------------------------------------------------------------------


def color_window(rng: np.random.Generator, n: int, p: list[float], values: list[str] | None = None) -> pd.Series:
    return pd.Series(rng.choice(values or ["A", "B", "C"], size=n, p=p))


CATEGORICAL_TESTS: dict[str, Callable[..., drift.FeatureResult]] = {
    "chi2": lambda f, x, **kw: drift.categorical_chi2(f, x, 0.05, **kw),
    "psi": lambda f, x, **kw: drift.categorical_psi(f, x, 0.2, **kw),
    "jensenshannon": lambda f, x, **kw: drift.categorical_jensenshannon(f, x, 0.1, **kw),
}


@pytest.mark.parametrize("method", list(CATEGORICAL_TESTS))
def test_categorical_tests_see_changed_frequencies(method: str, mixed: reference.Reference) -> None:
    rng = np.random.default_rng(10)
    f = categorical(mixed, "color")
    same = CATEGORICAL_TESTS[method](f, color_window(rng, 1000, [0.5, 0.3, 0.2]))
    moved = CATEGORICAL_TESTS[method](f, color_window(rng, 1000, [0.2, 0.3, 0.5]))
    assert same.drifted is False and moved.drifted is True
    assert same.unseen == {} and same.kind == "categorical" and same.samples == 1000
    no_nan(same)
    no_nan(moved)


def test_chi2_is_the_two_sample_test_on_the_profiles_counts(mixed: reference.Reference) -> None:
    f = categorical(mixed, "color")
    window = pd.Series(["A"] * 480 + ["B"] * 330 + ["C"] * 190)
    result = drift.categorical_chi2(f, window, 0.05)
    order = [f.index[b] for b in result.detail["buckets"]]
    observed = np.array([{"A": 480, "B": 330, "C": 190}[b] for b in result.detail["buckets"]])
    want = stats.chi2_contingency(np.stack([f.counts[order], observed]), correction=False)
    assert result.statistic == pytest.approx(float(want.statistic), rel=1e-12)
    assert result.p_value == pytest.approx(float(want.pvalue), rel=1e-9)
    assert result.detail["df"] == 2 and result.detail["reference"] == f.counts[order].tolist()
    assert result.detail["expected"] == pytest.approx(want.expected_freq[1].tolist(), rel=1e-12)


def test_chi2_keeps_its_size_when_the_window_is_far_larger_than_the_reference() -> None:
    # 17 levels, a 2,000-row reference and 200,000-row windows from the same distribution: a test
    # that took the reference shares as exact would flag most of them; the two-sample test, ~5 %.
    rng = np.random.default_rng(22)
    shares = rng.dirichlet(np.ones(17) * 5)
    flagged = 0
    for _ in range(200):
        ref = rng.multinomial(2_000, shares)
        win = rng.multinomial(200_000, shares)
        flagged += drift.chi2_homogeneity(ref, win)[1] < 0.05
    assert 0 < flagged <= 20  # 5 % of 200 is 10; 20 leaves room for chance (binomial p ~ 0.002)

def test_unseen_categories_go_to_their_own_bucket_and_are_reported(mixed: reference.Reference) -> None:
    f = categorical(mixed, "color")
    window = pd.Series(["A"] * 480 + ["B"] * 290 + ["C"] * 180 + ["D"] * 40 + ["E"] * 10 + [None] * 7)
    for method, test in CATEGORICAL_TESTS.items():
        result = test(f, window)
        assert result.unseen == {"D": 40, "E": 10}, method
        assert result.detail["buckets"][-1] == reference.UNSEEN and result.detail["unseenTotal"] == 50
        assert result.missing == 7 and result.samples == 1000
        no_nan(result)
    assert drift.categorical_chi2(f, window, 0.05).drifted is True
    # 5% of the window in a bucket the reference gives 1e-4: 0.05 * ln(0.05 / 1e-4) ~ 0.31 alone.
    assert drift.categorical_psi(f, window, 0.2).drifted is True


def test_values_beyond_the_listed_top_k_go_to_other_not_unseen(mixed: reference.Reference) -> None:
    f = categorical(mixed, "many")  # 8 values, top 4 listed
    rng = np.random.default_rng(12)
    window = pd.Series(rng.choice([f"c{i}" for i in range(8)], size=1000))
    result = drift.categorical_chi2(f, window, 0.05)
    assert result.unseen == {} and result.detail["buckets"][-1] == reference.OTHER
    assert result.detail["unlistedTotal"] > 0 and set(result.detail["unlisted"]) <= {f"c{i}" for i in range(8)}
    assert result.drifted is False


def test_single_category_reference_gives_no_nan(mixed: reference.Reference) -> None:
    f = categorical(mixed, "single")
    same = drift.categorical_chi2(f, pd.Series(["only"] * 400), 0.05)
    assert (same.statistic, same.p_value, same.drifted, same.detail["df"]) == (0.0, 1.0, False, 0)
    assert drift.categorical_psi(f, pd.Series(["only"] * 400), 0.2).statistic == 0.0
    assert drift.categorical_jensenshannon(f, pd.Series(["only"] * 400), 0.1).statistic == 0.0
    new = drift.categorical_chi2(f, pd.Series(["only"] * 300 + ["other"] * 100), 0.05)
    assert new.drifted is True and new.unseen == {"other": 100} and new.detail["df"] == 1
    for r in (same, new):
        no_nan(r)


def test_boolean_windows_match_the_profile_spelling(mixed: reference.Reference) -> None:
    f = categorical(mixed, "flag")
    rng = np.random.default_rng(13)
    bools = rng.random(1000) < 0.3
    for window in (pd.Series(bools), pd.Series(bools.astype(object)), pd.Series(pd.array(bools, dtype="boolean"))):
        result = drift.categorical_chi2(f, window, 0.05)
        assert result.unseen == {} and result.drifted is False and result.samples == 1000


@pytest.mark.parametrize("values", [
    np.arange(1000) % 17, (np.arange(500) % 256 - 128).astype(np.int8), np.array([3, 3, 7], dtype=np.uint64),
    np.array([2**63 + 5, 1], dtype=np.uint64), np.array([-(2**63), 2**63 - 1]), np.arange(0, 10**7, 1000),
    np.arange(100) % 3 == 0, np.zeros(0, dtype=np.int64), np.append(np.arange(1000) % 17, drift.CODES),
    np.array([drift.CODES - 1, 0, drift.CODES - 1], dtype=np.int32),
], ids=["levels", "int8", "uint64", "uint64-huge", "int64-extremes", "wide-span", "bool", "empty",
        "codes-then-one-beyond", "last-code"])
def test_integer_windows_are_counted_as_by_hashing(values: np.ndarray) -> None:
    # one compiled pass for codes, np.bincount for other integer and boolean columns of small span,
    # value_counts otherwise: the same counts
    counted = drift.categorical_window(pd.Series(values))
    hashed = drift.categorical_window(pd.Series(values.astype(object)))
    assert dict(zip(counted.values, counted.counts.tolist(), strict=True)) == \
        dict(zip(hashed.values, hashed.counts.tolist(), strict=True))
    assert counted.missing == hashed.missing == 0 and counted.counts.dtype == np.int64


def test_chi2_p_value_is_the_chi2_survival_function() -> None:
    rng = np.random.default_rng(14)
    for _ in range(200):
        ref = rng.integers(1, 500, int(rng.integers(2, 30))).astype(np.float64)
        win = rng.integers(1, 50, ref.shape[0]).astype(np.float64)
        statistic, p_value, df = drift.chi2_homogeneity(ref, win)
        assert p_value == float(stats.chi2.sf(statistic, df))

def test_category_keys_follow_the_arrow_string_cast() -> None:
    assert [drift.category_key(v) for v in (True, np.False_, 3, np.int64(4), 2.0, 2.5, "x")] == \
        ["true", "false", "3", "4", "2", "2.5", "x"]


@pytest.mark.parametrize("method", list(CATEGORICAL_TESTS))
@pytest.mark.parametrize(("window", "reason"), [
    (pd.Series([], dtype=object), drift.WINDOW_EMPTY),
    (pd.Series([None, np.nan, None], dtype=object), drift.ALL_MISSING),
], ids=["empty", "all-null"])
def test_categorical_windows_without_data_are_insufficient(
    method: str, window: pd.Series, reason: str, mixed: reference.Reference,
) -> None:
    result = CATEGORICAL_TESTS[method](categorical(mixed, "color"), window)
    assert result.drifted is None and result.statistic is None and result.detail["insufficient"] == reason
    no_nan(result)


def test_ks_far_tail_takes_kolmogorovs_limit_at_or_above_the_finite_sample_value() -> None:
    rng = np.random.default_rng(11)
    ref, win = rng.normal(size=10_000), rng.normal(0.2, 1.0, size=5000)
    d, p, mode = drift.ks_2samp(reference.SortedSample.build(ref), win)
    en = round(10_000 * 5000 / 15_000)
    finite = float(stats.kstwo.sf(d, en))
    assert mode == "asymp" and p < drift.KS_TAIL
    assert p == pytest.approx(float(special.kolmogorov(np.sqrt(en) * d)), rel=1e-12)
    assert finite <= p  # never an underestimate: a verdict is not made from a smaller p-value than scipy's
    near = rng.normal(0.02, 1.0, size=5000)  # a p-value in the usual range: kstwo's value
    d2, p2, _ = drift.ks_2samp(reference.SortedSample.build(ref), near)
    assert p2 >= drift.KS_TAIL and p2 == pytest.approx(float(stats.kstwo.sf(d2, en)), abs=2e-7)


@pytest.mark.parametrize("en", [420, 909, 3333, 9901, 60_000])
def test_ks_asymptotic_p_value_is_within_2e_7_of_kstwo_over_the_whole_range(en: int) -> None:
    """From an effective size of 400 the p-value comes from Pelz and Good's series, not from ``kstwo.sf``'s
    exact sums (milliseconds at these sizes where p is near 1 or between 1e-10 and 0.02): every ``d`` from
    p = 1 to the far tail, against ``kstwo.sf``."""
    assert en >= drift.KS_PELZ_GOOD_FROM
    worst = 0.0
    for z in np.linspace(0.05, 3.6, 120):  # sqrt(en) * d: p from 1 to ~1e-11
        d = float(z / math.sqrt(en))
        p = drift.ks_asymptotic_pvalue(d, en, 10**12)  # the second sample so large that en is the first
        worst = max(worst, abs(p - float(stats.kstwo.sf(d, en))))
    assert worst <= 2e-7, worst


def test_ks_asymptotic_p_value_below_the_series_range_is_kstwos() -> None:
    for en, d in ((120, 0.05), (300, 0.09), (399, 0.1)):
        assert drift.ks_asymptotic_pvalue(d, en, 10**12) == float(np.clip(stats.kstwo.sf(d, en), 0, 1))
