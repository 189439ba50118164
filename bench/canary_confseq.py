"""An ablation with the ``confseq`` package (Howard et al.'s own implementation), run by
``canary_simulation.py`` when its virtualenv exists (never a project dependency):

    python3 -m venv ~/.cache/roost/bench/venvs/seqbase
    ~/.cache/roost/bench/venvs/seqbase/bin/pip install "numpy<2" scipy "pybind11>=2.10" scikit-build cmake ninja
    apt-get install -y libboost-dev      # confseq 0.0.11 builds C++ against Boost
    ~/.cache/roost/bench/venvs/seqbase/bin/pip install --no-build-isolation confseq==0.0.11

The judge **confseq**: Roost's analysis with every proportion metric (error-rate, rejection-rate)
judged instead by the textbook construction — one confidence sequence per version from
``confseq.boundaries.bernoulli_confidence_interval`` (the beta-binomial mixture), Fail when the
candidate's lower bound exceeds stable's upper one (each sequence at level ``alpha / (2 m)``), Pass
when the candidate's upper bound minus stable's lower one is below the margin (``beta / 2`` each).
Quantiles and prediction shift are Roost's own (confseq has no ratio-of-quantiles sequence). So the
row isolates what Roost's two-sample e-processes buy over two one-sample sequences.

Prints one JSON object per scenario (the summaries ``canary_simulation.py`` prints).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import canary_simulation as cs
from confseq.boundaries import bernoulli_confidence_interval  # type: ignore[import-not-found]

T_OPT = 500
_CACHE: dict[tuple[int, int, float], tuple[float, float]] = {}


def interval(k: int, n: int, level: float) -> tuple[float, float]:
    key = (k, n, level)
    if key not in _CACHE:
        lo, hi = bernoulli_confidence_interval(k, n, level, T_OPT)
        _CACHE[key] = (float(lo), float(hi))
    return _CACHE[key]


def bounds(k: cs.Arr, n: int, level: float) -> tuple[cs.Arr, cs.Arr]:
    uniq, inverse = np.unique(k, return_inverse=True)
    table = np.asarray([interval(int(x), n, level) for x in uniq]).reshape(-1, 2)
    return table[inverse, 0].reshape(k.shape), table[inverse, 1].reshape(k.shape)


def proportion_test(spec: Any, k_c: cs.Arr, n_c: int, k_s: cs.Arr, n_s: int, alpha: float,
                    beta: float) -> tuple[cs.Arr, cs.Arr]:
    lo_c, _ = bounds(k_c, n_c, alpha / 2)  # two-sided sequences: each side fails w.p. <= level
    _, hi_s = bounds(k_s, n_s, alpha / 2)
    _, hi_c = bounds(k_c, n_c, beta / 2)
    lo_s, _ = bounds(k_s, n_s, beta / 2)
    return lo_c > hi_s, hi_c - lo_s < spec.margin


def main(argv: list[str]) -> int:
    cfg = cs.Config(**json.loads(argv[0]))
    wanted = set(json.loads(argv[1]))
    for sc in cs.scenarios(cfg):
        if sc.name not in wanted:
            continue
        parts = []
        per_update = math.nan
        for chunk in range(math.ceil(cfg.reps / cfg.chunk)):
            reps = min(cfg.chunk, cfg.reps - chunk * cfg.chunk)
            run = cs.make_run(cfg, sc, chunk, reps)
            parts.append(cs.roost(run, proportion_test))
            if chunk == 0:  # one stream at a time, as the others are timed
                t0 = time.perf_counter()
                batches = 0
                for i in range(5):
                    batches += math.ceil(int(cs.roost(cs._one(run, i), proportion_test).requests[0]) / cfg.batch)
                per_update = (time.perf_counter() - t0) / batches
        rb = np.concatenate([d.rollback for d in parts])
        kinds = np.concatenate([d.kind for d in parts]).astype(str)
        reqs = np.concatenate([d.requests for d in parts])
        print(json.dumps({"scenario": sc.name, "rollback": rb.astype(int).tolist(), "kind": kinds.tolist(),
                          "requests": reqs.tolist(), "seconds_per_update": per_update}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
