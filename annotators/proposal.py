"""From a parsed answer to a proposal: the semantic checks that a JSON schema cannot express, and the
proposal record (a row of schemas.proposals.PROPOSALS plus its spans) that every backend produces."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import jsonschema

from annotators.prompt import Bounds, RecordingRequest, Span
from schemas.proposals import INSTRUCTION_MAX, TASK_MAX, reply_schema

EPS = 1e-6
NOT_A_VERB = {"the", "a", "an", "this", "that", "it", "they", "robot", "arm", "arms", "gripper", "someone", "then"}


def max_spans(req: RecordingRequest, bounds: Bounds) -> int:
    return max(1, len(req.spans)) * bounds.max_spans_factor


def schema_for(req: RecordingRequest, bounds: Bounds) -> dict:
    return reply_schema(req.duration_s, max_spans(req, bounds))


def parse(text: str, schema: dict) -> tuple[dict | None, str | None]:
    """(answer, None), or (None, why) when the text is not JSON or does not match the schema."""
    try:
        obj = json.loads(text)
        jsonschema.validate(obj, schema)
    except json.JSONDecodeError as e:
        return None, f"not JSON: {e}"
    except jsonschema.ValidationError as e:
        return None, f"does not match the schema at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
    return obj, None


def _text_problem(text: str, what: str, limit: int) -> str | None:
    words = text.strip().split()
    if not words:
        return f"{what} is empty"
    if len(text.strip()) > limit:
        return f"{what} is longer than {limit} characters"
    first = words[0].lower()
    if first in NOT_A_VERB or first.endswith("ing"):
        return f"{what} must be imperative, starting with a verb such as 'grasp', not {words[0]!r}"
    return None


def _boundary_problems(subtasks: list[dict], req: RecordingRequest, bounds: Bounds) -> list[str]:
    """Every boundary of the answer stays within max_shift_s of a proposed boundary (kept or shifted), or splits
    a proposed span whose own two ends are kept. A proposed boundary with no answer boundary near it was merged."""
    shift = bounds.max_shift_s + EPS
    answer = sorted({s["start_s"] for s in subtasks} | {s["end_s"] for s in subtasks})
    proposed = sorted({s.start_s for s in req.spans} | {s.end_s for s in req.spans})

    def near(x: float, points: list[float]) -> bool:
        return any(abs(x - p) <= shift for p in points)

    return [f"the boundary at {x:g} s is more than {bounds.max_shift_s:g} s from every proposed boundary and does "
            f"not split a proposed span whose ends are kept"
            for x in answer if not near(x, proposed) and not any(
                s.start_s + bounds.min_span_s <= x <= s.end_s - bounds.min_span_s
                and near(s.start_s, answer) and near(s.end_s, answer) for s in req.spans)]


def check(obj: dict, req: RecordingRequest, bounds: Bounds) -> list[str]:
    """Problems with a schema-valid answer; empty when it can be used as is."""
    problems = []
    if p := _text_problem(obj["task"], "task", TASK_MAX):
        problems.append(p)
    prev_end = 0.0
    for k, s in enumerate(obj["subtasks"], 1):
        a, b = s["start_s"], s["end_s"]
        if not (0 <= a < b <= req.duration_s + EPS):
            problems.append(f"subtask {k}: span {a:g} to {b:g} s is not an interval inside 0 to {req.duration_s:g} s")
        elif b - a < bounds.min_span_s - EPS:
            problems.append(f"subtask {k}: span {a:g} to {b:g} s is shorter than {bounds.min_span_s:g} s")
        if k > 1 and a < prev_end - EPS:
            problems.append(f"subtask {k} starts at {a:g} s, before subtask {k - 1} ends at {prev_end:g} s: "
                            f"spans must be in order and must not overlap")
        prev_end = max(prev_end, b)
        if p := _text_problem(s["instruction"], f"subtask {k} instruction", INSTRUCTION_MAX):
            problems.append(p)
    if not problems:
        problems += _boundary_problems(obj["subtasks"], req, bounds)
    return problems


@dataclass
class ProposedSpan:
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    instruction: str
    clip_id: str | None


@dataclass
class Proposal:
    """One annotator's answer for one recording, with its provenance."""

    proposal_id: str
    episode_id: str
    robot: str
    made_by: str  # vlm | rules
    backend: str
    model: str
    prompt_version: str
    status: str  # ok | needs_review | pending
    reason: str | None
    task: str | None
    confidence: float | None
    spans: list[ProposedSpan] = field(default_factory=list)
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    raw_response: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Proposal":
        return cls(**{**d, "spans": [ProposedSpan(**s) for s in d["spans"]]})


def spans_from_answer(obj: dict, req: RecordingRequest) -> list[ProposedSpan]:
    """Answer seconds -> frames on the recording's clock; keeps the skeleton clip id where frames are unchanged."""
    n = int(round(req.duration_s * req.fps))
    by_frames = {(s.start_frame, s.end_frame): s.clip_id for s in req.spans}
    out = []
    for s in obj["subtasks"]:
        a = min(n, max(0, int(round(s["start_s"] * req.fps))))
        b = min(n, max(a + 1, int(round(s["end_s"] * req.fps))))
        out.append(ProposedSpan(a, b, a / req.fps, b / req.fps, s["instruction"].strip(), by_frames.get((a, b))))
    return out


def skeleton_spans(spans: list[Span], instructions: list[str] | None = None) -> list[ProposedSpan]:
    """The skeleton's own clips as proposal spans (rules proposals, or a flagged answer that could not be used)."""
    texts = instructions or [""] * len(spans)
    return [ProposedSpan(s.start_frame, s.end_frame, s.start_s, s.end_s, t, s.clip_id) for s, t in zip(spans, texts)]
