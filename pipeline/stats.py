"""Feature statistics: exact mergeable moments, and quantile summaries that merge with a bounded rank error.

A QuantileSummary keeps the values at SUMMARY_POINTS + 1 evenly spaced ranks of the data it saw (exact
order statistics, per dimension). Its CDF is within 1/SUMMARY_POINTS of the true one; a count-weighted
mixture of summaries stays within the same bound, so merged quantiles have rank error <= 1/SUMMARY_POINTS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.lerobot import DEPTH_MAX_MM

SUMMARY_POINTS = 2000  # rank error of merged quantiles <= 1 / 2000 = 0.0005


@dataclass
class Moments:
    count: int
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from the mean
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> "Moments":
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        mean = x.mean(axis=0)
        return cls(len(x), mean, ((x - mean) ** 2).sum(axis=0), x.min(axis=0), x.max(axis=0))

    def merge(self, o: "Moments") -> "Moments":
        """Chan et al.'s parallel update: exact, order-independent up to rounding."""
        n = self.count + o.count
        delta = o.mean - self.mean
        return Moments(n, self.mean + delta * o.count / n, self.m2 + o.m2 + delta**2 * self.count * o.count / n,
                       np.minimum(self.min, o.min), np.maximum(self.max, o.max))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count)


@dataclass
class QuantileSummary:
    count: int
    points: np.ndarray  # (SUMMARY_POINTS + 1, D): values at ranks 0, 1/P, ..., 1

    @classmethod
    def of(cls, x: np.ndarray) -> "QuantileSummary":
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        return cls(len(x), np.quantile(x, np.linspace(0, 1, SUMMARY_POINTS + 1), axis=0, method="inverted_cdf"))

    @staticmethod
    def merge_all(parts: list["QuantileSummary"]) -> "QuantileSummary":
        total = sum(p.count for p in parts)
        ranks = np.linspace(0, 1, SUMMARY_POINTS + 1)
        dims = parts[0].points.shape[1]
        points = np.empty((SUMMARY_POINTS + 1, dims))
        for d in range(dims):
            # every point stands for count/(P+1) values: a weighted sample of the mixture
            values = np.concatenate([p.points[:, d] for p in parts])
            weights = np.concatenate([np.full(SUMMARY_POINTS + 1, p.count / (SUMMARY_POINTS + 1)) for p in parts])
            order = np.argsort(values, kind="stable")
            cdf = np.cumsum(weights[order]) / total
            idx = np.minimum(np.searchsorted(cdf, ranks, side="left"), len(cdf) - 1)
            points[:, d] = values[order][idx]
        return QuantileSummary(total, points)

    def quantile(self, q: float) -> np.ndarray:
        return self.points[int(round(q * SUMMARY_POINTS))]


class StreamingQuantiles:
    """Quantiles over a stream of row blocks in bounded memory: exact while the rows fit one buffer (every dataset
    under BUFFER_ROWS frames), else buffers summarized as they fill and merged at the end (rank error <= 1/P),
    with a second merge level past MAX_SUMMARIES buffers (rank error <= 2/P)."""

    BUFFER_ROWS, MAX_SUMMARIES = 2_000_000, 256

    def __init__(self):
        self.buffer: list[np.ndarray] = []
        self.rows = 0
        self.summaries: list[QuantileSummary] = []

    def add(self, x: np.ndarray) -> None:
        self.buffer.append(np.asarray(x, np.float64).reshape(len(x), -1))
        self.rows += len(x)
        if self.rows >= self.BUFFER_ROWS:
            self.summaries.append(QuantileSummary.of(np.concatenate(self.buffer)))
            self.buffer, self.rows = [], 0
            if len(self.summaries) >= self.MAX_SUMMARIES:
                self.summaries = [QuantileSummary.merge_all(self.summaries)]

    def quantile(self, q: float) -> np.ndarray:
        if not self.summaries:
            return np.quantile(np.concatenate(self.buffer), q, axis=0)
        parts = self.summaries + ([QuantileSummary.of(np.concatenate(self.buffer))] if self.buffer else [])
        return QuantileSummary.merge_all(parts).quantile(q)


def feature_stats(x: np.ndarray, quantiles: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Exact per-dimension stats of one array (rows = frames), in lerobot's stats.json key names."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    out = {"min": x.min(axis=0), "max": x.max(axis=0), "mean": x.mean(axis=0), "std": x.std(axis=0),
           "count": np.array([len(x)])}
    for q in quantiles:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0)
    return out


def image_stats(frames: list[np.ndarray], quantiles: tuple[float, ...]) -> dict[str, np.ndarray]:
    """lerobot-style image stats: per channel over the pixels of sampled uint8 RGB frames, in [0, 1], shaped
    (3, 1, 1); count = number of sampled frames. Exact, from a 256-bin histogram per channel."""
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames])
    values = np.arange(256) / 255.0
    out = {k: np.empty(3) for k in ("min", "max", "mean", "std", *(f"q{int(round(q * 100)):02d}" for q in quantiles))}
    for c in range(3):
        hist = np.bincount(pixels[:, c], minlength=256)
        n, cdf = hist.sum(), np.cumsum(hist)
        present = np.flatnonzero(hist)
        mean = hist @ values / n
        out["min"][c], out["max"][c] = values[present[0]], values[present[-1]]
        out["mean"][c], out["std"][c] = mean, np.sqrt(hist @ (values - mean) ** 2 / n)
        for q in quantiles:  # numpy's default (linear) quantile, read off the histogram
            pos = q * (n - 1)
            lo, hi = np.searchsorted(cdf, np.floor(pos), side="right"), np.searchsorted(cdf, np.ceil(pos), side="right")
            out[f"q{int(round(q * 100)):02d}"][c] = values[lo] + (pos - np.floor(pos)) * (values[hi] - values[lo])
    return {**{k: v.reshape(3, 1, 1) for k, v in out.items()}, "count": np.array([len(frames)])}


def depth_stats(frames: list[np.ndarray], quantiles: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Stats of sampled depth frames (uint16 mm) in the units a loader sees them (mm / DEPTH_MAX_MM, in [0, 1]), shaped
    (3, 1, 1) like an image's so that lerobot's stats aggregation accepts them; count = number of frames."""
    x = np.concatenate([f.ravel() for f in frames]).astype(np.float64) / DEPTH_MAX_MM
    out = {"min": x.min(), "max": x.max(), "mean": x.mean(), "std": x.std(),
           **{f"q{int(round(q * 100)):02d}": np.quantile(x, q) for q in quantiles}}
    return {**{k: np.full((3, 1, 1), v) for k, v in out.items()}, "count": np.array([len(frames)])}
