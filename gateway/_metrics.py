"""Prometheus text exposition (format 0.0.4) of the gateway's counters, served at GET /metrics."""

from __future__ import annotations

import bisect
from typing import Dict, List, Tuple

__all__ = ["Metrics"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
MAX_MODEL_LABELS = 64  # clients choose model names: bound the label set, the rest count as "_other"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.requests: Dict[Tuple[str, str], int] = {}
        self.rewrites: Dict[str, int] = {}
        self.refusals: Dict[str, int] = {}
        self.upstream_errors = 0
        self.client_disconnects = 0
        self.open_connections = 0
        self.buckets: List[int] = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self._models: set = set()

    def request(self, route: str, model: str) -> None:
        if model and model not in self._models:
            if len(self._models) >= MAX_MODEL_LABELS:
                model = "_other"
            else:
                self._models.add(model)
        key = (route, model)
        self.requests[key] = self.requests.get(key, 0) + 1

    def rewrite(self, reason: str) -> None:
        self.rewrites[reason] = self.rewrites.get(reason, 0) + 1

    def refusal(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def added_latency(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self) -> bytes:
        out = [
            "# HELP keepwarm_gateway_requests_total Requests received, by route and requested model.",
            "# TYPE keepwarm_gateway_requests_total counter",
        ]
        for (route, model), n in sorted(self.requests.items()):
            out.append(f'keepwarm_gateway_requests_total{{route="{_esc(route)}",model="{_esc(model)}"}} {n}')
        out += [
            "# HELP keepwarm_gateway_rewrites_total Request bodies rewritten by a policy, by rule.",
            "# TYPE keepwarm_gateway_rewrites_total counter",
        ]
        out += [f'keepwarm_gateway_rewrites_total{{reason="{_esc(r)}"}} {n}' for r, n in sorted(self.rewrites.items())]
        out += [
            "# HELP keepwarm_gateway_refusals_total Requests refused by a policy or a limit, by rule.",
            "# TYPE keepwarm_gateway_refusals_total counter",
        ]
        out += [f'keepwarm_gateway_refusals_total{{reason="{_esc(r)}"}} {n}' for r, n in sorted(self.refusals.items())]
        out += [
            "# HELP keepwarm_gateway_upstream_errors_total Requests that could not reach Ollama.",
            "# TYPE keepwarm_gateway_upstream_errors_total counter",
            f"keepwarm_gateway_upstream_errors_total {self.upstream_errors}",
            "# HELP keepwarm_gateway_client_disconnects_total Requests whose client left before the response ended.",
            "# TYPE keepwarm_gateway_client_disconnects_total counter",
            f"keepwarm_gateway_client_disconnects_total {self.client_disconnects}",
            "# HELP keepwarm_gateway_open_connections Client connections open now.",
            "# TYPE keepwarm_gateway_open_connections gauge",
            f"keepwarm_gateway_open_connections {self.open_connections}",
            "# HELP keepwarm_gateway_added_latency_seconds Time the gateway itself spent on a request "
            "(request in to upstream request out, plus upstream response head in to client response head out).",
            "# TYPE keepwarm_gateway_added_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, self.buckets):
            cumulative += n
            out.append(f'keepwarm_gateway_added_latency_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        out.append(f'keepwarm_gateway_added_latency_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        out.append(f"keepwarm_gateway_added_latency_seconds_sum {self.latency_sum:.9f}")
        out.append(f"keepwarm_gateway_added_latency_seconds_count {self.latency_count}")
        return ("\n".join(out) + "\n").encode()
