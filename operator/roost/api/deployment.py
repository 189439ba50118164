"""``Deployment`` (roost.dev, not apps/v1): which ModelVersion serves, and how a new one rolls out.

Short names: ``rdeploy``, ``mdeploy`` (``deploy`` belongs to apps/v1). Users write
``kubectl get deployments.roost.dev`` or a short name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from roost.api import common
from roost.api.common import Duration, ObjectName, Resources, RoostModel


class StrategyType(StrEnum):
    REPLACE = "Replace"
    CANARY = "Canary"
    SHADOW = "Shadow"


class Pause(RoostModel):
    """Hold the step: for a duration, for a number of candidate requests, or (empty) until promoted."""

    duration: Duration | None = Field(default=None, description="Hold for this long, e.g. 5m.")
    requests: int | None = Field(default=None, ge=1, description="Hold until the candidate served this many.")


class Step(RoostModel):
    """One canary step: exactly one of setWeight and pause."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.setWeight) != has(self.pause)",
        "message": "each step sets exactly one of setWeight and pause",
    }]})

    set_weight: int | None = Field(default=None, ge=1, le=100, description="Percent of traffic to the candidate.")
    pause: Pause | None = Field(default=None, description="Hold the current weight.")


#: The metrics Roost reads from the request log itself.
STANDARD_METRICS = ["error-rate", "rejection-rate", "latency-p95", "latency-p99", "prediction-shift", "agreement"]


class PrometheusCounts(RoostModel):
    """A user-defined proportion from Prometheus: two PromQL queries per version, ``{{version}}`` standing for
    the ModelVersion's name (the ``version`` label of the model servers' metrics). Each gives counters, one
    series per process (no sum across processes: a pod that goes away must not read as a reset): events
    that count against a version, and all its events. The analysis judges the share bad/total, from the
    counters' increments."""

    address: str = Field(max_length=2048, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
                         description="Prometheus's base URL, e.g. http://prometheus.monitoring:9090.")
    bad: str = Field(min_length=1, max_length=4096,
                     description='PromQL for the events that count against a version, one series per process, '
                                 'e.g. checkout_failures_total{version="{{version}}"}.')
    total: str = Field(min_length=1, max_length=4096,
                       description='PromQL for all its events, one series per process, '
                                   'e.g. sum by (pod) (checkouts_total{version="{{version}}"}).')


