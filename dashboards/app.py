"""`vla-data dashboard ROOT`: a Dash app over the catalog. Every number on it is a row of
pipeline.stats_report.report(), the queries behind `vla-data stats report`, so the two never disagree. The clip
browser plays a recording's three camera views in sync (assets/clip_sync.js) above its subtask timeline, with the
instructions the export would use (pipeline.export_plan)."""

from __future__ import annotations

import logging
import threading
from functools import partial
from pathlib import Path

import dash
import duckdb
import flask
import plotly.express as px
import plotly.graph_objects as go
import pyarrow as pa
from dash import Input, Output, dcc, html

from pipeline import storage
from pipeline.catalog import attach_datasets, connect
from pipeline.export_plan import pick_labels
from pipeline.stats_report import report, views_of
from schemas.review import VIEWS

log = logging.getLogger(__name__)
TEMPLATE = "plotly_white"
# Sections each tab shows; any other section the report grows is listed as a table on the overview.
TABS = {"overview": ("recordings", "hours_per_day", "clip_lengths"), "quality": ("quarantine", "joint_ranges"),
        "annotation": ("funnel", "annotators", "edits", "verbs", "objects")}
LIMIT_MARKER = {"symbol": "line-ew-open", "size": 16, "color": "#d62728", "line": {"width": 2}}
FUNNEL_STAGES = ("recordings", "proposed", "queued", "reviewed")  # recordings; the span counts are shown as numbers
MEDIA_SQL = "SELECT c.uri FROM episodes, unnest(cameras) AS t(c) WHERE episode_id = ? AND c.role = ?"
EPISODE_SQL = "SELECT episode_id, robot, task_name, fps, duration_s FROM episodes WHERE episode_id = ?"
CLIPS_SQL = "SELECT start_frame, end_frame, source_text FROM clips WHERE episode_id = ? ORDER BY start_frame, end_frame"
# The current review and the current usable proposal, one row per span (a span-less one gives a row of nulls).
REVIEW_SQL = """SELECT a.task, s.start_frame, s.end_frame, s.instruction, s.status
    FROM annotations a LEFT JOIN annotation_spans s USING (annotation_id, version)
    WHERE a.is_current AND a.episode_id = ? ORDER BY s.start_frame, s.end_frame"""
PROPOSAL_SQL = """SELECT p.made_by, p.task, s.start_frame, s.end_frame, s.instruction
    FROM proposals p LEFT JOIN proposal_spans s USING (proposal_id)
    WHERE p.is_current AND p.status = 'ok' AND p.episode_id = ? ORDER BY s.start_frame, s.end_frame"""


def open_catalog(root: str, datasets: str | None) -> duckdb.DuckDBPyConnection:
    con = connect(root)
    if datasets:
        attach_datasets(con, datasets)
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params) -> list[dict]:
    return con.sql(sql, params=list(params)).to_arrow_table().to_pylist()


def fmt(v) -> str:
    return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def kpi(id_: str, value: str, label: str) -> html.Div:
    return html.Div([html.Div(value, id=id_, className="kpi-value"), html.Div(label, className="kpi-label")],
                    className="kpi")


def graph(id_: str, fig: go.Figure) -> dcc.Graph:
    fig.update_layout(template=TEMPLATE, margin={"l": 40, "r": 20, "t": 50, "b": 40})
    return dcc.Graph(id=id_, figure=fig, className="chart")


def section_table(name: str, t: pa.Table) -> html.Details:
    """A report section verbatim, the numbers behind the charts."""
    head = html.Tr([html.Th(c) for c in t.column_names])
    body = [html.Tr([html.Td(fmt(v)) for v in r.values()]) for r in t.to_pylist()]
    return html.Details([html.Summary(f"{name.replace('_', ' ')} ({t.num_rows} rows)"),
                         html.Table([html.Thead(head), html.Tbody(body)])], className="section")


def tables(sections: dict[str, pa.Table], names) -> html.Div:
    return html.Div([section_table(n, sections[n]) for n in names if n in sections])


def not_yet(what: str, command: str) -> html.P:
    return html.P(f"No {what} yet: run `{command}`.", className="note")


def overview(s: dict[str, pa.Table]) -> list:
    rec, days = s["recordings"].to_pandas(), s["hours_per_day"].to_pandas()
    others = [n for n in s if not any(n in names for names in TABS.values())]
    return [
        html.Div([kpi("kpi-hours", f"{rec.hours.sum():,.3f}", "hours recorded"),
                  kpi("kpi-active-hours", f"{rec.active_hours.sum():,.3f}", "active hours"),
                  kpi("kpi-episodes", f"{rec.episodes.sum():,}", "episodes"),
                  kpi("kpi-clips", f"{rec.clips.sum():,}", "clips")], className="kpis"),
        html.Div([graph("hours-per-day", px.bar(days, x="day", y="hours", color="robot", barmode="group",
                                                title="Hours recorded per day")),
                  graph("episodes-per-day", px.bar(days, x="day", y="episodes", color="robot", barmode="group",
                                                   title="Episodes per day")),
                  graph("clips-per-day", px.bar(days, x="day", y="clips", color="robot", barmode="group",
                                                title="Clips per day"))], className="charts"),
        tables(s, TABS["overview"] + tuple(others)),
    ]


