"""`intakebot`: one command line with a sub-command per part of the product."""

from __future__ import annotations

import typer

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


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Interface to listen on (INTAKEBOT_HOST)."),
    port: int | None = typer.Option(None, help="Port to listen on (PORT or INTAKEBOT_PORT)."),
) -> None:
    """Run the whole product: web chat, APIs and consoles, on embedded defaults."""
    from bot.app import run
    from bot.settings import Settings

    settings = Settings.from_env()
    run(settings, host=host or settings.host, port=port or settings.port)


@app.command()
def chat() -> None:
    """Talk to the bot in the terminal (the same conversation as the web chat)."""
    import asyncio

    from bot.settings import Settings
    from bot.terminal import run

    asyncio.run(run(Settings.from_env()))


def main() -> None:
    app()
