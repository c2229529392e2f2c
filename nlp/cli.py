"""`intakebot nlp …`: analyse, train and evaluate the triage models."""

from __future__ import annotations

import typer

app = typer.Typer(help="Complaint triage: intent, category, emotion, priority, slots.",
                  no_args_is_help=True)