def joint_ranges_figure(robot: str, df) -> go.Figure:
    """Per joint: the min-max and p01-p99 bands of every state sample against the robot config's limits."""
    fig = go.Figure([
        go.Bar(x=df.joint, y=df["max"] - df["min"], base=df["min"], name="min–max", marker_color="#9ecae1"),
        go.Bar(x=df.joint, y=df.p99 - df.p01, base=df.p01, name="p01–p99", marker_color="#2171b5", width=0.4),
        go.Scatter(x=df.joint, y=df.lower_limit, mode="markers", name="limits", marker=LIMIT_MARKER),
        go.Scatter(x=df.joint, y=df.upper_limit, mode="markers", showlegend=False, marker=LIMIT_MARKER),
    ])
    return fig.update_layout(barmode="overlay",
                             title=f"{robot}: joint ranges, {df.out_of_range.sum():,} samples out of limits")


def quality(s: dict[str, pa.Table]) -> list:
    rec, quarantine = s["recordings"].to_pandas(), s["quarantine"].to_pandas()
    charts = [graph("static-fraction", px.bar(rec, x="static_fraction", y="task", color="robot", orientation="h",
                                               barmode="group", title="Static (idle) fraction per task"))]
    if len(quarantine):
        charts.append(graph("quarantine", px.bar(quarantine, x="reason_code", y="recordings", color="source_format",
                                                 title="Quarantined recordings by reason")))
    if "joint_ranges" in s:
        joints = s["joint_ranges"].to_pandas()
        charts += [graph(f"joints-{robot}", joint_ranges_figure(robot, df)) for robot, df in joints.groupby("robot")]
    return [html.Div([kpi("kpi-quarantined", f"{quarantine.recordings.sum():,}", "recordings quarantined")],
                     className="kpis"),
            html.Div(charts, className="charts"), tables(s, TABS["quality"])]


def annotation(s: dict[str, pa.Table]) -> list:
    f = s["funnel"].to_pylist()[0]
    kpis = [kpi("kpi-by-vlm", f"{f['proposed_by_vlm']:,}", "proposed by a VLM"),
            kpi("kpi-accepted", f"{f['accepted_spans']:,}", "spans accepted"),
            kpi("kpi-unusable", f"{f['unusable_spans']:,}", "spans unusable")]
    if "edits" in s:
        e = s["edits"].to_pylist()[0]
        rate = "–" if e["text_edit_rate"] is None else f"{e['text_edit_rate']:.0%}"
        kpis += [kpi("kpi-edit-rate", rate, f"of {e['spans']} reviewed spans had their text edited"),
                 kpi("kpi-edit-distance", fmt(e["mean_edit_distance"]), "mean edit distance (chars)"),
                 kpi("kpi-boundary-shift", fmt(e["mean_boundary_shift_s"]), "mean boundary shift (s)")]
    charts = [graph("funnel", go.Figure(go.Funnel(y=list(FUNNEL_STAGES), x=[f[k] for k in FUNNEL_STAGES]))
                    .update_layout(title="Recordings through the annotation funnel"))]
    if "annotators" in s:
        charts.append(graph("annotators", px.bar(s["annotators"].to_pandas(), x="annotator", y="annotations",
                                                 hover_data=["versions", "recordings", "mean_lead_time_s"],
                                                 title="Reviews per annotator")))
    else:
        charts.append(not_yet("reviews", "vla-data review pull ROOT"))
    for name in ("verbs", "objects"):
        if name in s:
            t = s[name].to_pandas()
            charts.append(graph(name, px.bar(t, x=t.columns[0], y="instructions",
                                             title=f"Most frequent instruction {name}")))
    if "verbs" not in s:
        charts.append(not_yet("instruction proposals", "vla-data annotate ROOT"))
    return [html.Div(kpis, className="kpis"), html.Div(charts, className="charts"), tables(s, TABS["annotation"])]


def clip_browser(con: duckdb.DuckDBPyConnection) -> list:
    episodes = rows(con, "SELECT episode_id, robot, task_name FROM episodes ORDER BY robot, source_key")
    options = [{"label": f"{e['robot']} · {e['task_name'] or 'no task name'} · {e['episode_id']}",
                "value": e["episode_id"]} for e in episodes]
    views = [html.Figure([html.Video(id=f"video-{v}", controls=v == "top", muted=True, preload="auto"),
                          html.Figcaption(v.replace("_", " "))]) for v in VIEWS]
    return [dcc.Dropdown(id="episode", options=options, value=options[0]["value"] if options else None,
                         clearable=False),
            html.Div(views, className="views"), html.Div(id="instruction", className="instruction"),
            html.Div(id="timeline", className="timeline"), html.Div(id="label-source", className="note")]


