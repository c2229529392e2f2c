"""The app mounts exactly the channels the environment configures."""

from __future__ import annotations

from pathlib import Path

from bot.app import CHANNELS, create_app
from bot.settings import Settings
from nlp.analyzer import Analyzer


def _paths(settings: Settings, analyzer: Analyzer) -> tuple[set[str], set[str]]:
    app = create_app(settings, analyzer=analyzer)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    return paths, {a.name for a in app[CHANNELS]}


def test_only_web_chat_by_default(tmp_path: Path, analyzer: Analyzer) -> None:
    paths, names = _paths(Settings.from_env({"INTAKEBOT_DATA_DIR": str(tmp_path)}), analyzer)
    assert names == set()
    assert "/api/webchat/{conversation_id}/messages" in paths
    assert not any(p.startswith(("/api/webhook", "/api/telegram", "/wechat")) for p in paths)


def test_configured_channels_are_mounted(tmp_path: Path, analyzer: Analyzer) -> None:
    env = {
        "INTAKEBOT_DATA_DIR": str(tmp_path),
        "WEBHOOK_SECRET": "s" * 32,
        "WEBHOOK_CALLBACK_URL": "http://127.0.0.1:9/callback",
        "TELEGRAM_BOT_TOKEN": "123456:test-token",
        "TELEGRAM_WEBHOOK_SECRET": "secret_token",
        "WECHAT_TOKEN": "wxtoken",
        "WECHAT_APP_ID": "wx123",
        "WECHAT_APP_SECRET": "wxsecret",
        "MAIL_IMAP_HOST": "127.0.0.1",
        "MAIL_IMAP_USER": "bot",
        "MAIL_IMAP_PASSWORD": "pw",
        "MAIL_SMTP_HOST": "127.0.0.1",
        "MAIL_FROM": "service@example.com",
    }
    settings = Settings.from_env(env)
    paths, names = _paths(settings, analyzer)
    assert names == {"telegram", "webhook", "wechat", "email"}
    assert "/api/webhook/messages" in paths
    assert settings.telegram is not None and settings.telegram.webhook_path in paths
    assert "/wechat" in paths
