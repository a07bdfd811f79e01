"""Per-frame aggregates over exported LeRobot datasets (`vla-data stats frames DATASETS`), one pass over every frame
with Dask: per-joint state histograms, joint-limit violations, the action-vs-state lag and frame-rate/gap checks.

Each partition of data/*/*.parquet (read with only the columns these need) becomes a small Partial: histogram
counts, violations, the totals of the episodes it holds whole, and for the episodes at its two ends their sums and
the few rows next to the boundary. Partials merge in row order, joining an episode cut by a boundary from its two
halves, so the result is exact and memory stays flat however many shards there are. Rows are taken in `index`
order, as the v3.0 contract has them: an episode's rows are consecutive and in frame order.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from pipeline import storage
from pipeline.catalog import joint_limits
from schemas.robot import load_robot

log = logging.getLogger(__name__)

STATE, ACTION = "observation.state", "action"
COLUMNS = [STATE, ACTION, "timestamp", "frame_index", "episode_index"]
BINS = 20
MAX_LAG = 10  # frames
GAP = 1.5  # a timestamp step longer than GAP / fps is a gap: at least one frame missing
CHUNK_ROWS = 65_536  # rows summarized at a time inside a partition: bounds the float64 temporaries
STILL = 1e-9  # a joint whose variance in an episode is below STILL * (mean² + 1) does not move: no lag vote
MIN_PAIRS = 3
FAN_IN = 8  # partials merged per reduction task
DASK_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


@dataclass(frozen=True)
class Dataset:
    """One exported dataset, as the aggregates see it."""

    name: str
    fps: float
    joints: tuple[str, ...]
    limits: np.ndarray  # (D, 2) lower, upper from the robot config; NaN where it declares none
    files: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """What every partition task needs."""

    fps: float
    edges: np.ndarray  # (D, bins + 1) histogram bin edges per joint
    limits: np.ndarray  # (D, 2)
    max_lag: int


@dataclass
class Rows:
    """A few consecutive rows of one episode."""

    frame: np.ndarray
    state: np.ndarray  # (n, D) float64
    action: np.ndarray

    def __getitem__(self, s: slice) -> Rows:
        return Rows(self.frame[s], self.state[s], self.action[s])

    def __add__(self, o: Rows) -> Rows:
        return Rows(*(np.concatenate([getattr(self, f.name), getattr(o, f.name)]) for f in fields(self)))


@dataclass
class Runs:
    """Sums over runs of consecutive rows of one episode each, as arrays with one entry per run."""

    episode: np.ndarray
    frames: np.ndarray
    first_frame: np.ndarray
    last_frame: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray
    breaks: np.ndarray  # steps whose frame_index does not advance by exactly 1
    gaps: np.ndarray  # timestamp steps longer than GAP / fps
    max_step: np.ndarray  # longest timestamp step (0 for a single row)
    max_jitter: np.ndarray  # largest |timestamp step - 1 / fps|
    sums: np.ndarray  # (R, 6, max_lag + 1, D): see lag_sums

    def __getitem__(self, i) -> Runs:
        return Runs(*(getattr(self, f.name)[i] for f in fields(self)))

    @staticmethod
    def concat(parts: list[Runs]) -> Runs:
        return Runs(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Runs)))


@dataclass
class Edge:
    """The first or last episode of a span of rows, which may go on across the span's boundary: its sums, and its
    max_lag rows at either end (the only ones a lag pair across the boundary can use)."""

    run: Runs  # one entry
    head: Rows
    tail: Rows


@dataclass
class Totals:
    """Episodes known to be whole."""

    votes: np.ndarray  # (D, max_lag + 1): episodes whose best lag for the joint is each lag
    episodes: int = 0
    frames: int = 0
    steps: int = 0
    span_s: float = 0.0  # sum of last - first timestamp
    gaps: int = 0
    max_step_s: float = 0.0
    max_jitter_s: float = 0.0
    episodes_with_gaps: int = 0
    noncontiguous: int = 0
    flagged: tuple[dict, ...] = ()  # episodes with gaps or a non-contiguous frame_index

    def __add__(self, o: Totals) -> Totals:
        maxed = {"max_step_s", "max_jitter_s"}
        return Totals(**{f.name: max(getattr(self, f.name), getattr(o, f.name)) if f.name in maxed
                         else getattr(self, f.name) + getattr(o, f.name) for f in fields(self)})


@dataclass
class Partial:
    """The summary of a span of consecutive rows."""

    hist: np.ndarray  # (D, bins)
    below: np.ndarray  # (D,) samples under the lower limit
    above: np.ndarray  # (D,) samples over the upper limit
    totals: Totals
    edges: list[Edge]  # the span's first and last episode; one when it holds one episode, none when empty


# ---- one span of rows -----------------------------------------------------------------------------------------

def list_column(column: pd.Series) -> pa.ChunkedArray:
    """A fixed-size-list column as the arrow data behind it (no copy)."""
    arr = pa.array(column)
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def vectors(lists: pa.ChunkedArray, rows: slice) -> np.ndarray:
    """Some rows of a fixed-size-list column as an (n, D) float64 array: converted a chunk at a time, so a
    partition's vectors are never all in float64 at once."""
    arr = lists.slice(rows.start, rows.stop - rows.start).combine_chunks()
    return arr.flatten().to_numpy().reshape(len(arr), arr.type.list_size).astype(np.float64)


