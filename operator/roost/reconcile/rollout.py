"""Canary and shadow rollout steps: where a rollout stands, and whether it promotes, waits or rolls back.

Follows Argo Rollouts' step model: ``setWeight`` moves traffic and advances at once; ``pause``
holds for a ``duration``, a number of candidate ``requests``, or (empty) until a manual promote. The
live analysis may roll back at any step; promotion needs the last step done and every metric judged
"no worse" (or a manual promote at ``pause: {}``). Without a verdict by ``maxDuration`` the rollout
ends Inconclusive and rolls back — never promoted by default. ``dryRun`` judges and reports only.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from roost.api import common, deployment


class Decision(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class Verdict:
    """The live analysis's current judgement (see :mod:`roost.stats.canary`)."""

    decision: Decision
    metric: str | None = None
    message: str = ""


NO_ANALYSIS = Verdict(Decision.INCONCLUSIVE, None, "no analysis yet")


class Action(StrEnum):
    WAIT = "Wait"
    PROMOTE = "Promote"
    ROLLBACK = "Rollback"


@dataclass(frozen=True)
class Observed:
    strategy: deployment.RolloutStrategy
    paused: bool
    now: datetime.datetime
    canary: dict[str, Any]           # status.canary: modelVersion, digest, step, weight, startTime, stepStartTime
    candidate_requests: int          # candidate requests since the current step started
    verdict: Verdict
    promote_requested: bool = False  # roost.dev/promote set after this rollout started
    abort_requested: bool = False    # roost.dev/abort set after this rollout started


@dataclass
class Outcome:
    action: Action
    canary: dict[str, Any]
    reason: str
    message: str
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _parse(t: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))


def _stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def steps_of(strategy: deployment.RolloutStrategy) -> list[deployment.Step]:
    """Canary steps; a Shadow rollout has no steps (the candidate sees every request, answers none)."""
    if strategy.type == deployment.StrategyType.CANARY:
        return list(strategy.steps or [])
    return []


def advance(obs: Observed) -> Outcome:
    """Move through the steps as far as the evidence allows; decide promote, roll back or wait."""
    canary = dict(obs.canary)
    analysis = obs.strategy.analysis or deployment.Analysis()
    dry_run = analysis.dry_run
    started = _parse(canary["startTime"])
    events: list[tuple[str, str, str]] = []
    version = canary["modelVersion"]

    if obs.abort_requested:
        return Outcome(Action.ROLLBACK, canary, "Aborted", f"rollout of {version} aborted by request", events)
    if obs.verdict.decision == Decision.FAIL and not dry_run:
        return Outcome(Action.ROLLBACK, canary, "AnalysisFailed", obs.verdict.message, events)
    elapsed = (obs.now - started).total_seconds()
    max_duration = common.parse_duration(analysis.max_duration).total_seconds()

    steps = steps_of(obs.strategy)
    step = int(canary.get("step") or 0)
    while step < len(steps) and not obs.paused:
        current = steps[step]
        step_started = _parse(canary.get("stepStartTime") or canary["startTime"])
        if current.set_weight is not None:
            if canary.get("weight") != current.set_weight:
                canary["weight"] = current.set_weight
                events.append(("Normal", "StepAdvanced", f"Step {step + 1}/{len(steps)}: {version} gets "
                                                          f"{current.set_weight}% of traffic"))
        else:
            pause = current.pause or deployment.Pause()
            if pause.duration is not None:
                if (obs.now - step_started).total_seconds() < common.parse_duration(pause.duration).total_seconds():
                    break
            elif pause.requests is not None:
                if obs.candidate_requests < pause.requests:
                    break
            elif not obs.promote_requested:
                break
            events.append(("Normal", "StepAdvanced", f"Step {step + 1}/{len(steps)}: pause over"))
        step += 1
        canary["step"] = step
        canary["stepStartTime"] = _stamp(obs.now)
    manual = obs.promote_requested and step >= len(steps)
    canary["step"] = step

    if step >= len(steps) and not obs.paused:
        if dry_run:
            return Outcome(Action.WAIT, canary, "DryRun",
                           f"dry run: verdict {obs.verdict.decision}: {obs.verdict.message}", events)
        if obs.verdict.decision == Decision.PASS or manual:
            why = "promoted by request" if manual and obs.verdict.decision != Decision.PASS else obs.verdict.message
            return Outcome(Action.PROMOTE, canary, "Promoted", why, events)
    if elapsed >= max_duration and not dry_run:
        return Outcome(Action.ROLLBACK, canary, "Inconclusive",
                       f"no verdict within maxDuration {analysis.max_duration}: {obs.verdict.message}", events)
    where = f"step {min(step + 1, len(steps))}/{len(steps)}" if steps else "shadow"
    reason = "Paused" if obs.paused else ("WaitingForPromotion" if step < len(steps) and _manual_pause(steps, step)
                                          else "Analysing")
    weight = canary.get("weight") or 0
    return Outcome(Action.WAIT, canary, reason,
                   f"{version} at {where}, weight {weight}%: {obs.verdict.decision} — {obs.verdict.message}", events)


def _manual_pause(steps: list[deployment.Step], step: int) -> bool:
    current = steps[step]
    return current.pause is not None and current.pause.duration is None and current.pause.requests is None
