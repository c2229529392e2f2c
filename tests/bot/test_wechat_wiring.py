"""With REDIS_URL the WeChat channel the app builds keeps its retry and button state in Redis
(under the deployment's prefix), so any process can answer; without it, in the process."""

from __future__ import annotations

from pathlib import Path

from bot.app import CHANNELS, create_app
from bot.settings import Settings
from channels.wechat import WeChat
from channels.wechat_state import InMemoryWeChatState, RedisWeChatState
from nlp.analyzer import Analyzer
from tests.bot.conftest import REDIS_URL

WECHAT = {"WECHAT_TOKEN": "wxtoken", "WECHAT_APP_ID": "wx123", "WECHAT_APP_SECRET": "wxsecret"}


def _wechat(env: dict[str, str], analyzer: Analyzer) -> WeChat:
    app = create_app(Settings.from_env(env), analyzer=analyzer)
    [wechat] = [a for a in app[CHANNELS] if isinstance(a, WeChat)]
    return wechat


async def test_the_state_is_in_redis_with_redis_url(tmp_path: Path, analyzer: Analyzer) -> None:
    wechat = _wechat({"INTAKEBOT_DATA_DIR": str(tmp_path), "REDIS_URL": REDIS_URL,
                      "INTAKEBOT_REDIS_PREFIX": "wiring-test:", **WECHAT}, analyzer)
    try:
        assert isinstance(wechat.state, RedisWeChatState)
    finally:
        await wechat.state.close()
    alone = _wechat({"INTAKEBOT_DATA_DIR": str(tmp_path), **WECHAT}, analyzer)
    assert isinstance(alone.state, InMemoryWeChatState)