def chunks(n: int, chunk_rows: int) -> list[slice]:
    return [slice(i, min(i + chunk_rows, n)) for i in range(0, max(n, 1), chunk_rows)]


def histogram(state: np.ndarray, spec: Spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts per bin of the samples within each joint's edges (the last bin closed, as numpy's), and the samples
    under / over the limits."""
    bins = spec.edges.shape[1] - 1
    hist = np.zeros((state.shape[1], bins), np.int64)
    for d, e in enumerate(spec.edges):
        x = state[:, d]
        x = x[(x >= e[0]) & (x <= e[-1])]
        hist[d] = np.bincount(np.minimum(np.searchsorted(e, x, side="right") - 1, bins - 1), minlength=bins)
    return hist, (state < spec.limits[:, 0]).sum(0), (state > spec.limits[:, 1]).sum(0)


def pair_terms(a: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """a, s, a², s², as of pairs (action at frame f, state at frame f + lag): with the pair count, sums of these
    give Pearson's r, and they add up, so an episode cut by a boundary merges exactly."""
    return a, s, a * a, s * s, a * s


def lag_sums(key: np.ndarray, rows: Rows, starts: np.ndarray, max_lag: int) -> np.ndarray:
    """(R, 6, max_lag + 1, D) sums per run of the pairs inside these rows: count, then pair_terms. Pairs are matched
    by frame_index (key = episode, frame), so a dropped frame leaves its pairs out rather than misaligning the rest."""
    n, dims = rows.state.shape
    a, s = rows.action.T.copy(), rows.state.T.copy()  # (D, n): numpy reduces the last axis fastest
    order = None if (np.diff(key) > 0).all() else np.argsort(key, kind="stable")
    out = np.empty((len(starts), 6, max_lag + 1, dims))
    for lag in range(max_lag + 1):
        j = np.minimum(np.searchsorted(key, key + lag, sorter=order), n - 1)
        j = j if order is None else order[j]
        paired = (key[j] == key + lag).astype(np.float64)
        out[:, 0, lag] = np.add.reduceat(paired, starts)[:, None]
        for q, term in enumerate(pair_terms(a * paired, s[:, j] * paired), 1):
            out[:, q, lag] = np.add.reduceat(term, starts, axis=1).T
    return out


def per_run(values: np.ndarray, same: np.ndarray, starts: np.ndarray, ufunc: np.ufunc, fill: float) -> np.ndarray:
    """Reduces a value per step (row i to i + 1) over each run's steps; steps between episodes don't count."""
    v = np.full(len(same) + 1, fill, np.float64)
    v[:-1] = np.where(same, values, fill)
    return ufunc.reduceat(v, starts)


