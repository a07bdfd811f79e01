"""`vla-data review`: the local Label Studio server where humans review and refine clip annotations."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pipeline import labelstudio_service as ls

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(soft_wrap=True)
WORK = typer.Option(Path("work/review"), "--work", help="work folder; the server keeps its state in WORK/labelstudio")


@app.command()
def up(work: Path = WORK, port: int = typer.Option(8089, "--port", help="port on 127.0.0.1")) -> None:
    """Start the Label Studio server for WORK (or show the one already running); the first start takes minutes."""
    try:
        s = ls.up(work, port)
    except ls.ServiceError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")  # the log tail may hold [...]
        raise typer.Exit(2) from None
    # Where the secrets are, never the secrets themselves.
    console.print(f"Label Studio at {s.url} (pid {s.pid}, log {s.log_path})\n"
                  f"login {ls.ADMIN_EMAIL}, password in {s.password_path or '$' + ls.PASSWORD_ENV}; "
                  f"API token in {s.token_path or '$' + ls.TOKEN_ENV}")


@app.command()
def down(work: Path = WORK) -> None:
    """Stop the Label Studio server of WORK."""
    console.print("stopped" if ls.down(work) else f"no Label Studio running for {work}")
