"""`intakebot users add`: staff users from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from handoff.tickets import TicketStore
from handoff.users import UserStore


def test_users_add_with_and_without_a_password(tmp_path: Path) -> None:
    env = {"INTAKEBOT_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    given = runner.invoke(app, ["users", "add", "sue", "--role", "supervisor",
                                "--password", "long-password"], env=env)
    assert given.exit_code == 0, given.output
    assert "added supervisor sue" in given.output
    prompted = runner.invoke(app, ["users", "add", "al", "--role", "agent"], env=env,
                             input="another-pass\nanother-pass\n")
    assert prompted.exit_code == 0, prompted.output
    again = runner.invoke(app, ["users", "add", "al", "--role", "agent", "--password",
                                "another-pass"], env=env)
    assert again.exit_code == 1 and "exists" in again.output
    bad = runner.invoke(app, ["users", "add", "x", "--role", "boss", "--password",
                              "another-pass"], env=env)
    assert bad.exit_code == 1 and "unknown role" in bad.output

    async def login() -> str:
        store = await TicketStore.open(f"sqlite+aiosqlite:///{tmp_path / 'intakebot.db'}")
        try:
            _, user = await UserStore(store.engine).login("al", "another-pass")
        finally:
            await store.close()
        return user.role.value

    assert asyncio.run(login()) == "agent"
