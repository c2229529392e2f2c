"""`intakebot retention …` and `intakebot customer …`, and the legal-hold route of the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from typer.testing import CliRunner

from bot.cli import app
from handoff.evidence import EvidenceStore
from handoff.tickets import Ticket, TicketStore
from tests.handoff.conftest import Desk
from tests.handoff.test_retention import ALICE, BOB, audits, seed

T = TypeVar("T")
# The command line purges against the real clock.
LONG_AGO = datetime.now(UTC) - timedelta(days=4 * 366)


def with_store(data_dir: Path, body: Callable[[TicketStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await TicketStore.open(f"sqlite+aiosqlite:///{data_dir / 'intakebot.db'}")
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


def seeded(data_dir: Path) -> tuple[Ticket, Ticket, str]:
    """Two old closed tickets (Alice's with a photo); the photo's SHA-256."""

    async def body(store: TicketStore) -> tuple[Ticket, Ticket, str]:
        photo = await EvidenceStore(data_dir / "evidence").put("p.png", "image/png", b"png")
        alice = await seed(store, ALICE, closed_at=LONG_AGO, files=(photo,))
        bob = await seed(store, BOB, closed_at=LONG_AGO)
        return alice, bob, photo.sha256

    return with_store(data_dir, body)


def test_purge_is_a_dry_run_until_executed_and_respects_holds(tmp_path: Path) -> None:
    env = {"INTAKEBOT_DATA_DIR": str(tmp_path)}
    alice, bob, sha = seeded(tmp_path)
    runner = CliRunner()
    short = runner.invoke(app, ["retention", "purge", "--older-than", "2y"], env=env)
    assert short.exit_code == 1 and "at least 3 years" in short.output
    bad = runner.invoke(app, ["retention", "purge", "--older-than", "soon"], env=env)
    assert bad.exit_code == 1 and "bad period" in bad.output

    hold = runner.invoke(app, ["retention", "hold", bob.number, "--reason", "lawsuit",
                               "--actor", "sue"], env=env)
    assert hold.exit_code == 0, hold.output
    assert f"{bob.number} on legal hold" in hold.output
    missing = runner.invoke(app, ["retention", "hold", "TS19990101-0001", "--reason", "x"],
                            env=env)
    assert missing.exit_code == 1 and "no ticket" in missing.output

    dry = runner.invoke(app, ["retention", "purge", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output)
    assert report["dry_run"] and report["tickets"] == [alice.number]
    assert report["held"] == [bob.number]
    assert (tmp_path / "evidence").exists() and EvidenceStore(tmp_path / "evidence").exists(sha)

    done = runner.invoke(app, ["retention", "purge", "--older-than", "1095d", "--execute",
                               "--actor", "ops"], env=env)
    assert done.exit_code == 0, done.output
    assert "purged 1 closed complaints" in done.output and alice.number in done.output
    assert not EvidenceStore(tmp_path / "evidence").exists(sha)

    async def check(store: TicketStore) -> list[str]:
        return [r.actor for r in await audits(store, "retention_purge")]

    assert with_store(tmp_path, check) == ["ops"]
    released = runner.invoke(app, ["retention", "hold", bob.number, "--release", "--reason",
                                   "settled"], env=env)
    assert released.exit_code == 0 and "released" in released.output


def test_customer_export_and_erase(tmp_path: Path) -> None:
    env = {"INTAKEBOT_DATA_DIR": str(tmp_path)}
    alice, _bob, sha = seeded(tmp_path)
    runner = CliRunner()
    out, files = tmp_path / "alice.json", tmp_path / "files"
    exported = runner.invoke(app, ["customer", "export", ALICE.phone, "--out", str(out),
                                   "--with-files", str(files)], env=env)
    assert exported.exit_code == 0, exported.output
    document = json.loads(out.read_text("utf-8"))
    assert document["tickets"][0]["ticket"]["number"] == alice.number
    assert (files / f"{sha}.png").read_bytes() == b"png"
    printed = runner.invoke(app, ["customer", "export", ALICE.email], env=env)
    assert printed.exit_code == 0 and json.loads(printed.output)["tickets"]
    unknown = runner.invoke(app, ["customer", "export", "nobody@example.com"], env=env)
    assert unknown.exit_code == 1 and "nothing is held" in unknown.output

    declined = runner.invoke(app, ["customer", "erase", ALICE.phone], env=env, input="n\n")
    assert declined.exit_code == 1 and "Erase 1 complaints" in declined.output
    assert json.loads(runner.invoke(app, ["customer", "export", ALICE.phone],
                                    env=env).output)["tickets"]
    confirmed = runner.invoke(app, ["customer", "erase", ALICE.phone, "--actor", "dpo"],
                              env=env, input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert f"erased 1 complaints: {alice.number}" in confirmed.output
    again = runner.invoke(app, ["customer", "erase", ALICE.phone, "--yes"], env=env)
    assert again.exit_code == 0 and "nothing is held" in again.output

    async def check(store: TicketStore) -> tuple[str | None, list[str]]:
        ticket = await store.get(alice.id)
        return ticket.phone, [r.actor for r in await audits(store, "customer_erased")]

    assert with_store(tmp_path, check) == (None, ["dpo"])


def test_erase_on_hold_needs_an_override_with_a_reason(tmp_path: Path) -> None:
    env = {"INTAKEBOT_DATA_DIR": str(tmp_path)}
    alice, _bob, _sha = seeded(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["retention", "hold", alice.number, "--reason", "police"],
                         env=env).exit_code == 0
    blocked = runner.invoke(app, ["customer", "erase", ALICE.phone, "--yes"], env=env)
    assert blocked.exit_code == 1 and "legal hold" in blocked.output
    no_reason = runner.invoke(app, ["customer", "erase", ALICE.phone, "--yes",
                                    "--override-hold"], env=env)
    assert no_reason.exit_code == 1 and "reason" in no_reason.output
    forced = runner.invoke(app, ["customer", "erase", ALICE.phone, "--yes", "--override-hold",
                                 "--reason", "court order", "--json"], env=env)
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["overridden"] == [alice.number]


async def test_legal_hold_route_roles_and_audit(desk: Desk) -> None:
    await desk.add_user("alice", "agent", "quality")
    await desk.add_user("sue", "supervisor")
    _chat, ticket_id = await desk.complaint()
    url = f"/api/tickets/{ticket_id}/legal-hold"
    body = {"hold": True, "reason": "consumer association inquiry"}
    await desk.call("POST", url, None, json=body, status=401)
    await desk.call("POST", url, "alice", json=body, status=403)
    await desk.call("POST", "/api/tickets/no-such-ticket/legal-hold", "sue", json=body,
                    status=404)
    for bad in ({"hold": "yes", "reason": "x"}, {"hold": True}, {"hold": True, "reason": ""},
                {"hold": True, "reason": "x" * 501}):
        await desk.call("POST", url, "sue", json=bad, status=400)
    await desk.call("POST", url, "sue", data=b"[1, 2]", status=400)
    held = await desk.call("POST", url, "sue", json=body)
    assert held["legal_hold"] is True and held["held"] is True and held["id"] == ticket_id
    released = await desk.call("POST", url, "sue", json={"hold": False, "reason": "answered"})
    assert released["legal_hold"] is False
    trail = await desk.call("GET", f"/api/tickets/{ticket_id}/audit", "sue")
    assert [(a["actor"], a["action"], a["detail"]["reason"]) for a in trail["audit"]
            if a["action"].startswith("legal_hold")] == [
        ("sue", "legal_hold", "consumer association inquiry"),
        ("sue", "legal_hold_released", "answered")]
