"""`vla-data review`: the local Label Studio server where humans review and refine clip annotations."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pipeline import labelstudio_service as ls
from pipeline.review_push import DEFAULT_PROJECT

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(soft_wrap=True)
WORK = typer.Option(Path("work/review"), "--work", help="work folder; the server keeps its state in WORK/labelstudio")
PROJECT = typer.Option(DEFAULT_PROJECT, "--project", help="Label Studio project title")
URL = typer.Option(None, "--url", help="Label Studio URL (default: the server `review up` started for WORK)")


def _client(work: Path, url: str | None):
    from pipeline.labelstudio_client import LabelStudio

    return LabelStudio(url or ls.server_url(work), ls.token(work))


def _fail(e: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(e))}")  # messages may hold [...]
    raise typer.Exit(2) from None


@app.command()
def up(work: Path = WORK, port: int = typer.Option(8089, "--port", help="port on 127.0.0.1")) -> None:
    """Start the Label Studio server for WORK (or show the one already running); the first start takes minutes."""
    try:
        s = ls.up(work, port)
    except ls.ServiceError as e:
        _fail(e)
    # Where the secrets are, never the secrets themselves.
    console.print(f"Label Studio at {s.url} (pid {s.pid}, log {s.log_path})\n"
                  f"login {ls.ADMIN_EMAIL}, password in {s.password_path or '$' + ls.PASSWORD_ENV}; "
                  f"API token in {s.token_path or '$' + ls.TOKEN_ENV}")


@app.command()
def down(work: Path = WORK) -> None:
    """Stop the Label Studio server of WORK."""
    console.print("stopped" if ls.down(work) else f"no Label Studio running for {work}")


@app.command()
def push(catalog: str = typer.Argument(..., help="an ingest output folder or s3:// prefix with proposals (vla-data annotate)"),
         work: Path = WORK, project: str = PROJECT, url: str = URL,
         limit: int = typer.Option(None, "--limit", help="only the first N recordings")) -> None:
    """Queue recordings with their current proposals as Label Studio tasks (idempotent)."""
    from pipeline.labelstudio_client import ReviewError
    from pipeline.review_push import push as run_push

    try:
        r = run_push(catalog, _client(work, url), ls.media_dir(work), project, limit)
    except (ReviewError, ls.ServiceError, FileNotFoundError) as e:
        _fail(e)
    console.print(f"project {project!r} (id {r.project_id}): {r.queued} recordings, {r.created} new tasks, "
                  f"{r.predictions_added} new proposal versions, {r.unchanged} unchanged; "
                  f"{r.without_proposal} recordings without a proposal (run vla-data annotate)")


@app.command()
def pull(catalog: str = typer.Argument(..., help="the catalog (folder or s3:// prefix) the tasks were pushed from"),
         work: Path = WORK, project: str = PROJECT, url: str = URL,
         full: bool = typer.Option(False, "--full", help="re-read every annotated task, not only updated ones")) -> None:
    """Read submitted annotations back into the catalog (annotations, annotation_spans tables)."""
    from pipeline.labelstudio_client import ReviewError
    from pipeline.review_pull import pull as run_pull

    try:
        r = run_pull(catalog, _client(work, url), project, full)
    except (ReviewError, ls.ServiceError, FileNotFoundError) as e:
        _fail(e)
    console.print(f"project {project!r} (id {r.project_id}): {r.tasks} annotated tasks read, "
                  f"{r.new_versions} new annotation versions"
                  + (f", {r.unknown_tasks} tasks not pushed from this catalog" if r.unknown_tasks else ""))
