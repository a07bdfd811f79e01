"""`vla-data`: the one command line of the data engine."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from jobs.review_cli import app as review_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(review_app, name="review")
stats_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Dataset statistics.")
app.add_typer(stats_app, name="stats")
console = Console(soft_wrap=True)  # long paths and reasons stay on one line


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


SIZE_PRESETS = {"lingbot": (224, 224)}  # what the LingBot-VLA trainer resizes every camera to


def _size(text: str) -> tuple[int, int]:
    if text.lower() in SIZE_PRESETS:
        return SIZE_PRESETS[text.lower()]
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT or one of {sorted(SIZE_PRESETS)}, got {text!r}") from None


@app.command()
def synth(
    format: str = typer.Option(..., "--format", help="aloha | agibot | galaxea | robotwin"),
    episodes: int = typer.Option(4, "--episodes", min=1),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out"),
    size: str = typer.Option("320x240", "--size", help="camera image WIDTHxHEIGHT"),
    faults: str = typer.Option("", "--faults", help="comma-separated faults given to the last episodes"),
    raw_images_every: int = typer.Option(0, "--raw-images-every",
                                         help="ALOHA: store every k-th episode's images uncompressed"),
    depth: bool = typer.Option(False, "--depth", help="also write the format's depth stream(s)"),
    variant: str = typer.Option(None, "--variant", help="the format's flavour: aloha jpeg|raw, agibot libsvtav1|"
                                "libx264 (video codec), galaxea mcap|bag (ROS 2 MCAP or ROS 1 bag), robotwin "
                                "classic|xpolicy (layout); default the first"),
) -> None:
    """Write deterministic sample recordings in a robot's raw on-disk format, with ground truth."""
    from synth.generate import generate

    try:
        keys = generate(format, episodes, seed, out, _size(size), [f for f in faults.split(",") if f],
                        raw_images_every, variant, depth)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    console.print(f"wrote {len(keys)} {format} episodes to {out} (ground truth in {out / 'ground_truth'})")


