"""Where proposals live: one JSON record per (recording, proposal id) under OUT/_proposals/<episode_id>/, the
recording's current choice in current.json, and the consolidated tables OUT/catalog/proposals.parquet and
proposal_spans.parquet (rebuilt from the records after every run, published atomically).

The proposal id is the cache key, so a record doubles as the cache entry: a rerun reuses it unless it is
pending, and a retry overwrites the same file, so nothing is ever duplicated. Older versions stay."""

from __future__ import annotations

from annotators.proposal import Proposal
from pipeline import storage
from pipeline.catalog import publish_tables, write_json_atomic
from schemas.proposals import SORT_KEYS, TABLES, with_version

PROPOSALS_DIR = "_proposals"
CURRENT = "current.json"


def _folder(out: str, episode_id: str) -> str:
    return storage.join(out, PROPOSALS_DIR, episode_id)


def load(out: str, episode_id: str, proposal_id: str) -> Proposal | None:
    path = storage.join(_folder(out, episode_id), f"{proposal_id}.json")
    return Proposal.from_json(storage.read_json(path)) if storage.exists(path) else None


def reuse(out: str, episode_id: str, proposal_id: str) -> Proposal | None:
    """The stored answer for this cache key when it is finished (not pending), made current again."""
    old = load(out, episode_id, proposal_id)
    if old is None or old.status == "pending":
        return None
    save(out, old)
    return old


def save(out: str, p: Proposal) -> None:
    """Writes the record and makes it the recording's current proposal."""
    folder = _folder(out, p.episode_id)
    write_json_atomic(storage.join(folder, f"{p.proposal_id}.json"), p.to_json())
    write_json_atomic(storage.join(folder, CURRENT), {"proposal_id": p.proposal_id})


def build_tables(out: str) -> dict[str, str]:
    rows = {name: [] for name in TABLES}
    root = storage.join(out, PROPOSALS_DIR)
    by_episode: dict[str, list[str]] = {}
    for rel in sorted(storage.list_files(root)):
        if rel.count("/") == 1 and rel.endswith(".json"):
            by_episode.setdefault(rel.split("/")[0], []).append(rel.split("/")[1])
    for episode_id, names in by_episode.items():
        folder = storage.join(root, episode_id)
        current = storage.read_json(storage.join(folder, CURRENT))["proposal_id"] if CURRENT in names else None
        for name in names:
            if name == CURRENT:
                continue
            rec = storage.read_json(storage.join(folder, name))
            spans = rec.pop("spans")
            rows["proposals"].append({**rec, "is_current": rec["proposal_id"] == current})
            rows["proposal_spans"] += [{"proposal_id": rec["proposal_id"], "episode_id": rec["episode_id"],
                                        "span_index": i, **s} for i, s in enumerate(spans)]
    return publish_tables(out, rows, {name: with_version(schema) for name, schema in TABLES.items()}, SORT_KEYS)