def summarize_rows(episode: np.ndarray, frame: np.ndarray, ts: np.ndarray, rows: Rows, spec: Spec) -> Partial:
    hist, below, above = histogram(rows.state, spec)
    if not len(episode):
        return Partial(hist, below, above, no_totals(spec, rows.state.shape[1]), [])
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    ends = np.r_[starts[1:], len(episode)]
    same, step = episode[1:] == episode[:-1], np.diff(ts)
    runs = Runs(
        episode[starts], ends - starts, frame[starts], frame[ends - 1], ts[starts], ts[ends - 1],
        per_run(np.diff(frame) != 1, same, starts, np.add, 0).astype(np.int64),
        per_run(step > GAP / spec.fps, same, starts, np.add, 0).astype(np.int64),
        per_run(step, same, starts, np.maximum, 0.0), per_run(np.abs(step - 1 / spec.fps), same, starts, np.maximum, 0.0),
        lag_sums(episode * 2**32 + frame, rows, starts, spec.max_lag))
    k = spec.max_lag
    edges = [Edge(runs[[i]], rows[starts[i]:starts[i] + k], rows[max(ends[i] - k, starts[i]):ends[i]])
             for i in sorted({0, len(starts) - 1})]
    whole = runs[1:-1]
    totals = finish(whole, spec) if len(whole.episode) else no_totals(spec, rows.state.shape[1])
    return Partial(hist, below, above, totals, edges)


def summarize_partition(df: pd.DataFrame, spec: Spec, chunk_rows: int = CHUNK_ROWS) -> Partial:
    """One partition, CHUNK_ROWS rows at a time, merged in order."""
    episode, frame = (df[c].to_numpy(np.int64) for c in ("episode_index", "frame_index"))
    ts = df["timestamp"].to_numpy(np.float64)
    state, action = list_column(df[STATE]), list_column(df[ACTION])
    parts = (summarize_rows(episode[s], frame[s], ts[s], Rows(frame[s], vectors(state, s), vectors(action, s)), spec)
             for s in chunks(len(df), chunk_rows))
    return functools.reduce(functools.partial(merge, spec=spec), parts)


# ---- merging spans --------------------------------------------------------------------------------------------

def cross_sums(left: Rows, right: Rows, max_lag: int) -> np.ndarray:
    """(6, max_lag + 1, D) sums of the pairs with the action in `left` and the state in `right`."""
    out = np.zeros((6, max_lag + 1, left.state.shape[1]))
    lag = right.frame[None, :] - left.frame[:, None]
    for k in range(1, max_lag + 1):
        i, j = np.nonzero(lag == k)
        out[0, k] = len(i)
        out[1:, k] = [t.sum(0) for t in pair_terms(left.action[i], right.state[j])]
    return out


def join(x: Edge, y: Edge, spec: Spec) -> Edge:
    """Two consecutive runs of one episode as one; the step between them is checked like any other."""
    a, b, k = x.run, y.run, spec.max_lag
    step = b.first_ts - a.last_ts
    run = Runs(a.episode, a.frames + b.frames, a.first_frame, b.last_frame, a.first_ts, b.last_ts,
               a.breaks + b.breaks + (b.first_frame - a.last_frame != 1),
               a.gaps + b.gaps + (step > GAP / spec.fps), np.maximum.reduce([a.max_step, b.max_step, step]),
               np.maximum.reduce([a.max_jitter, b.max_jitter, np.abs(step - 1 / spec.fps)]),
               a.sums + b.sums + cross_sums(x.tail, y.head, k)[None])
    return Edge(run, (x.head + y.head)[:k], (x.tail + y.tail)[-k:])


def merge(a: Partial, b: Partial, spec: Spec) -> Partial:
    """Two consecutive spans as one: runs of the episode at their boundary join; episodes no longer at an end are
    whole and finish."""
    seq = a.edges + b.edges
    if a.edges and b.edges and a.edges[-1].run.episode[0] == b.edges[0].run.episode[0]:
        seq = a.edges[:-1] + [join(a.edges[-1], b.edges[0], spec)] + b.edges[1:]
    totals = a.totals + b.totals
    if len(seq) > 2:
        totals = totals + finish(Runs.concat([e.run for e in seq[1:-1]]), spec)
    return Partial(a.hist + b.hist, a.below + b.below, a.above + b.above, totals,
                   seq[:1] + seq[-1:] if len(seq) > 1 else seq)