@app.command()
def ingest(
    input: str = typer.Argument(..., help="folder or s3:// prefix with raw recordings (any supported format, mixed is fine)"),
    out: str = typer.Argument(..., help="output folder or s3:// prefix: catalog/, episodes/, _manifests/"),
    format: list[str] = typer.Option(None, "--format", help="only these source formats"),
    robot: str = typer.Option(None, "--robot", help="robot config name or path (default: the format's own)"),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: RAY_ADDRESS, else in-process)"),
    ignore_source_labels: bool = typer.Option(False, "--ignore-source-labels",
                                              help="cut clips from robot signals even where the source has labels"),
    depth: bool = typer.Option(False, "--depth", help="keep the sources' depth streams (lossless; large)"),
) -> None:
    """Validate, de-idle and cut raw recordings into clips on Ray; write the catalog."""
    from jobs.ingest import run_ingest

    try:
        r = run_ingest(input, out, format or None, robot, address, ignore_labels=ignore_source_labels, depth=depth)
    except (FileNotFoundError, ValueError, LookupError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    table = Table(title=f"Ingested {r.discovered} recordings ({r.processed} processed, {r.skipped} already done)")
    for col in ("robot", "episodes", "recorded hours", "clips", "static s dropped"):
        table.add_column(col, justify="left" if col == "robot" else "right")
    for row in r.per_robot:
        table.add_row(row["robot"], str(row["episodes"]), f"{row['hours']:.3f}", str(row["clips"]),
                      f"{row['static_s']:.1f}")
    console.print(table)
    if r.quarantined:
        q = Table(title=f"Quarantined: {len(r.quarantined)}")
        for col in ("source", "reason"):
            q.add_column(col)
        for row in r.quarantined:
            q.add_row(f"{row['format']}:{row['source_key']}", row["reason"])
        console.print(q)
    else:
        console.print("Quarantined: none")
    from pipeline import storage

    console.print(f"Catalog: {storage.join(r.out, 'catalog')}  (query it: vla-data sql {r.out} \"SELECT * FROM episodes\")")


@app.command()
def sql(
    root: str = typer.Argument(..., help="an ingest output folder or s3:// prefix"),
    query: str = typer.Argument(..., help="SQL over the views episodes, clips, static_spans, quarantine, frames, "
                                          "proposals, proposal_spans, review_tasks, annotations, annotation_spans"),
    datasets: str = typer.Option(None, "--datasets", help="also views over the LeRobot datasets under this folder "
                                                           "or s3:// prefix: shard_frames, shard_episodes, "
                                                           "shard_tasks, export_reports"),
    format: str = typer.Option("table", "--format", help="table | csv | json | parquet (parquet needs --out)"),
    out: Path = typer.Option(None, "--out", help="write the result to this file instead of printing it"),
) -> None:
    """Run SQL over the catalog (and exported datasets) with DuckDB."""
    import duckdb

    from pipeline.catalog import attach_datasets, connect

    if format not in ("table", "csv", "json", "parquet"):
        raise typer.BadParameter(f"unknown format {format!r}")
    if format == "parquet" and out is None:
        raise typer.BadParameter("--format parquet writes a file: give --out FILE")
    try:
        con = connect(root)
        if datasets:
            attach_datasets(con, datasets)
        rel = con.sql(query)
    except (FileNotFoundError, duckdb.Error) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if rel is None:
        return
    if format == "parquet":
        rel.write_parquet(str(out))
        console.print(f"{len(rel)} rows -> {out}")
        return
    if format == "table":
        text = str(rel)
    elif format == "csv":
        text = _csv(rel)
    else:
        import json

        text = json.dumps([dict(zip(rel.columns, row)) for row in rel.fetchall()], default=str)
    if out:
        out.write_text(text)
        console.print(f"{len(rel)} rows -> {out}")
    else:
        typer.echo(text, nl=format != "csv")


@stats_app.command("report")
def stats_report(
    root: str = typer.Argument(..., help="an ingest output folder or s3:// prefix"),
    format: str = typer.Option("table", "--format", help="table | json"),
) -> None:
    """The standard report: recordings per robot and task, clip lengths, quarantine, the annotation funnel,
    annotators, VLM-vs-human edits, frequent instruction verbs."""
    from pipeline.catalog import connect
    from pipeline.stats_report import report

    try:
        sections = report(connect(root))
    except FileNotFoundError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    _print_sections(sections, format)


def _table_or_json(format: str) -> str:
    if format not in ("table", "json"):
        raise typer.BadParameter(f"expected table or json, got {format!r}")
    return format


@stats_app.command("frames")
def stats_frames(
    datasets: str = typer.Argument(..., help="LeRobot datasets: an export folder (DATASETS/<robot>/) or one dataset; "
                                   "a folder or an s3:// prefix"),
    scheduler: str = typer.Option(None, "--scheduler", help="a Dask scheduler (tcp://HOST:8786), or Ray: ray (the "
                                                            "running one, RAY_ADDRESS or a local one) or ray://HEAD:10001; "
                                                            "default: a local Dask cluster of 2 workers"),
    bins: int = typer.Option(20, "--bins", min=1, help="histogram bins per joint"),
    max_lag: int = typer.Option(10, "--max-lag", min=1, help="largest action-vs-state lag tried, in frames"),
    format: str = typer.Option("table", "--format", help="table | json", callback=_table_or_json),
) -> None:
    """Checks over every frame of the shards, with Dask: per-joint state histograms, joint-limit violations, the
    action-vs-state lag, frame rate and gaps."""
    from pipeline.frame_stats import frame_stats

    try:
        sections = frame_stats(datasets, scheduler, bins=bins, max_lag=max_lag)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    _print_sections(sections, format)


SPARK = " ▁▂▃▄▅▆▇█"


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and v and all(isinstance(x, int) for x in v):  # counts (histogram bins, lag votes)
        top = max(v) or 1
        return "".join(SPARK[-(-8 * x // top)] for x in v)
    return str(v)


def _print_sections(sections: dict, format: str) -> None:
    """Report sections (name -> pyarrow table) as JSON, or else as one table each, counts drawn as sparklines."""
    import json

    import pyarrow as pa

    if format == "json":
        typer.echo(json.dumps({k: t.to_pylist() for k, t in sections.items()}, default=str))
        return
    for name, t in sections.items():
        table = Table(title=name.replace("_", " "))
        for col in t.column_names:
            kind = t.schema.field(col).type
            table.add_column(col, justify="left" if kind == "string" or pa.types.is_list(kind) else "right")
        for row in t.to_pylist():
            table.add_row(*(_cell(v) for v in row.values()))
        console.print(table)


@app.command()
def dashboard(
    root: str = typer.Argument(..., help="an ingest output folder or s3:// prefix"),
    port: int = typer.Option(8050, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; 0.0.0.0 exposes it to the network"),
    datasets: str = typer.Option(None, "--datasets", help="also attach the LeRobot datasets under this folder or "
                                 "s3:// prefix"),
) -> None:
    """Web dashboard: the stats report as charts (overview, quality, annotation) and a clip browser; Ctrl-C stops it."""
    from dashboards.app import serve

    try:
        serve(root, host, port, datasets)
    except FileNotFoundError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


@app.command()
def annotate(
    catalog: str = typer.Argument(..., help="an ingest output folder or s3:// prefix; proposals are added to its catalog"),
    backend: str = typer.Option("auto", "--backend",
                                help="vllm | vllm-inproc | rules; auto = vllm when an endpoint is set, else rules"),
    endpoint: str = typer.Option(None, "--endpoint", envvar="VLA_VLM_ENDPOINT",
                                 help="OpenAI-compatible base URL, e.g. http://HOST:8000/v1"),
    model: str = typer.Option(None, "--model", envvar="VLA_VLM_MODEL",
                              help="served model name (default: the server's first); a model path for vllm-inproc"),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="requests in flight (vllm) or engines (inproc)"),
    prompt: str = typer.Option("subtasks-v1", "--prompt", help="prompt template folder in annotators/prompts/"),
    rate_hz: float = typer.Option(1.0, "--rate-hz", help="frames per second of active recording, per view"),
    max_samples: int = typer.Option(12, "--max-samples", help="at most this many frames per view"),
    image_size: str = typer.Option("320x240", "--image-size", help="frames are resized to WIDTHxHEIGHT"),
    max_tokens: int = typer.Option(1024, "--max-tokens"),
    temperature: float = typer.Option(0.0, "--temperature"),
    timeout: float = typer.Option(300, "--timeout", help="seconds per request"),
    retries: int = typer.Option(4, "--retries", help="retries on 429/5xx/connection errors, with backoff"),
    tensor_parallel: int = typer.Option(1, "--tensor-parallel", help="vllm-inproc: GPUs per engine"),
    max_model_len: int = typer.Option(32768, "--max-model-len", help="vllm-inproc: engine context length"),
    robot: str = typer.Option(None, "--robot", help="only this robot"),
    limit: int = typer.Option(None, "--limit", help="only the first N recordings"),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: RAY_ADDRESS, else in-process)"),
) -> None:
    """Propose task and subtask instructions per recording with a VLM (schema-constrained) or signal rules."""
    import aiohttp

    from annotators.frames import FrameSampling
    from annotators.vllm_client import Sampling
    from jobs.annotate import run_annotate

    if backend == "auto":
        backend = "vllm" if endpoint else "rules"
        console.print(f"backend: {backend} ({'VLA_VLM_ENDPOINT/--endpoint is ' + endpoint if endpoint else 'no VLM endpoint set'})")
    w, h = _size(image_size)
    frames = FrameSampling(rate_hz=rate_hz, max_samples=max_samples, width=w, height=h)
    engine = {"tensor_parallel_size": tensor_parallel, "max_model_len": max_model_len,
              "limit_mm_per_prompt": {"image": 3 * max_samples, "video": 0}}
    try:
        r = run_annotate(catalog, backend, endpoint, model, concurrency, prompt, frames,
                         Sampling(max_tokens=max_tokens, temperature=temperature), robot=robot, limit=limit,
                         address=address, timeout_s=timeout, retries=retries, engine=engine)
    except (FileNotFoundError, ValueError, RuntimeError, aiohttp.ClientError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    made_by = "rules-made (from robot signals, no VLM)" if r.backend == "rules" else f"VLM {r.model}"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(r.by_status.items()))
    console.print(f"{r.recordings} recordings annotated by {made_by}, prompt {r.prompt_version}: {counts}; "
                  f"{r.cached} reused from earlier runs, {r.requests} requests, {r.tokens_in} tokens in, "
                  f"{r.tokens_out} out, {r.elapsed_s:.1f} s")
    for episode_id, reason in r.pending:
        console.print(f"[yellow]pending[/yellow] {episode_id}: {reason}")
    console.print(f"Proposals: {r.tables['proposals']}  (vla-data sql {catalog} \"SELECT * FROM proposals\")")
    if r.pending:
        raise typer.Exit(1)


@app.command()
def export(
    catalog: str = typer.Argument(..., help="an ingest output folder or s3:// prefix"),
    out: str = typer.Argument(..., help="where the datasets go (folder or s3:// prefix): OUT/<robot>/"),
    robot: str = typer.Option(None, "--robot", help="only this robot (default: every robot in the catalog)"),
    episode_unit: str = typer.Option("clip", "--episode-unit", help="clip | recording"),
    codec: str = typer.Option("av1", "--codec", help="av1 | h264"),
    size: str = typer.Option(None, "--size", help="resize cameras to WIDTHxHEIGHT, or the preset lingbot (224x224)"),
    template: str = typer.Option("{task}: {subtask}", "--task-template",
                                 help="clip task string when the clip has a subtask instruction"),
    format: str = typer.Option("v3.0", "--format", help="v3.0 | v2.1 (per-episode layout for openpi / older LingBot)"),
    depth: bool = typer.Option(False, "--depth", help="add the depth cameras kept by `ingest --depth` (lossless "
                               "12-bit HEVC in mm, is_depth_map)"),
) -> None:
    """Write LeRobot datasets (one per robot) from the catalog's clips, reviews and proposals, validated and published
    atomically."""
    from jobs.export import run_export

    try:
        reports = run_export(catalog, out, robot, episode_unit, codec, _size(size) if size else None, template,
                             fmt=format, depth=depth)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    for r in reports:
        sources = ", ".join(f"{n} {k}" for k, n in r.by_source.items())
        console.print(f"{r.robot}: {r.episodes} episodes ({sources}; {r.unusable_spans} unusable spans left out), "
                      f"{r.frames} frames, {r.tasks} tasks ({r.placeholder_episodes} episodes with a placeholder "
                      f"task), {r.video_files} video files, {r.data_files} data files -> {r.path}")


@app.command("norm-stats")
def norm_stats(
    datasets: list[str] = typer.Argument(..., help="LeRobot v3.0 datasets written by `vla-data export` (folders or "
                                         "s3:// prefixes)"),
    out: str = typer.Option(..., "--out", help="norm_stats.json to write (a path or an s3:// URI)"),
    relative: str = typer.Option("", "--subtract-state",
                                 help="comma-separated action groups made relative to the state, e.g. arm.position"),
) -> None:
    """LingBot/openpi norm stats {"norm_stats": {key: {mean, std, q01, q99, q02, q98, min, max}}, "count": N}."""
    import json

    from jobs.export import run_norm_stats

    from pipeline import storage

    try:
        result = run_norm_stats([storage.local_mirror(d, ("meta", "data")) for d in datasets],
                                {g for g in relative.split(",") if g})
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    storage.write_bytes(out, json.dumps(result, indent=1).encode())
    console.print(f"norm stats of {result['count']} frames, keys {sorted(result['norm_stats'])} -> {out}")


@app.command()
def merge(
    datasets: list[str] = typer.Argument(..., help="LeRobot v3.0 datasets with the same features, then OUT (folders "
                                         "or s3:// prefixes)"),
) -> None:
    """Merge LeRobot v3.0 datasets into the last path given, re-indexing episodes, tasks and video files."""
    from pipeline import storage
    from pipeline.lerobot_merge import merge_datasets

    if len(datasets) < 3:
        raise typer.BadParameter("give at least two datasets and an output path")
    try:
        r = merge_datasets([storage.local_mirror(d) for d in datasets[:-1]], datasets[-1])
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    console.print(f"merged {len(datasets) - 1} datasets: {r['episodes']} episodes, {r['frames']} frames, "
                  f"{r['tasks']} tasks -> {r['path']}")


@app.command()
def validate(dataset: str = typer.Argument(..., help="a LeRobot v3.0 dataset folder or s3:// prefix")) -> None:
    """Check a LeRobot dataset against the invariants its loaders rely on; exit 1 on any problem."""
    from pipeline import storage
    from pipeline.lerobot_validate import validate_dataset

    try:
        problems = validate_dataset(storage.local_mirror(dataset))
    except FileNotFoundError as e:
        problems = [str(e)]
    for p in problems:
        console.print(f"[red]problem:[/red] {p}")
    if problems:
        raise typer.Exit(1)
    console.print(f"{dataset}: valid LeRobot dataset")


@app.command()
def train(
    config: Path = typer.Argument(..., help="training YAML (see configs/train/demo.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in OUTPUT_DIR"),
    nproc: int = typer.Option(1, "--nproc", min=1, help="data-parallel processes (torchrun when > 1)"),
    stop_at: int = typer.Option(None, "--stop-at", help="stop at this step with a checkpoint (then --resume)"),
) -> None:
    """Train the flow-matching policy with FSDP2 on LeRobot datasets and their norm stats."""
    import os
    import subprocess
    import sys

    from pydantic import ValidationError

    from pipeline import storage
    from trainer.config import load_config
    from trainer.train import train as run_train

    try:
        cfg = load_config(config)
        cfg.localize()  # once here, not in every rank
    except (FileNotFoundError, ValidationError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "trainer.train", str(config)] + (["--resume"] if resume else []) + \
            (["--stop-at", str(stop_at)] if stop_at else [])
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        raise typer.Exit(subprocess.run(cmd, env=env).returncode)
    rows = run_train(cfg, resume, stop_at)
    if rows:
        step = rows[-1]["step"]
        done = (f"final weights in {storage.join(cfg.output_dir, 'export')}" if step == cfg.steps
                else "continue with --resume")
        console.print(f"trained to step {step} of {cfg.steps}: loss {rows[-1]['loss']:.4f}; checkpoints in "
                      f"{storage.join(cfg.output_dir, 'checkpoints')}; {done}")


@app.command("eval")
def eval_(
    export: str = typer.Argument(..., help="OUTPUT_DIR/export of a training run (a folder or s3:// prefix)"),
    dataset: str = typer.Argument(..., help="a LeRobot dataset with held-out episodes (a folder or s3:// prefix)"),
    episodes: str = typer.Option("", "--episodes", help="comma-separated episode indices (default: all)"),
    every: int = typer.Option(10, "--every", min=1, help="evaluate every N-th frame"),
    norm_stats: Path = typer.Option(None, "--norm-stats", help="default: DATASET/norm_stats.json"),
) -> None:
    """Open-loop action error (MSE per joint group, normalized units) of a trained policy."""
    from pipeline import storage
    from trainer.evaluate import evaluate

    try:
        r = evaluate(storage.local_mirror(export), storage.local_mirror(dataset), norm_stats, [int(e) for e in episodes.split(",") if e] or None, every)
    except (FileNotFoundError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    groups = ", ".join(f"{k} {v:.4f}" for k, v in r["mse"].items())
    console.print(f"{r['frames']} frames: MSE {r['mse_all']:.4f} ({groups})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="any vla-data command: ingest, export, annotate, norm-stats, ..."),
    address: str = typer.Option(..., "--address", envvar="RAY_ADDRESS",
                                help="the cluster's Jobs API, e.g. http://HEAD:8265"),
    install: bool = typer.Option(False, "--install", help="also install the pinned dependencies on the cluster "
                                                          "(nodes set up by ray_cluster.yaml already have them)"),
) -> None:
    """Run `vla-data JOB ARGS...` on a Ray cluster through the Jobs API, streaming its logs; exits with the job's
    status. Without `submit`, the same command runs embedded. Give paths the cluster can reach (s3://...)."""
    from jobs.submit import submit as submit_job

    if job not in {c.name or c.callback.__name__ for c in app.registered_commands} | {"stats", "review"}:
        raise typer.BadParameter(f"unknown vla-data command {job!r}")
    raise typer.Exit(submit_job([job, *ctx.args], address, install))


def _csv(rel) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(rel.columns)
    w.writerows(rel.fetchall())
    return buf.getvalue()


if __name__ == "__main__":
    app()
