"""`intakebot chat`: the conversation in a terminal, driven with scripted input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.dispatcher import Dispatcher
from bot.engine import Engine
from bot.session import InMemoryDeduplicator, InMemoryLockStore, InMemorySessionStore
from bot.terminal import CHANNEL, TerminalChannel, converse
from tests.bot.conftest import RecordingDesk


def scripted(lines: list[str]) -> Callable[[str], str]:
    feed: Iterator[str] = iter(lines)

    def read_line(prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return read_line


async def test_a_conversation_in_the_terminal(engine: Engine, desk: RecordingDesk) -> None:
    out: list[str] = []
    channel = TerminalChannel(out.append)
    dispatcher = Dispatcher(engine, InMemorySessionStore(), InMemoryLockStore(),
                            InMemoryDeduplicator(), {CHANNEL: channel})
    await converse(dispatcher, channel, scripted([
        "我买的蓝牙耳机用了两天就坏了，订单号4521987634123，手机13812345678，我要退款",
        "1",  # the first button: 确认
        "谢谢",
    ]), chat_id="t1")
    text = "\n".join(out)
    assert "  [1] 确认" in text and "  [2] 修改" in text
    assert "TS000001" in text
    [draft] = desk.drafts
    assert draft.channel == CHANNEL and draft.order_id == "4521987634123"


async def test_numbers_pick_buttons_only_while_there_are_buttons() -> None:
    channel = TerminalChannel(lambda _: None)
    assert channel.resolve("2") == "2"
    channel.buttons = ("是", "否")
    assert channel.resolve(" 2 ") == "否"
    assert channel.resolve("3") == "3"


async def test_quit_ends_the_conversation(engine: Engine) -> None:
    out: list[str] = []
    channel = TerminalChannel(out.append)
    dispatcher = Dispatcher(engine, InMemorySessionStore(), InMemoryLockStore(),
                            InMemoryDeduplicator(), {CHANNEL: channel})
    await converse(dispatcher, channel, scripted(["/quit", "你好"]))
    assert out == []


def test_the_chat_command_is_listed() -> None:
    result = CliRunner().invoke(app, ["chat", "--help"])
    assert result.exit_code == 0
    assert "terminal" in result.output


@pytest.mark.slow
def test_intakebot_chat_runs_on_the_embedded_defaults(tmp_path: Path, data_dir: Path) -> None:
    """The real command with piped stdin (loads the models: slow)."""
    env = {**os.environ, "INTAKEBOT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "chat"],
        input="怎么开发票？\n1\n/quit\n", capture_output=True, text=True, env=env, timeout=300,
        check=False)
    assert done.returncode == 0, done.stderr
    assert "发票" in done.stdout and "[1] 是" in done.stdout
