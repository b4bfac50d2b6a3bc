"""The ``smsgate`` command line."""

from __future__ import annotations

import asyncio

import typer

from smsgate import eventloop
from smsgate.config import get_settings
from smsgate.logs import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, help="smsgate: SMS gateway")


@app.command()
def version() -> None:
    """Print the version."""
    from smsgate import __version__

    typer.echo(__version__)


@app.command("simulator")
def simulator_command(
    config: str = typer.Option(
        ...,
        "--config",
        help="Provisioning file (TOML): operators "
        "whose binds to accept, short numbers that price MOs.",
    ),
    smpp_port: int = typer.Option(2775, "--smpp-port", help="SMPP port (0: any free port)."),
    http_port: int = typer.Option(8775, "--http-port", help="Control API port (0: any)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    gateway_url: str | None = typer.Option(
        None, "--gateway-url", help="Gateway base URL that call events are forwarded to."
    ),
    intake_secret: str | None = typer.Option(
        None,
        "--intake-secret",
        envvar="SMSGATE_SIM_INTAKE_SECRET",
        help="Bearer secret for the gateway's intake (default: the operator's intake_secret).",
    ),
    dlr_delay_ms: int = typer.Option(0, "--dlr-delay-ms", help="Delay before each receipt."),
    dlr_outcome: str = typer.Option("DELIVRD", "--dlr-outcome", help="Receipt stat: word."),
    receipt_before_resp: bool = typer.Option(
        False, "--receipt-before-resp", help="Send each receipt before its submit_sm_resp."
    ),
    inbox_limit: int = typer.Option(
        1000, "--inbox-limit", help="Messages kept per handset (0: none, for benchmarks)."
    ),
    mo_message_ids: bool = typer.Option(
        False, "--mo-message-ids", help="Name MO parts with receipted_message_id."
    ),
    window: int = typer.Option(
        1000, "--window", help="deliver_sm left unanswered per session (1: one at a time)."
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Run the built-in operator simulator: an SMSC over SMPP and its HTTP control API."""

    from smsgate.domain.config_errors import ConfigError
    from smsgate.logs import configure_logging
    from smsgate.simulator import SimulatorOptions, load_config
    from smsgate.simulator.receipts import DlrSettings
    from smsgate.simulator.runner import run_simulator

    configure_logging(log_level.upper())
    try:
        dlr = DlrSettings(
            delay_ms=dlr_delay_ms, outcome=dlr_outcome.upper(), before_resp=receipt_before_resp
        )
    except ValueError as exc:
        # A wrong option, not a wrong file: say which option.
        typer.echo(f"--dlr-outcome/--dlr-delay-ms: {exc}", err=True)
        raise typer.Exit(2) from None
    if window < 1:
        typer.echo("--window: at least 1", err=True)
        raise typer.Exit(2)
    try:
        options = SimulatorOptions(
            gateway_url=gateway_url,
            intake_secret=intake_secret,
            dlr=dlr,
            inbox_limit=max(inbox_limit, 0),
            mo_message_ids=mo_message_ids,
            window=window,
        )
        loaded = load_config(config, options)
    except ConfigError as exc:
        for line in exc.lines():
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(2) from None
    eventloop.run(run_simulator(loaded, host=host, smpp_port=smpp_port, http_port=http_port))


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


@app.command("send-csv")
def send_csv_command(
    file: str = typer.Argument(
        ..., help="CSV: a header row, column msisdn, and column text (or --template)."
    ),
    service: int = typer.Option(..., "--service", help="The bulk service to send through."),
    template: str | None = typer.Option(
        None, "--template", help="The text, with {column} placeholders filled from each row."
    ),
    batch: int = typer.Option(100, "--batch", min=1, max=1000, help="Rows per transaction."),
    new: bool = typer.Option(
        False, "--new", help="Start a new campaign even if this file was sent before."
    ),
) -> None:
    """Send a campaign from FILE through a bulk service; run it again to resume."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from rich.table import Table

    from smsgate.app import build_runtime
    from smsgate.config import Settings
    from smsgate.domain.money import format_amount
    from smsgate.services import campaigns
    from smsgate.store.migrate import upgrade

    console = Console()
    try:
        source = campaigns.read_csv(Path(file), template=template)
    except campaigns.CampaignError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def run() -> campaigns.RunSummary:
        settings = Settings()
        await upgrade(settings.database_url)
        runtime = build_runtime(settings)
        try:
            opened = await campaigns.open_campaign(
                runtime.sessions, source, service_id=service, now=runtime.clock.now(), new=new
            )
            if opened.resumed:
                console.print(
                    f"Resuming campaign {opened.campaign_id}: "
                    f"{len(opened.done_rows)} of {len(source.rows)} rows already done."
                )
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(
                    f"campaign {opened.campaign_id}",
                    total=len(source.rows),
                    completed=len(opened.done_rows),
                )
                try:
                    return await campaigns.send_rows(
                        runtime.sessions,
                        opened,
                        source,
                        service_id=service,
                        clock=runtime.clock.now,
                        batch_size=batch,
                        on_batch=lambda _s, rows: progress.advance(task, rows),
                    )
                except BaseException:
                    await campaigns.mark_interrupted(
                        runtime.sessions, opened.campaign_id, runtime.clock.now()
                    )
                    raise
        finally:
            await runtime.engine.dispose()

    try:
        summary = asyncio.run(run())
    except campaigns.CampaignError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted: run the same command again to resume.", err=True)
        raise typer.Exit(130) from None
    table = Table(title=f"campaign {summary.campaign_id}: {file}")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("in the file", str(summary.total))
    table.add_row("sent earlier (resumed)", str(summary.sent_before))
    table.add_row("sent now", str(summary.sent))
    for reason, count in sorted(summary.refused.items()):
        table.add_row(f"refused: {reason}", str(count))
    table.add_row("parts sent now", str(summary.parts))
    if summary.currency:
        table.add_row(
            "charged now",
            f"{format_amount(summary.cost_minor, summary.currency)} {summary.currency}",
        )
    console.print(table)


@app.command()
def serve(
    api: bool = typer.Option(True, help="Serve the HTTP API."),
    worker: bool = typer.Option(True, help="Run the outbox worker (webhooks, jobs)."),
    links: bool = typer.Option(True, help="Run the operator SMPP links."),
    migrate: bool = typer.Option(True, help="Bring the database schema up to date first."),
) -> None:
    """Run the gateway: HTTP API, worker and operator links in one process."""
    from smsgate.app import serve as run

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    eventloop.run(
        run(settings, api=api, worker=worker, links=links, migrate=migrate), settings.event_loop
    )


@app.command()
def demo(
    port: int = typer.Option(8080, help="HTTP port of the gateway (and of /sim, /merchant)."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on."),
    database: str = typer.Option("smsgate-demo.db", help="SQLite file the demo keeps."),
) -> None:
    """Run everything on SQLite: gateway, built-in operator over SMPP, sample merchant."""
    from pathlib import Path

    from smsgate.demo.runner import DemoOptions, run_demo

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    eventloop.run(
        run_demo(DemoOptions(host=host, port=port, database=Path(database))), settings.event_loop
    )
