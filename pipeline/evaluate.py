"""Segmentation accuracy against reference spans (ground truth of sample recordings, or human labels)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def boundary_f1(predicted: list[float], reference: list[float], tolerance: float) -> dict[str, float]:
    """Precision/recall/F1 of boundary times, matching each reference boundary to at most one predicted one
    within +-tolerance (greedy by distance)."""
    pairs = sorted((abs(p - r), i, j) for i, p in enumerate(predicted) for j, r in enumerate(reference)
                   if abs(p - r) <= tolerance)
    used_p, used_r = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
    tp = len(used_p)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(reference) if reference else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "matched": tp,
            "predicted": len(predicted), "reference": len(reference)}


def span_boundaries(spans: list[tuple[int, int]], fps: float) -> list[float]:
    """Distinct start/end times (s) of [start, end) frame spans."""
    return sorted({round(f / fps, 6) for a, b in spans for f in (a, b)})


def frame_precision_recall(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(predicted & reference))
    return {"precision": tp / max(1, int(predicted.sum())), "recall": tp / max(1, int(reference.sum())),
            "predicted": int(predicted.sum()), "reference": int(reference.sum())}


def catalog_accuracy(out: str | Path, reference: Callable[[dict], dict], tolerance: float = 0.3) -> dict[str, dict]:
    """Pooled static-frame precision/recall and subtask-boundary F1 per source format of a catalog.

    `reference(episode_row)` returns {"static_spans": [...], "subtasks": [...]} with start_frame/end_frame spans
    (ground truth of sample recordings, or human labels)."""
    out = Path(out)
    episodes = pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()
    clips = pq.read_table(out / "catalog" / "clips.parquet").to_pylist()
    totals: dict[str, np.ndarray] = {}
    for e in episodes:
        ref = reference(e)
        static = np.array(pq.read_table(e["frames_uri"], columns=["static"])["static"].to_pylist())
        truth = np.zeros_like(static)
        for s in ref["static_spans"]:
            truth[s["start_frame"]:s["end_frame"]] = True
        mine = [(c["start_frame"], c["end_frame"]) for c in clips if c["episode_id"] == e["episode_id"]]
        b = boundary_f1(span_boundaries(mine, e["fps"]),
                        span_boundaries([(s["start_frame"], s["end_frame"]) for s in ref["subtasks"]], e["fps"]),
                        tolerance)
        row = np.array([int((static & truth).sum()), int(static.sum()), int(truth.sum()),
                        b["matched"], b["predicted"], b["reference"], 1])
        totals[e["source_format"]] = totals.get(e["source_format"], 0) + row
    return {fmt: {"static_precision": tp / max(1, p), "static_recall": tp / max(1, r),
                  "boundary_f1": 2 * m / max(1, bp + br), "episodes": int(n)}
            for fmt, (tp, p, r, m, bp, br, n) in totals.items()}