class Metric(RoostModel):
    """A live metric and its margin: exactly one of maxIncrease, maxRatio, max; a name of your own needs prometheus."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "[has(self.maxIncrease), has(self.maxRatio), has(self.max)].filter(x, x).size() == 1",
         "message": "each metric sets exactly one of maxIncrease, maxRatio and max"},
        {"rule": f"has(self.prometheus) != (self.name in {STANDARD_METRICS!r})".replace("'", '"'),
         "message": f"a metric is one of {', '.join(STANDARD_METRICS)} (from the request log), or has a name of "
                    "its own and a prometheus query"},
        {"rule": "!has(self.prometheus) || has(self.maxIncrease)",
         "message": "a prometheus metric is a share of events: it takes maxIncrease"},
    ]})

    name: str = Field(
        max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="error-rate (5xx share), rejection-rate (4xx share), latency-p95/p99, prediction-shift, "
                    "agreement; or a name of your own with a prometheus query.",
    )
    max_increase: float | None = Field(default=None, ge=0,
                                        description="Candidate - stable may exceed 0 by at most this.")
    max_ratio: float | None = Field(default=None, ge=1, description="Candidate / stable may be at most this.")
    max: float | None = Field(default=None, ge=0, description="The candidate's value may be at most this.")
    prometheus: PrometheusCounts | None = Field(default=None, description="Where a metric of your own comes from.")


class Analysis(RoostModel):
    """How the candidate is judged on live traffic."""

    warmup: Duration = Field(default="30s", description="Candidate requests in this first span are not judged.")
    min_requests: int = Field(default=200, ge=1, description="Requests per version before any verdict.")
    max_duration: Duration = Field(default="30m", description="No verdict by then: Inconclusive, roll back.")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="False-rollback budget, split over the metrics.")
    beta: float = Field(default=0.2, gt=0, lt=0.5, description="Missed-regression budget at the stated margins.")
    dry_run: bool = Field(default=False, description="Judge and report, never act.")
    baseline: bool = Field(
        default=True,
        description="Where one process per version takes an exact share of the requests (the local backend's "
                    "router), run a fresh copy of stable that takes the candidate's share (up to half the traffic), "
                    "and compare latency with it rather than with stable: how fast a process answers depends on "
                    "how often it is asked (Kayenta's baseline). Error, rejection and prediction metrics use both.")
    metrics: list[Metric] = Field(
        default_factory=lambda: [Metric(name="error-rate", max_increase=0.01),
                                 Metric(name="latency-p95", max_ratio=1.2)],
        max_length=8, description="Metrics judged, each with its margin.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class RolloutStrategy(RoostModel):
    """How a change of spec.modelVersion reaches traffic."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "self.type != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
         "message": "a Canary strategy needs steps"},
        {"rule": "!has(self.steps) || self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
         "message": "canary step weights must not decrease"},
    ]})

    type: StrategyType = Field(default=StrategyType.REPLACE, description="Replace, Canary or Shadow.")
    steps: list[Step] | None = Field(
        default=None, max_length=32, description="Canary steps, in order.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    analysis: Analysis | None = Field(default=None, description="Live analysis of the candidate.")
    sticky_by: str | None = Field(
        default=None, pattern=r"^header:[A-Za-z0-9-]+$",
        description="header:<name>: requests with the same key always reach the same version.",
    )


class Logging(RoostModel):
    """What the request log keeps."""

    sample_rate: float = Field(default=1.0, ge=0, le=1,
                               description="Share of requests whose inputs/outputs are logged.")


class GatewayRef(RoostModel):
    """A Gateway API Gateway (gateway.networking.k8s.io/v1) an HTTPRoute attaches to."""

    name: ObjectName = Field(description="Gateway name.")
    namespace: ObjectName | None = Field(default=None, description="Its namespace (default: the Deployment's).")
    section_name: str | None = Field(default=None, max_length=253, description="A listener of the Gateway.")


class DeploymentSpec(RoostModel):
    """Desired state of a roost.dev Deployment."""

    model_version: ObjectName = Field(description="The ModelVersion to serve, in the same namespace.")
    replicas: int = Field(
        default=1, ge=0, le=100,
        description="Model server replicas of the serving version. During a canary on the Kubernetes backend "
                    "they are split by weight (candidate ceil(replicas x weight), at least 1; stable the rest, "
                    "at least 1); a shadow candidate gets as many as stable.")
    gateway_ref: GatewayRef | None = Field(
        default=None,
        description="Kubernetes backend with the Gateway API installed: the Gateway the HTTPRoute (exact weights, "
                    "RequestMirror for shadow) attaches to. Default: the stable Service itself (GAMMA mesh routing).")
    resources: Resources | None = Field(default=None, description="Compute per model server.")
    strategy: RolloutStrategy = Field(default_factory=RolloutStrategy, description="Rollout strategy.")
    logging: Logging = Field(default_factory=Logging, description="Request log settings.")
    paused: bool = Field(default=False, description="Hold the rollout at its current step.")


class ServedVersion(RoostModel):
    """A version that serves traffic."""

    model_version: str = Field(description="ModelVersion name.")
    digest: str | None = Field(default=None, description="sha256 of its artifact.")
    artifact_uri: str | None = Field(default=None, description="Where its artifact lives.")
    ready_replicas: int = Field(default=0, ge=0, description="Servers ready.")
    weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic.")
    step: int | None = Field(default=None, ge=0, description="Index of the current canary step.")
    start_time: str | None = Field(default=None, description="When the candidate started taking part (RFC 3339).")
    step_start_time: str | None = Field(default=None, description="When the current step started (RFC 3339).")
    mode: str | None = Field(default=None, description="Canary or Shadow, for the candidate.")
    baseline_weight: int | None = Field(
        default=None, ge=0, le=100,
        description="Percent of traffic to the baseline, a fresh copy of stable the candidate's latency is "
                    "compared with (unset: no baseline runs in this rollout).")


class DeploymentStatus(common.CommonStatus):
    """Observed state of a roost.dev Deployment."""

    url: str | None = Field(default=None, description="Stable inference URL (KServe V1 and V2 under it).")
    stable: ServedVersion | None = Field(default=None, description="The version serving by default.")
    canary: ServedVersion | None = Field(default=None, description="The candidate under analysis.")
    analysis: dict[str, Any] | None = Field(
        default=None, description="The latest evidence per metric.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    rollback: dict[str, Any] | None = Field(
        default=None, description="The last rollback: version, digest, time, reason and evidence.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    promotion: dict[str, Any] | None = Field(
        default=None, description="The last promotion: version, digest, time, how and evidence.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    backend: dict[str, Any] | None = Field(
        default=None, description="Where the servers run (ports or object names).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


KIND = common.KindInfo(
    kind="Deployment",
    plural="deployments",
    short_names=("rdeploy", "mdeploy"),
    spec=DeploymentSpec,
    status=DeploymentStatus,
    printer_columns=(
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Serving", "type": "string", "jsonPath": ".status.stable.modelVersion"},
        {"name": "Canary", "type": "string", "jsonPath": ".status.canary.modelVersion"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canary.weight"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    description="Serving of a ModelVersion behind a stable URL, with canary/shadow rollouts.",
)
