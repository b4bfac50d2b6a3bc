"""The ``smsgate`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="smsgate: SMS gateway")


@app.command()
def version() -> None:
    """Print the version."""
    from smsgate import __version__

    typer.echo(__version__)


@app.command("apply")
def apply_command(
    file: str = typer.Argument(..., help="Provisioning file (TOML)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and report; change nothing."),
) -> None:
    """Provision FILE into the database of SMSGATE_DATABASE_URL (idempotent)."""
    import asyncio
    import getpass
    from datetime import UTC, datetime
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from smsgate.config import Settings
    from smsgate.domain.config_errors import ConfigError
    from smsgate.services import provisioning
    from smsgate.store.db import make_engine, make_sessionmaker
    from smsgate.store.migrate import upgrade

    path = Path(file)
    if not path.is_file():
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2)
    try:
        actor = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        actor = "cli"

    async def run() -> provisioning.ApplyReport:
        document = provisioning.read_file(path)
        settings = Settings()
        await upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            return await provisioning.apply(
                make_sessionmaker(engine),
                document,
                actor=actor,
                now=datetime.now(UTC),
                source=str(file),
                dry_run=dry_run,
            )
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except ConfigError as exc:
        for line in exc.lines():
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    table = Table(title=f"{file}" + (" (dry run: nothing changed)" if dry_run else ""))
    for column in ("section", "created", "updated", "unchanged"):
        table.add_column(column, justify="left" if column == "section" else "right")
    for section, counts in report.counts.items():
        table.add_row(section, str(counts.created), str(counts.updated), str(counts.unchanged))
    console = Console()
    console.print(table)
    for change in report.changes:
        fields = f": {', '.join(change.fields)}" if change.action == "update" else ""
        console.print(f"{change.action} {change.section} {change.entity_id}{fields}")