def merge_all(parts: list[Partial | pd.Series], spec: Spec) -> Partial:
    return functools.reduce(functools.partial(merge, spec=spec), map(unbox, parts))


# ---- finishing whole episodes ---------------------------------------------------------------------------------

def no_totals(spec: Spec, dims: int) -> Totals:
    return Totals(np.zeros((dims, spec.max_lag + 1), np.int64))


def best_lags(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, D) lag maximizing |Pearson r| of action(f) and state(f + lag) per episode and joint, and whether the
    episode votes: every lag has MIN_PAIRS pairs and both signals move. |r| because some grippers command in the
    opposite polarity and other units than they report (AgiBot: action 1 = closed, state = mm open)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n, sa, ss, saa, sss, sas = np.moveaxis(sums, 1, 0)
        ma, ms = sa / n, ss / n
        va, vs = saa / n - ma**2, sss / n - ms**2
        moving = (n >= MIN_PAIRS) & (va > STILL * (ma**2 + 1)) & (vs > STILL * (ms**2 + 1))
        r = np.abs(sas / n - ma * ms) / np.sqrt(va * vs)
    return np.where(moving, r, -1).argmax(axis=1), moving.all(axis=1)


def finish(runs: Runs, spec: Spec) -> Totals:
    best, votes_ok = best_lags(runs.sums)
    dims, lags = runs.sums.shape[3], spec.max_lag + 1
    joint = np.broadcast_to(np.arange(dims), best.shape)
    votes = np.bincount((joint * lags + best)[votes_ok], minlength=dims * lags).reshape(dims, lags)
    noncontiguous = (runs.breaks > 0) | (runs.first_frame != 0)
    flagged = tuple({"episode_index": int(runs.episode[i]), "frames": int(runs.frames[i]),
                     "first_frame": int(runs.first_frame[i]), "last_frame": int(runs.last_frame[i]),
                     "gaps": int(runs.gaps[i]), "max_step_s": float(runs.max_step[i]),
                     "noncontiguous": bool(noncontiguous[i])}
                    for i in np.flatnonzero((runs.gaps > 0) | noncontiguous))
    return Totals(votes, len(runs.episode), int(runs.frames.sum()), int((runs.frames - 1).sum()),
                  float((runs.last_ts - runs.first_ts).sum()), int(runs.gaps.sum()), float(runs.max_step.max()),
                  float(runs.max_jitter.max()), int((runs.gaps > 0).sum()), int(noncontiguous.sum()), flagged)


