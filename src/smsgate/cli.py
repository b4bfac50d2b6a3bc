"""The ``smsgate`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="smsgate: SMS gateway")


@app.command()
def version() -> None:
    """Print the version."""
    from smsgate import __version__

    typer.echo(__version__)