def layout(con: duckdb.DuckDBPyConnection, root: str) -> html.Div:
    s = report(con)
    tabs = [("overview", "Overview", overview(s)), ("quality", "Quality", quality(s)),
            ("annotation", "Annotation", annotation(s)), ("clips", "Clip browser", clip_browser(con))]
    return html.Div([html.H1(f"vla-data · {root}"),
                     dcc.Tabs([dcc.Tab(body, label=label, value=value, id=f"tab-{value}")
                               for value, label, body in tabs], value="overview")])


def current(con: duckdb.DuckDBPyConnection, sql: str, episode_id: str, head: tuple[str, ...]) -> tuple | None:
    """(*head values, span rows) of the one current review or proposal of the episode, or None."""
    found = rows(con, sql, episode_id)
    if not found:
        return None
    return *(found[0][k] for k in head), [r for r in found if r["start_frame"] is not None]


def episode_labels(con: duckdb.DuckDBPyConnection, episode_id: str) -> tuple[dict, str, str, list]:
    """(episode row, label source, task, spans [start, end) with their instruction), chosen as the export does."""
    (ep,) = rows(con, EPISODE_SQL, episode_id)
    views = views_of(con)
    review = current(con, REVIEW_SQL, episode_id, ("task",)) if {"annotations", "annotation_spans"} <= views else None
    proposal = (current(con, PROPOSAL_SQL, episode_id, ("made_by", "task"))
                if {"proposals", "proposal_spans"} <= views else None)
    source, task, spans, _ = pick_labels(ep, rows(con, CLIPS_SQL, episode_id), review, proposal)
    return ep, source, task or ep["task_name"] or "", spans


def timeline(spans: list, fps: float, duration_s: float) -> html.Div:
    """The spans as blocks on a track of the recording's length; clip_sync.js reads their data-* times."""
    def pct(s: float) -> str:
        return f"{100 * s / duration_s:.3f}%"

    blocks = [html.Div(text or "(no instruction)", className="span", title=text,
                       style={"left": pct(a / fps), "width": pct((b - a) / fps)},
                       **{"data-start": f"{a / fps:.3f}", "data-end": f"{b / fps:.3f}", "data-text": text})
              for a, b, text in spans]
    return html.Div(blocks + [html.Div(className="playhead")], className="track",
                    **{"data-duration": f"{duration_s:.3f}"})


def show_episode(app: dash.Dash, con: duckdb.DuckDBPyConnection, episode_id: str | None) -> tuple:
    """Video sources, timeline and label note of the chosen recording."""
    if not episode_id:
        return *("" for _ in VIEWS), None, ""
    ep, source, task, spans = episode_labels(con, episode_id)
    srcs = (app.get_relative_path(f"/media/{episode_id}/{v}") for v in VIEWS)
    return (*srcs, timeline(spans, ep["fps"], ep["duration_s"]),
            f"{len(spans)} spans, instructions from {source.replace('_', ' ')}; task: {task}")


def serve_video(con: duckdb.DuckDBPyConnection, lock: threading.Lock, episode_id: str, role: str) -> flask.Response:
    """A camera's mp4 as the catalog lists it (nothing else is served), with Range support so <video> can seek.
    An s3:// video is served from this machine's cached copy."""
    with lock:  # one connection for all request threads: a cursor would not see an S3 catalog's registered views
        found = con.execute(MEDIA_SQL, [episode_id, role]).fetchall()
    try:
        path = storage.local_copy(found[0][0]) if found else None
    except FileNotFoundError:
        path = None
    if path is None or not path.is_file():
        flask.abort(404)
    return flask.send_file(path, mimetype="video/mp4", conditional=True)


def create_app(root: str | Path, datasets: str | Path | None = None) -> dash.Dash:
    """The app; every page load and episode choice reads the catalog afresh, so new runs show on reload. ROOT and
    DATASETS may be s3:// prefixes."""
    root = storage.absolute(root)
    open_con = partial(open_catalog, root, datasets)
    media_con = open_con()  # also fails early, and clearly, when ROOT has no catalog
    app = dash.Dash(__name__, title="vla-data dashboard", assets_folder=str(Path(__file__).with_name("assets")))
    app.layout = lambda: layout(open_con(), root)

    @app.callback(*(Output(f"video-{v}", "src") for v in VIEWS), Output("timeline", "children"),
                  Output("label-source", "children"), Input("episode", "value"))
    def choose_episode(episode_id: str | None) -> tuple:
        return show_episode(app, open_con(), episode_id)

    app.server.add_url_rule("/media/<episode_id>/<role>", "media", partial(serve_video, media_con, threading.Lock()))
    return app


def serve(root: str, host: str = "127.0.0.1", port: int = 8050, datasets: str | None = None) -> None:
    """Runs the app on Flask's threaded server until Ctrl-C."""
    app = create_app(root, datasets)
    log.info("dashboard for %s on http://%s:%d/ (Ctrl-C stops it)", root, host, port)
    app.run(host=host, port=port, debug=False, threaded=True)