def median_of_counts(counts: np.ndarray) -> float | None:
    """np.median of the values 0..len-1 repeated counts[i] times."""
    n = int(counts.sum())
    if not n:
        return None
    cum = np.cumsum(counts)
    lo, hi = np.searchsorted(cum, [(n - 1) // 2, n // 2], side="right")
    return (lo + hi) / 2


SCHEMAS = {
    "histograms": pa.schema([("dataset", pa.string()), ("joint", pa.string()), ("edges_from", pa.string()),
                             ("lower", pa.float64()), ("upper", pa.float64()), ("counts", pa.list_(pa.int64()))]),
    "joint_limits": pa.schema([("dataset", pa.string()), ("joint", pa.string()), ("lower_limit", pa.float64()),
                               ("upper_limit", pa.float64()), ("samples", pa.int64()), ("below", pa.int64()),
                               ("above", pa.int64()), ("out_of_range_fraction", pa.float64())]),
    "action_lag": pa.schema([("dataset", pa.string()), ("joint", pa.string()), ("episodes", pa.int64()),
                             ("lag_frames", pa.float64()), ("lag_s", pa.float64()), ("votes", pa.list_(pa.int64()))]),
    "frame_rate": pa.schema([("dataset", pa.string()), ("fps", pa.float64()), ("episodes", pa.int64()),
                             ("frames", pa.int64()), ("measured_fps", pa.float64()), ("max_jitter_s", pa.float64()),
                             ("gaps", pa.int64()), ("max_step_s", pa.float64()), ("episodes_with_gaps", pa.int64()),
                             ("noncontiguous_episodes", pa.int64())]),
    "gaps": pa.schema([("dataset", pa.string()), ("episode_index", pa.int64()), ("frames", pa.int64()),
                       ("first_frame", pa.int64()), ("last_frame", pa.int64()), ("gaps", pa.int64()),
                       ("max_step_s", pa.float64()), ("noncontiguous", pa.bool_())]),
}


def section_rows(ds: Dataset, spec: Spec, p: Partial | pd.Series) -> dict[str, list[dict]]:
    """A dataset's rows of every section, from the partial of all its frames."""
    p = unbox(p)
    t = p.totals + finish(Runs.concat([e.run for e in p.edges]), spec) if p.edges else p.totals
    declared = ~np.isnan(ds.limits).any(axis=1)
    return {
        "histograms": [{"dataset": ds.name, "joint": j, "edges_from": "limits" if declared[d] else "data",
                        "lower": float(spec.edges[d, 0]), "upper": float(spec.edges[d, -1]),
                        "counts": p.hist[d].tolist()} for d, j in enumerate(ds.joints)],
        "joint_limits": [{"dataset": ds.name, "joint": j, "lower_limit": float(ds.limits[d, 0]),
                          "upper_limit": float(ds.limits[d, 1]), "samples": t.frames, "below": int(p.below[d]),
                          "above": int(p.above[d]), "out_of_range_fraction": float(p.below[d] + p.above[d]) / max(t.frames, 1)}
                         for d, j in enumerate(ds.joints) if declared[d]],
        "action_lag": [{"dataset": ds.name, "joint": j, "episodes": int(t.votes[d].sum()),
                        "lag_frames": (m := median_of_counts(t.votes[d])), "lag_s": None if m is None else m / ds.fps,
                        "votes": t.votes[d].tolist()} for d, j in enumerate(ds.joints)],
        "frame_rate": [{"dataset": ds.name, "fps": ds.fps, "episodes": t.episodes, "frames": t.frames,
                        "measured_fps": t.steps / t.span_s if t.span_s else None, "max_jitter_s": t.max_jitter_s,
                        "gaps": t.gaps, "max_step_s": t.max_step_s, "episodes_with_gaps": t.episodes_with_gaps,
                        "noncontiguous_episodes": t.noncontiguous}],
        "gaps": [{"dataset": ds.name, **row} for row in sorted(t.flagged, key=lambda r: r["episode_index"])],
    }


# ---- datasets, graphs and schedulers --------------------------------------------------------------------------

def exported_limits(info: dict, limits: list[dict]) -> dict[str, tuple[float, float]]:
    """Joint name -> (lower, upper) in the dataset's units: the robot config's limits, with the grippers' mapped
    to openness as the export writes them (info.json's gripper_convention)."""
    declared = {r["joint"]: (r["lower"], r["upper"]) for r in limits}
    if declared and "gripper_convention" in info:
        robot = load_robot(info["robot_type"])
        for g in robot.grippers.values():
            name = robot.state_names[g.state_index]
            if name in declared:
                declared[name] = tuple(sorted(float(g.openness(v)) for v in declared[name]))
    return declared


def find_datasets(path: str | Path) -> list[Dataset]:
    """The LeRobot datasets at PATH (one, or DATASETS/<name>/ as `vla-data export` writes them), a folder or an
    s3:// prefix; Dask's workers then read the shards from S3 themselves."""
    path = storage.absolute(path)
    listing = storage.list_files(path)
    prefixes = [""] if "meta/info.json" in listing else sorted(
        f[: -len("meta/info.json")] for f in listing if f.count("/") == 2 and f.endswith("/meta/info.json"))
    if not prefixes:
        raise FileNotFoundError(f"{path} holds no LeRobot datasets (DATASETS/<robot>/meta/info.json)")
    limits = joint_limits().to_pylist()
    found = []
    for prefix in prefixes:
        root = storage.join(path, prefix.rstrip("/")) if prefix else path
        info = storage.read_json(storage.join(root, "meta", "info.json"))
        joints = tuple(info["features"][STATE]["names"])
        if info["features"][ACTION]["shape"] != [len(joints)]:
            raise ValueError(f"{root}: action and state differ in size; the lag pairs them joint by joint")
        declared = exported_limits(info, [r for r in limits if r["robot"] == info["robot_type"]])
        files = tuple(storage.join(path, f) for f in sorted(listing)
                      if f.startswith(f"{prefix}data/") and f.endswith(".parquet") and f.count("/") == prefix.count("/") + 2)
        if not files:
            raise FileNotFoundError(f"{root} has no data/*/*.parquet")
        found.append(Dataset(root.rstrip("/").rsplit("/", 1)[-1], float(info["fps"]), joints,
                             np.array([declared.get(j, (np.nan, np.nan)) for j in joints], np.float64), files))
    return found


def read_frames(ds: Dataset, columns: list[str], blocksize) -> dd.DataFrame:
    """Local shards in partitions of `blocksize`; S3 ones through pyarrow's S3 filesystem (the endpoint from the
    environment, as everywhere), which Dask splits by file instead."""
    if not storage.is_remote(ds.files[0]):
        return dd.read_parquet(list(ds.files), columns=columns, dtype_backend="pyarrow", blocksize=blocksize)
    fs, _ = storage.resolve(ds.files[0])
    return dd.read_parquet([storage.resolve(f)[1] for f in ds.files], columns=columns, dtype_backend="pyarrow",
                           filesystem=fs)


def boxed(df: pd.DataFrame, func: Callable, *args) -> pd.Series:
    """func's result as a one-element Series: map_partitions wants pandas results."""
    return pd.Series([func(df, *args)], dtype=object)


def unbox(x):
    return x.iloc[0] if isinstance(x, pd.Series) else x


def per_partition(frames: dd.DataFrame, func: Callable, *args) -> list:
    """Delayed func(partition, *args) of every partition in order, boxed. map_partitions fuses each with its
    partition's read, so no partition waits in a worker's memory for its turn."""
    return frames.map_partitions(boxed, func, *args, meta=pd.Series(dtype=object), enforce_metadata=False).to_delayed()


def state_range(df: pd.DataFrame) -> np.ndarray:
    """(2, D) min and max of each joint's finite state samples (inf, -inf where there are none)."""
    state = list_column(df[STATE])
    out = np.array([[np.inf], [-np.inf]]).repeat(state.type.list_size, axis=1)
    for rows in chunks(len(df), CHUNK_ROWS):
        x = vectors(state, rows)
        finite = np.isfinite(x)
        out = np.stack([np.minimum(out[0], np.where(finite, x, np.inf).min(0, initial=np.inf)),
                        np.maximum(out[1], np.where(finite, x, -np.inf).max(0, initial=-np.inf))])
    return out


def widest(ranges: list[pd.Series]) -> np.ndarray:
    ranges = [unbox(r) for r in ranges]
    return np.stack([np.min([r[0] for r in ranges], 0), np.max([r[1] for r in ranges], 0)])


def data_range(ds: Dataset, blocksize):
    return dask.delayed(widest)(per_partition(read_frames(ds, [STATE], blocksize), state_range))


def bin_edges(ds: Dataset, bins: int, data: np.ndarray | None) -> np.ndarray:
    """(D, bins + 1): evenly between the joint limits where declared, else between the data's min and max
    (widened by 0.5 when those are equal, as numpy's histogram does)."""
    lo, hi = ds.limits[:, 0].copy(), ds.limits[:, 1].copy()
    free = np.isnan(lo)
    if free.any():
        lo[free], hi[free] = np.where(np.isfinite(data), data, 0)[:, free]
        flat = free & (lo >= hi)
        lo[flat], hi[flat] = lo[flat] - 0.5, hi[flat] + 0.5
    return np.linspace(lo, hi, bins + 1, axis=1)


def reduce_in_order(parts: list, spec: Spec):
    """A tree of merges that keeps the partitions' order."""
    while len(parts) > 1:
        parts = [dask.delayed(merge_all)(parts[i:i + FAN_IN], spec) for i in range(0, len(parts), FAN_IN)]
    return parts[0]


@contextmanager
def quiet(logger: str) -> Iterator[None]:
    """The logger at WARNING for a while: distributed narrates every start and stop of the cluster we make."""
    log_ = logging.getLogger(logger)
    level = log_.level
    log_.setLevel(max(logging.WARNING, level))
    try:
        yield
    finally:
        log_.setLevel(level)


def bar(total: int, progress: bool) -> tqdm:
    return tqdm(total=total, desc="partitions", unit="partition", disable=not progress or not total)


@contextmanager
def scheduler(address: str | None, workers: int, memory_limit: str, progress: bool) -> Iterator[tuple[str, Callable]]:
    """(description, compute): compute(objs, tracked) runs the delayed objs, advancing a progress bar as each of
    `tracked` (delayed objs depend on) finishes. On a new LocalCluster (address None), the Dask scheduler at a
    tcp:// (tls://, ...) address, or Ray: "ray" is the running Ray, RAY_ADDRESS or a new local one; any other
    address goes to ray.init (e.g. ray://head:10001)."""
    if address is None or address.startswith(DASK_SCHEMES):
        from distributed import Client, LocalCluster, as_completed

        def compute(objs: list, tracked: list) -> list:
            futures = client.compute(objs + tracked)
            with bar(len(tracked), progress) as b:
                for _ in as_completed(futures[len(objs):]):
                    b.update()
            return client.gather(futures[:len(objs)])

        with quiet("distributed"):
            # dashboard_address None leaves the dashboard off; the scheduler's plain HTTP routes get a free
            # loopback port instead of 8787.
            cluster = None if address else LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                host="127.0.0.1", dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            client = Client(address or cluster)
            try:
                yield address or f"a LocalCluster ({workers} workers, {memory_limit} each)", compute
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        return
    import ray
    from dask.diagnostics import Callback
    from ray.util.dask import ray_dask_get

    from jobs.runtime import init_ray

    def compute(objs: list, tracked: list) -> list:
        keys = {o.key for o in tracked}
        with bar(len(keys), progress) as b, Callback(posttask=lambda key, *_: key in keys and b.update()):
            return list(dask.compute(*objs, scheduler=ray_dask_get))

    started = not ray.is_initialized()
    init_ray(None if address == "ray" else address)
    try:
        yield f"Ray at {ray.get_runtime_context().gcs_address}", compute
    finally:
        if started:
            ray.shutdown()


def frame_stats(datasets: str | Path, address: str | None = None, bins: int = BINS, max_lag: int = MAX_LAG,
                blocksize: str | int | None = "default", workers: int = 2, memory_limit: str = "4GiB",
                progress: bool = True) -> dict[str, pa.Table]:
    """Section name -> table over every dataset at DATASETS: histograms, joint_limits, action_lag, frame_rate and
    gaps (the episodes with a gap or a non-contiguous frame_index). `blocksize` is read_parquet's partition size;
    workers and memory_limit size the LocalCluster started when there is no address."""
    if max_lag < 1 or bins < 1:
        raise ValueError("max_lag and bins must be at least 1")
    found = find_datasets(datasets)
    t0 = time.perf_counter()
    with scheduler(address, workers, memory_limit, progress) as (where, compute):
        needs_range = [ds for ds in found if np.isnan(ds.limits).any()]
        ranges = dict(zip([ds.name for ds in needs_range],
                          compute([data_range(ds, blocksize) for ds in needs_range], []))) if needs_range else {}
        specs = [Spec(ds.fps, bin_edges(ds, bins, ranges.get(ds.name)), ds.limits, max_lag) for ds in found]
        partials = [per_partition(read_frames(ds, COLUMNS, blocksize), summarize_partition, spec)
                    for ds, spec in zip(found, specs)]
        log.info("per-frame stats of %d datasets (%d partitions) on %s", len(found), sum(map(len, partials)), where)
        jobs = [dask.delayed(section_rows)(ds, spec, reduce_in_order(parts, spec))
                for ds, spec, parts in zip(found, specs, partials)]
        results = compute(jobs, [p for parts in partials for p in parts])
    log.info("per-frame stats done in %.1f s", time.perf_counter() - t0)
    return {name: pa.Table.from_pylist([row for r in results for row in r[name]], schema=schema)
            for name, schema in SCHEMAS.items()}
