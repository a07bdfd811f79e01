"""Segmentation accuracy against reference spans (ground truth of sample recordings, or human labels)."""

from __future__ import annotations

import numpy as np


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
