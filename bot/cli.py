"""`intakebot`: one command line with a sub-command per part of the product."""

from __future__ import annotations

import typer

from handoff.report_cli import report as report_command
from handoff.retention_cli import Locations
from handoff.retention_cli import register as register_privacy
from knowledge_base.cli import app as kb_app
from nlp.cli import app as nlp_app

app = typer.Typer(
    name="intakebot",
    help="Complaint intake bot for e-commerce customer service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(nlp_app, name="nlp")
app.add_typer(kb_app, name="kb")
users_app = typer.Typer(help="Staff users of the agent console.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _locations() -> Locations:
    from bot.settings import Settings

    settings = Settings.from_env()
    return Locations(settings.database_url, settings.data_dir)


register_privacy(app, _locations)  # `retention …` and `customer …`


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="The login name."),
    role: str = typer.Option(..., help="agent, supervisor, kb_editor or admin."),
    password: str | None = typer.Option(
        None, help="The password (at least 8 characters); prompted for when not given."),
    department: str | None = typer.Option(None, help="The agent's department (queue)."),
) -> None:
    """Add a staff user; the password is stored as an argon2 hash."""
    import asyncio

    from bot.settings import Settings
    from handoff.errors import HandoffError
    from handoff.tickets import TicketStore
    from handoff.users import UserStore

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def add() -> str:
        store = await TicketStore.open(Settings.from_env().database_url)
        try:
            user = await UserStore(store.engine).add(name, password, role,
                                                     department=department)
        finally:
            await store.close()
        return f"added {user.role.value} {user.username}"

    try:
        typer.echo(asyncio.run(add()))
    except HandoffError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Interface to listen on (INTAKEBOT_HOST)."),
    port: int | None = typer.Option(None, help="Port to listen on (PORT or INTAKEBOT_PORT)."),
    telegram_polling: bool = typer.Option(
        False, "--telegram-polling",
        help="Fetch Telegram updates with getUpdates instead of a webhook (development; "
             "the same as TELEGRAM_POLLING=1)."),
) -> None:
    """Run the whole product: web chat, APIs and consoles, on embedded defaults."""
    import os

    from bot.app import run
    from bot.settings import Settings

    env = dict(os.environ)
    if telegram_polling:
        if not env.get("TELEGRAM_BOT_TOKEN", "").strip():
            typer.echo("error: --telegram-polling needs TELEGRAM_BOT_TOKEN", err=True)
            raise typer.Exit(2)
        env["TELEGRAM_POLLING"] = "1"
    try:
        settings = Settings.from_env(env)
    except ValueError as exc:  # a malformed variable: say which, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run(settings, host=host or settings.host, port=port or settings.port)


@app.command()
def chat() -> None:
    """Talk to the bot in the terminal (the same conversation as the web chat)."""
    import asyncio

    from bot.settings import Settings
    from bot.terminal import run

    asyncio.run(run(Settings.from_env()))


app.command("report")(report_command)


def main() -> None:
    app()
