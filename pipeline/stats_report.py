"""The standard dataset report (`vla-data stats report ROOT`): one SQL query per section over the catalog views
(pipeline.catalog.connect), so a dashboard can show the very same numbers. Sections whose tables a stage has
not written yet (no annotate or review run) are left out."""

from __future__ import annotations

import duckdb
import pyarrow as pa

SECTIONS = {
    "recordings": ("episodes", """
        SELECT robot, coalesce(task_name, '') AS task, count(*) AS episodes, sum(duration_s) / 3600 AS hours,
               sum(active_s) / 3600 AS active_hours, sum(static_s) / nullif(sum(duration_s), 0) AS static_fraction,
               CAST(sum(num_clips) AS BIGINT) AS clips
        FROM episodes GROUP BY ALL ORDER BY robot, task"""),
    "hours_per_day": ("episodes", """
        SELECT robot, CAST(recorded_at AS DATE) AS day, count(*) AS episodes, sum(duration_s) / 3600 AS hours,
               sum(active_s) / 3600 AS active_hours, CAST(sum(num_clips) AS BIGINT) AS clips
        FROM episodes GROUP BY ALL ORDER BY robot, day"""),
    "clip_lengths": ("clips", """
        SELECT robot, count(*) AS clips, min(duration_s) AS min_s, quantile_cont(duration_s, 0.1) AS p10_s,
               median(duration_s) AS p50_s, quantile_cont(duration_s, 0.9) AS p90_s, max(duration_s) AS max_s
        FROM clips GROUP BY robot ORDER BY robot"""),
    # Every state sample of every ingested frame, per joint, against the robot config's limits.
    "joint_ranges": ("frames", """
        WITH samples AS (
            SELECT e.robot, unnest(range(len(f."observation.state"))) AS joint_index, unnest(e.state_names) AS joint,
                   unnest(f."observation.state") AS value
            FROM frames f JOIN episodes e USING (episode_id))
        SELECT s.robot, s.joint, count(*) AS samples, min(value) AS min, quantile_cont(value, 0.01) AS p01,
               median(value) AS p50, quantile_cont(value, 0.99) AS p99, max(value) AS max,
               any_value(l.lower) AS lower_limit, any_value(l.upper) AS upper_limit,
               count(*) FILTER (WHERE value < l.lower OR value > l.upper) AS out_of_range
        FROM samples s LEFT JOIN joint_limits l USING (robot, joint)
        GROUP BY s.robot, s.joint, s.joint_index ORDER BY s.robot, s.joint_index"""),
    "quarantine": ("quarantine", """
        SELECT source_format, reason_code, count(*) AS recordings FROM quarantine GROUP BY ALL ORDER BY ALL"""),
    "annotators": ("annotations", """
        SELECT annotator, count(DISTINCT annotation_id) AS annotations, count(*) AS versions,
               count(DISTINCT episode_id) AS recordings, avg(lead_time_s) AS mean_lead_time_s
        FROM annotations WHERE NOT cancelled GROUP BY annotator ORDER BY annotator"""),
    # Reviewed spans against the proposal span they started from (region seg<i> = proposal span i).
    "edits": ("annotation_spans", """
        WITH pairs AS (
            SELECT s.instruction AS final, p.instruction AS proposed, s.start_shift_s, s.end_shift_s
            FROM annotation_spans s
            JOIN annotations a USING (annotation_id, version)
            JOIN review_tasks t ON t.episode_id = s.episode_id
            JOIN proposal_spans p ON p.proposal_id = t.proposal_id
                 AND p.span_index = CAST(substr(s.region_id, 4) AS INTEGER)
            WHERE a.is_current AND s.region_id IS NOT NULL)
        SELECT count(*) AS spans, avg(CASE WHEN final <> proposed THEN 1.0 ELSE 0.0 END) AS text_edit_rate,
               avg(levenshtein(final, proposed)) AS mean_edit_distance,
               avg((abs(start_shift_s) + abs(end_shift_s)) / 2) AS mean_boundary_shift_s
        FROM pairs"""),
    "verbs": ("proposal_spans", """
        SELECT lower(split_part(trim(instruction), ' ', 1)) AS verb, count(*) AS instructions
        FROM proposal_spans JOIN proposals USING (proposal_id)
        WHERE is_current AND trim(instruction) <> '' GROUP BY verb ORDER BY instructions DESC, verb LIMIT 10"""),
    # The object an instruction names: the one or two words after its first "the", less a trailing preposition.
    "objects": ("proposal_spans", """
        SELECT regexp_replace(regexp_extract(lower(instruction), '\\bthe ([a-z]+(?: [a-z]+)?)', 1),
                              ' (with|from|to|on|onto|in|into|and|at|of|by|next)$', '') AS object,
               count(*) AS instructions
        FROM proposal_spans JOIN proposals USING (proposal_id)
        WHERE is_current AND object <> '' GROUP BY object ORDER BY instructions DESC, object LIMIT 10"""),
}
NEEDS = {"joint_ranges": {"episodes", "joint_limits"}, "edits": {"annotation_spans", "annotations", "review_tasks", "proposal_spans"},
         "verbs": {"proposal_spans", "proposals"}, "objects": {"proposal_spans", "proposals"}}
CURRENT_SPANS = "annotation_spans s JOIN annotations a USING (annotation_id, version) WHERE a.is_current"
# The annotation funnel, stage by stage: (column, SQL, views it needs); a stage not reached yet counts 0.
FUNNEL = [
    ("recordings", "SELECT count(DISTINCT episode_id) FROM clips", {"clips"}),
    ("proposed", "SELECT count(*) FROM proposals WHERE is_current AND status <> 'pending'", {"proposals"}),
    ("proposed_by_vlm", "SELECT count(*) FROM proposals WHERE is_current AND made_by = 'vlm' AND status = 'ok'",
     {"proposals"}),
    ("queued", "SELECT count(*) FROM review_tasks", {"review_tasks"}),
    ("reviewed", "SELECT count(*) FROM annotations WHERE is_current", {"annotations"}),
    ("accepted_spans", f"SELECT count(*) FROM {CURRENT_SPANS} AND s.status = 'ok'", {"annotations", "annotation_spans"}),
    ("unusable_spans", f"SELECT count(*) FROM {CURRENT_SPANS} AND s.status = 'unusable'",
     {"annotations", "annotation_spans"}),
]


def views_of(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def funnel(con: duckdb.DuckDBPyConnection) -> pa.Table:
    views = views_of(con)
    return pa.Table.from_pylist([{name: con.execute(sql).fetchall()[0][0] if needs <= views else 0
                                  for name, sql, needs in FUNNEL}])


def report(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """Section name -> table, for every section whose views exist."""
    views = views_of(con)
    out = {name: con.sql(query).to_arrow_table() for name, (table, query) in SECTIONS.items()
           if {table} | NEEDS.get(name, set()) <= views}
    return {**out, "funnel": funnel(con)}
