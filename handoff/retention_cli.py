"""`intakebot retention …` and `intakebot customer …`: retention and privacy from the command line.

handoff may not import the wiring, so the command line hands in a `locate` function that reads
the settings (database URL and data directory) when a command runs; `register` mounts both
sub-commands on it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from handoff.errors import HandoffError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Locations:
    """Where the product keeps its data: the async database URL and the data directory."""

    database_url: str
    data_dir: Path


Locate = Callable[[], Locations]

ActorOpt = Annotated[str | None, typer.Option(
    "--actor", help="Who does this, for the audit trail (default cli:<login name>).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
IdentArg = Annotated[str, typer.Argument(
    metavar="ID", help="Phone number, e-mail, customer id or channel:chat_id.")]


def _actor(given: str | None) -> str:
    if given and given.strip():
        return given.strip()[:64]
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command; handoff and file-system errors become a message and exit code 1."""
    try:
        return asyncio.run(coro)
    except (HandoffError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


async def _with_stores(where: Locations, body: Callable[[Any, Any], Awaitable[T]]) -> T:
    from handoff.evidence import EvidenceStore
    from handoff.tickets import TicketStore

    store = await TicketStore.open(where.database_url)
    try:
        return await body(store, EvidenceStore(where.data_dir / "evidence"))
    finally:
        await store.close()


def register(app: typer.Typer, locate: Locate) -> None:
    """Add the ``retention`` and ``customer`` sub-commands to `app`."""
    app.add_typer(retention_app(locate), name="retention")
    app.add_typer(customer_app(locate), name="customer")


def retention_app(locate: Locate) -> typer.Typer:
    """``retention purge`` and ``retention hold``."""
    app = typer.Typer(help="Retention: purge old closed complaints, legal hold.",
                      no_args_is_help=True)

    @app.command("purge")
    def purge_command(
        older_than: Annotated[str, typer.Option(
            "--older-than", help="Closed longer ago than this: 3y, 36m or 1095d.")] = "3y",
        execute: Annotated[bool, typer.Option(
            "--execute", help="Delete for real (the default is a dry run).")] = False,
        force_below_minimum: Annotated[bool, typer.Option(
            "--force-below-minimum",
            help="Allow a period under the SOP's three-year minimum.")] = False,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """List, or with --execute delete, closed complaints older than the period.

        Tickets on legal hold or flagged malicious are kept. An executed purge is audited.
        """
        from handoff.retention import parse_duration, purge
        from handoff.tickets import utcnow

        async def body(store: Any, evidence: Any) -> Any:
            period = parse_duration(older_than)
            return await purge(store, evidence, period, utcnow(), dry_run=not execute,
                               actor=_actor(actor), force_below_minimum=force_below_minimum)

        report = _run(_with_stores(locate(), body))
        if as_json:
            typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
            return
        verb = "would purge" if report.dry_run else "purged"
        typer.echo(f"{verb} {len(report.numbers)} closed complaints closed before "
                   f"{report.cutoff.date().isoformat()}; {len(report.held)} kept on hold")
        for table, count in report.counts.items():
            typer.echo(f"  {table}: {count}")
        for number in report.numbers:
            typer.echo(f"  - {number}")
        if report.dry_run and report.numbers:
            typer.echo("dry run: nothing was deleted; run again with --execute")

    @app.command("hold")
    def hold_command(
        ticket: Annotated[str, typer.Argument(help="Complaint number (or ticket id).")],
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit).")],
        release: Annotated[bool, typer.Option("--release", help="Lift the hold.")] = False,
        actor: ActorOpt = None,
    ) -> None:
        """Put a complaint on legal hold (kept past any purge, not erasable), or release it."""
        from handoff.retention import find_ticket, is_held, set_legal_hold
        from handoff.tickets import utcnow

        async def body(store: Any, _evidence: Any) -> str:
            found = await find_ticket(store, ticket)
            done = await set_legal_hold(store, found.id, hold=not release, actor=_actor(actor),
                                        reason=reason, now=utcnow())
            state = "on legal hold" if done.legal_hold else "released from legal hold"
            if not done.legal_hold and is_held(done):
                state += " (still held: flagged malicious)"
            return f"{done.number} {state}"

        typer.echo(_run(_with_stores(locate(), body)))

    return app


def customer_app(locate: Locate) -> typer.Typer:
    """``customer export`` and ``customer erase``."""
    app = typer.Typer(help="A customer's personal data: export, erase.", no_args_is_help=True)

    @app.command("export")
    def export_command(
        ident: IdentArg,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Write the JSON here (default: standard output).")] = None,
        with_files: Annotated[Path | None, typer.Option(
            "--with-files", help="Copy the evidence files into this directory.")] = None,
        actor: ActorOpt = None,
    ) -> None:
        """Everything held about the customer as one JSON document (audited)."""
        from handoff.customers import export
        from handoff.tickets import utcnow

        async def body(store: Any, evidence: Any) -> dict[str, Any]:
            return await export(store, evidence, ident, actor=_actor(actor), now=utcnow(),
                                files_dir=with_files)

        document = json.dumps(_run(_with_stores(locate(), body)), ensure_ascii=False,
                              indent=2)
        if out is None:
            typer.echo(document)
            return
        try:
            out.write_text(document + "\n", encoding="utf-8")
        except OSError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"wrote {out}")

    @app.command("erase")
    def erase_command(
        ident: IdentArg,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
        override_hold: Annotated[bool, typer.Option(
            "--override-hold", help="Erase even complaints on legal hold (needs --reason).")
        ] = False,
        reason: Annotated[str | None, typer.Option(
            "--reason", help="Why the hold is overridden (kept in the audit).")] = None,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Anonymise everything held about the customer; the audit trail is kept."""
        from handoff.customers import erase, find
        from handoff.tickets import utcnow

        where = locate()
        if not yes:
            async def look(store: Any, _evidence: Any) -> Any:
                return await find(store, ident)

            held = _run(_with_stores(where, look))
            if not held.ticket_ids and not held.conversations:
                typer.echo(f"nothing is held about {ident}")
                return
            typer.confirm(f"Erase {len(held.ticket_ids)} complaints in "
                          f"{len(held.conversations)} conversations of {ident}? "
                          "This cannot be undone", abort=True)

        async def body(store: Any, evidence: Any) -> Any:
            return await erase(store, evidence, ident, actor=_actor(actor), now=utcnow(),
                               override_hold=override_hold, reason=reason,
                               data_dir=where.data_dir)

        report = _run(_with_stores(where, body))
        if as_json:
            typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        elif not report.counts:
            typer.echo(f"nothing is held about {ident}")
        else:
            typer.echo(f"erased {len(report.numbers)} complaints: "
                       + (", ".join(report.numbers) or "(conversation only)"))
            for table, count in report.counts.items():
                typer.echo(f"  {table}: {count}")

    return app
