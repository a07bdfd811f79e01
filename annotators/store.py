"""Where proposals live: one JSON record per (recording, proposal id) under OUT/_proposals/<episode_id>/, the
recording's current choice in current.json, and the consolidated tables OUT/catalog/proposals.parquet and
proposal_spans.parquet (rebuilt from the records after every run, published atomically).

The proposal id is the cache key, so a record doubles as the cache entry: a rerun reuses it unless it is
pending, and a retry overwrites the same file, so nothing is ever duplicated. Older versions stay."""

from __future__ import annotations

import json
from pathlib import Path

from annotators.proposal import Proposal
from pipeline.catalog import publish_tables, write_json_atomic
from schemas.proposals import SORT_KEYS, TABLES, with_version

PROPOSALS_DIR = "_proposals"
CURRENT = "current.json"


def _folder(out: Path, episode_id: str) -> Path:
    return out / PROPOSALS_DIR / episode_id


def load(out: Path, episode_id: str, proposal_id: str) -> Proposal | None:
    path = _folder(out, episode_id) / f"{proposal_id}.json"
    return Proposal.from_json(json.loads(path.read_text())) if path.exists() else None


def reuse(out: Path, episode_id: str, proposal_id: str) -> Proposal | None:
    """The stored answer for this cache key when it is finished (not pending), made current again."""
    old = load(out, episode_id, proposal_id)
    if old is None or old.status == "pending":
        return None
    save(out, old)
    return old


def save(out: Path, p: Proposal) -> None:
    """Writes the record and makes it the recording's current proposal."""
    folder = _folder(out, p.episode_id)
    write_json_atomic(folder / f"{p.proposal_id}.json", p.to_json())
    write_json_atomic(folder / CURRENT, {"proposal_id": p.proposal_id})


def build_tables(out: Path) -> dict[str, Path]:
    rows = {name: [] for name in TABLES}
    for folder in sorted((out / PROPOSALS_DIR).glob("*")):
        current_file = folder / CURRENT
        current = json.loads(current_file.read_text())["proposal_id"] if current_file.exists() else None
        for path in sorted(folder.glob("*.json")):
            if path.name == CURRENT:
                continue
            rec = json.loads(path.read_text())
            spans = rec.pop("spans")
            rows["proposals"].append({**rec, "is_current": rec["proposal_id"] == current})
            rows["proposal_spans"] += [{"proposal_id": rec["proposal_id"], "episode_id": rec["episode_id"],
                                        "span_index": i, **s} for i, s in enumerate(spans)]
    return publish_tables(out, rows, {name: with_version(schema) for name, schema in TABLES.items()}, SORT_KEYS)
