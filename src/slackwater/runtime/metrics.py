"""Prometheus metrics of one process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from slackwater.domain.batch import Batch
from slackwater.domain.request import Result


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "slackwater_queue_depth",
            "Requests waiting to run, per model and state (pending, leased, retrying).",
            ["model", "state"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "slackwater_sessions",
            "Agent sessions not ended, per agent and status (queued, running, and waiting:"
            " holding no compute).",
            ["agent", "status"],
            registry=self.registry,
        )
        self.requests = Counter(
            "slackwater_requests",
            "Requests recorded, per model and outcome (success, error).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "slackwater_tokens",
            "Tokens processed, per model and kind (prompt, completion).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.retries = Counter(
            "slackwater_retries",
            "Requests put aside to retry after a retryable error, per model.",
            ["model"],
            registry=self.registry,
        )
        self.lease_expiries = Counter(
            "slackwater_lease_expiries",
            "Requests returned to the queue because their worker's lease ran out.",
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "slackwater_batch_duration_seconds",
            "Time from a batch's creation to its final status, per final status.",
            ["status"],
            buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400),
            registry=self.registry,
        )

        self.prediction_rows = Counter(
            "slackwater_prediction_rows",
            "Rows asked of a classical model by key, per model and where the answer came"
            " from: precomputed (a dataset job's), model (not precomputed or stale: run"
            " online), missing (a lookup of a key with no precomputed prediction).",
            ["model", "source"],
            registry=self.registry,
        )

    def looked_up(self, model: str, precomputed: int, online: int, missing: int = 0) -> None:
        for source, rows in (("precomputed", precomputed), ("model", online), ("missing", missing)):
            if rows:
                self.prediction_rows.labels(model, source).inc(rows)

    def lookups(self) -> dict[str, dict[str, int]]:
        """Rows asked by key since this process started: model -> source -> rows."""
        found: dict[str, dict[str, int]] = {}
        for metric in self.prediction_rows.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    model, source = sample.labels["model"], sample.labels["source"]
                    found.setdefault(model, {})[source] = int(sample.value)
        return found

    def recorded(self, model: str, results: list[Result]) -> None:
        success = sum(1 for r in results if r.outcome.ok)
        if success:
            self.requests.labels(model, "success").inc(success)
        if len(results) > success:
            self.requests.labels(model, "error").inc(len(results) - success)
        prompt = sum(r.outcome.usage.prompt_tokens for r in results)
        completion = sum(r.outcome.usage.completion_tokens for r in results)
        if prompt:
            self.tokens.labels(model, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(model, "completion").inc(completion)

    def finished(self, batch: Batch) -> None:
        ended = batch.completed_at or batch.expired_at or batch.cancelled_at or batch.failed_at
        if ended is not None:
            seconds = (ended - batch.created_at).total_seconds()
            self.batch_seconds.labels(batch.status.value).observe(seconds)

    def set_queue_depth(self, depth: dict[tuple[str, str], int]) -> None:
        self.queue_depth.clear()
        for (model, state), count in depth.items():
            self.queue_depth.labels(model, state).set(count)

    def set_sessions(self, counts: dict[tuple[str, str], int]) -> None:
        self.sessions.clear()
        for (agent, status), count in counts.items():
            self.sessions.labels(agent, status).set(count)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
