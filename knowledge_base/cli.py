"""`intakebot kb …`: manage and search the FAQ knowledge base."""

from __future__ import annotations

import typer

app = typer.Typer(help="Knowledge base: import, edit, publish, search, evaluate.",
                  no_args_is_help=True)
