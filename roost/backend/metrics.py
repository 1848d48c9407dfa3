"""Prometheus metrics for /metrics, in the text exposition format (version 0.0.4).

Written here rather than with prometheus_client, which is not a dependency:
the backend needs counters, gauges read at scrape time and histograms, nothing more.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. Latency spans one cached reply (~ms) to a long CPU generation (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.label_names):
            raise ValueError(f"metric {self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:
        raise NotImplementedError(f"{type(self).__name__} must list its samples")


class Counter(_Metric):
    """A value that only goes up, one per label combination."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(_Metric):
    """A value read from ``read`` at scrape time (queue depth, running batch)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        super().__init__(name, help)
        self._read = read

    def samples(self) -> Iterable[str]:
        yield f"{self.name} {_number(self._read())}"


class Histogram(_Metric):
    """Counts of observations per bucket, plus their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._series: dict[Labels, list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1  # stored per bucket; made cumulative when rendered
                    break
            series[-2] += value
            series[-1] += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return int(series[-1]) if series else 0

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, series in items:
            running = 0.0
            for bound, n in zip(self.buckets, series, strict=False):
                running += n
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(running)}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {_number(series[-1])}"


class BackendMetrics:
    """The backend's metrics; ``stats`` reads the engine's queue at scrape time."""

    def __init__(self, stats: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats
        self.in_flight = 0
        self.requests = Counter("roost_requests_total", "HTTP requests by endpoint and status code.",
                                ("endpoint", "status"))
        self.prompt_tokens = Counter("roost_prompt_tokens_total", "Prompt tokens processed.", ("model",))
        self.completion_tokens = Counter("roost_completion_tokens_total", "Completion tokens generated.", ("model",))
        self.latency = Histogram("roost_request_latency_seconds", "Time from request to the last byte sent.",
                                 LATENCY_BUCKETS, ("endpoint",))
        self.ttft = Histogram("roost_time_to_first_token_seconds", "Time from request to the first generated token.",
                              TTFT_BUCKETS, ("endpoint",))
        self._metrics: list[_Metric] = [
            self.requests,
            self.prompt_tokens,
            self.completion_tokens,
            Gauge("roost_requests_waiting", "Engine requests queued for a slot (queue depth).",
                  lambda: self._stats()[1]),
            Gauge("roost_requests_running", "Engine requests in the running batch.", lambda: self._stats()[0]),
            Gauge("roost_http_requests_in_flight", "HTTP requests being handled now.", lambda: self.in_flight),
            self.latency,
            self.ttft,
        ]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
