"""Chat messages for one recording, from the versioned templates in annotators/prompts/<version>/.

A template folder is immutable once released: change wording in a new folder (subtasks-v2, ...). The version
string used in caches and provenance also carries a hash of the files, so an edit can never reuse stale answers.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from string import Template

from annotators.frames import Frame
from schemas.proposals import INSTRUCTION_MAX, REVIEW_REASONS, TASK_MAX

PROMPTS = Path(__file__).parent / "prompts"
DEFAULT_PROMPT = "subtasks-v1"
PARTS = ("system", "user", "instructions", "repair")


@dataclass(frozen=True)
class Span:
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float
    clip_id: str | None = None


@dataclass
class RecordingRequest:
    """Everything an annotator is told about one recording."""

    episode_id: str
    robot: str
    fps: float
    duration_s: float
    spans: list[Span]  # the skeleton's clips, in order
    task_name: str | None = None  # the source's own task label, if any
    frames: list[Frame] = field(default_factory=list)


@dataclass(frozen=True)
class Bounds:
    """How far an answer may depart from the proposed spans (checked after parsing)."""

    max_shift_s: float = 1.0
    min_span_s: float = 0.3
    max_spans_factor: int = 2  # at most this many times the proposed number of spans (splits)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # name + hash of the template files
    templates: dict[str, Template]


@cache
def load_prompt(name: str = DEFAULT_PROMPT) -> Prompt:
    folder = PROMPTS / name
    if not folder.is_dir():
        known = sorted(p.name for p in PROMPTS.iterdir() if p.is_dir())
        raise FileNotFoundError(f"no prompt {name!r} in {PROMPTS} (known: {known})")
    texts = {p: (folder / f"{p}.txt").read_text() for p in PARTS}
    digest = hashlib.sha256("\0".join(texts[p] for p in PARTS).encode()).hexdigest()[:8]
    return Prompt(name, f"{name}+{digest}", {p: Template(t) for p, t in texts.items()})


def _fields(req: RecordingRequest, bounds: Bounds) -> dict:
    spans = "\n".join(f"{i + 1}. {s.start_s:.2f} to {s.end_s:.2f}" for i, s in enumerate(req.spans))
    source_task = f"The recording's own task label: {req.task_name}." if req.task_name else ""
    return {"robot": req.robot, "duration_s": f"{req.duration_s:.2f}", "spans": spans, "source_task": source_task,
            "max_shift_s": f"{bounds.max_shift_s:g}", "min_span_s": f"{bounds.min_span_s:g}",
            "reasons": ", ".join(f'"{r}"' for r in REVIEW_REASONS), "instruction_max": INSTRUCTION_MAX,
            "task_max": TASK_MAX}


def messages(prompt: Prompt, req: RecordingRequest, bounds: Bounds) -> list[dict]:
    """OpenAI chat messages: a system message, then one user message with the text, and every frame as a
    labelled JPEG data URL (view and time in a text part right before it)."""
    f = _fields(req, bounds)
    content = [{"type": "text", "text": prompt.templates["user"].substitute(f)}]
    for fr in req.frames:
        content.append({"type": "text", "text": f"[{fr.view} t={fr.t:.2f}s]"})
        content.append({"type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(fr.jpeg).decode()}})
    content.append({"type": "text", "text": prompt.templates["instructions"].substitute(f)})
    return [{"role": "system", "content": prompt.templates["system"].substitute(f)},
            {"role": "user", "content": content}]


def repair_messages(prompt: Prompt, first: list[dict], reply: str, problems: list[str]) -> list[dict]:
    """The first conversation, the failed answer, and what was wrong with it."""
    text = prompt.templates["repair"].substitute(problems="\n".join(f"- {p}" for p in problems))
    return first + [{"role": "assistant", "content": reply}, {"role": "user", "content": text}]
