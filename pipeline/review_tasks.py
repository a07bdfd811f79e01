"""Label Studio task content for one recording: task data (media URLs, fps) and a prediction built from its
current proposal, spans as 1-based inclusive integer frames on the review video. Region ids are seg<i>, so
a pulled annotation can be compared with the prediction it started from."""

from __future__ import annotations

from pipeline.review_media import ReviewClock
from schemas.review import SPAN_LABEL, SPAN_STATUS, SPAN_TEXT, SPANS, TASK_TEXT, VIEWS


def model_version(proposal: dict) -> str:
    """Label Studio's model_version of a proposal: annotator + prompt version (rules ones say so)."""
    return f"{proposal['model']} {proposal['prompt_version']}" if proposal["made_by"] == "vlm" else \
        f"rules-made {proposal['model']}"


def task_data(episode: dict, media_urls: list[str]) -> dict:
    return {"recording_id": episode["episode_id"], "robot": episode["robot"], "fps": episode["fps"],
            **dict(zip(VIEWS, media_urls))}


def prediction(proposal: dict, spans: list[dict], clock: ReviewClock) -> dict:
    """Proposal row + its span rows -> a prediction the labeling config renders as editable pre-labels."""
    result = []
    for i, s in enumerate(spans):
        start, end = clock.to_review(s["start_frame"], s["end_frame"])
        ranges = [{"start": start, "end": end}]
        rid = f"seg{i}"
        result.append({"id": rid, "from_name": SPANS, "to_name": VIEWS[0], "type": "timelinelabels",
                       "value": {"ranges": ranges, "timelinelabels": [SPAN_LABEL]}})
        if s["instruction"]:
            result.append({"id": rid, "from_name": SPAN_TEXT, "to_name": VIEWS[0], "type": "textarea",
                           "value": {"ranges": ranges, "text": [s["instruction"]]}})
        result.append({"id": rid, "from_name": SPAN_STATUS, "to_name": VIEWS[0], "type": "choices",
                       "value": {"ranges": ranges, "choices": ["ok"]}})
    if proposal["task"]:
        result.append({"id": "task", "from_name": TASK_TEXT, "to_name": VIEWS[0], "type": "textarea",
                       "value": {"text": [proposal["task"]]}})
    return {"model_version": model_version(proposal), "score": proposal["confidence"] or 0.0, "result": result}
