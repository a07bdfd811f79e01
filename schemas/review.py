"""Human review in Label Studio: the labeling config (its tag names are the contract with the server) and the
catalog tables that `vla-data review push|pull` write (OUT/catalog/review_tasks.parquet, annotations.parquet,
annotation_spans.parquet).

Frames in Label Studio are 1-based and inclusive, on the review video, which shows only the recording's active
(non-static) frames; `review_tasks.active_ranges` maps them back to the recording's own 0-based frames.
Bump REVIEW_VERSION on any incompatible change.
"""

from __future__ import annotations

import pyarrow as pa

REVIEW_VERSION = "1.0"

VIEWS = ("top", "left_wrist", "right_wrist")  # <Video> names = task data keys; the timeline is on "top"
SPANS, SPAN_TEXT, SPAN_STATUS, TASK_TEXT = "subtasks", "subtask_instruction", "clip_status", "task_instruction"
SPAN_LABEL = "subtask"
STATUS_CHOICES = ("ok", "unusable")

_VIDEO = ('<View style="min-width:0; overflow:hidden"><Header value="{title}" size="6"/>'
          '<Video name="{name}" value="${name}" frameRate="$fps" sync="views" height="220"{extra}/></View>')
LABEL_CONFIG = f"""<View>
  <Header value="$robot recording $recording_id: check the subtask spans, their instructions and the task"/>
  <View style="display:grid; grid-template-columns:repeat(3, minmax(0, 1fr)); gap:6px">
    {_VIDEO.format(title="top", name="top", extra=' timelineHeight="120"')}
    {_VIDEO.format(title="left wrist", name="left_wrist", extra=' muted="true"')}
    {_VIDEO.format(title="right wrist", name="right_wrist", extra=' muted="true"')}
  </View>
  <TimelineLabels name="{SPANS}" toName="top">
    <Label value="{SPAN_LABEL}" background="#1f77b4"/>
  </TimelineLabels>
  <Header value="Subtask instruction (select a span first; Shift+Enter saves)" size="5"/>
  <TextArea name="{SPAN_TEXT}" toName="top" perRegion="true" whenTagName="{SPANS}" editable="true"
            maxSubmissions="1" rows="2" placeholder="e.g. grasp the red cube with the left gripper"/>
  <Choices name="{SPAN_STATUS}" toName="top" perRegion="true" whenTagName="{SPANS}" choice="single"
           showInline="true">
    {"".join(f'<Choice value="{c}"/>' for c in STATUS_CHOICES)}
  </Choices>
  <Header value="Task instruction for the whole recording" size="5"/>
  <TextArea name="{TASK_TEXT}" toName="top" editable="true" maxSubmissions="1" rows="2"
            placeholder="e.g. put the red cube in the bowl"/>
</View>"""

FRAME_RANGE = pa.struct([("start", pa.int32()), ("end", pa.int32())])  # recording frames [start, end)

REVIEW_TASKS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("project_id", pa.int64()),
        ("task_id", pa.int64()),
        ("fps", pa.float64()),
        ("active_ranges", pa.list_(FRAME_RANGE)),  # review video frame k = k-th frame of these ranges
        ("media", pa.list_(pa.string())),  # review videos, in VIEWS order
        ("proposal_id", pa.string()),  # the proposal pushed as the latest prediction
        ("model_version", pa.string()),  # its Label Studio model_version: "<model> <prompt version>"
        ("pushed_at", pa.string()),  # ISO 8601 UTC
    ]
)

ANNOTATIONS = pa.schema(
    [
        ("annotation_id", pa.int64()),  # Label Studio's
        ("version", pa.string()),  # its updated_at: each saved edit of an annotation is kept as a version
        ("episode_id", pa.string()),
        ("task_id", pa.int64()),
        ("annotator", pa.string()),  # e-mail of completed_by
        ("created_at", pa.string()),
        ("updated_at", pa.string()),
        ("lead_time_s", pa.float64()),
        ("cancelled", pa.bool_()),  # skipped by the annotator
        ("prediction_model_version", pa.string()),  # the prediction it started from, null when drawn from scratch
        ("task", pa.string()),  # the final task instruction (whitespace stripped)
        ("task_origin", pa.string()),  # prediction | prediction-changed | manual
        ("pulled_at", pa.string()),
        ("is_current", pa.bool_()),  # the newest non-cancelled version for this recording: it overrides proposals
    ]
)

ANNOTATION_SPANS = pa.schema(
    [
        ("annotation_id", pa.int64()),
        ("version", pa.string()),
        ("episode_id", pa.string()),
        ("span_index", pa.int32()),
        ("region_id", pa.string()),  # the prediction's region id (seg<i>) when it started from one
        ("start_frame", pa.int32()),  # recording frames, end exclusive
        ("end_frame", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("instruction", pa.string()),
        ("status", pa.string()),  # ok | unusable
        ("span_origin", pa.string()),  # prediction | prediction-changed | manual
        ("text_origin", pa.string()),
        ("clip_id", pa.string()),  # the skeleton clip with exactly these frames, if any
        ("start_shift_s", pa.float64()),  # against the predicted span of the same region; null for manual spans
        ("end_shift_s", pa.float64()),
        ("text_changed", pa.bool_()),  # against the predicted instruction of the same region
    ]
)

TABLES = {"review_tasks": REVIEW_TASKS, "annotations": ANNOTATIONS, "annotation_spans": ANNOTATION_SPANS}
SORT_KEYS = {"review_tasks": ["episode_id"], "annotations": ["episode_id", "updated_at", "annotation_id"],
             "annotation_spans": ["episode_id", "version", "annotation_id", "span_index"]}


def with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"vla_data.review_version": REVIEW_VERSION})
