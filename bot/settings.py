"""Settings read once at start-up from the environment and passed in (never read at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType

from channels.mail import MailConfig
from channels.telegram import TelegramConfig
from channels.webhook import WebhookConfig
from channels.wechat import WeChatConfig

DEFAULT_DATA_DIR = Path.home() / ".intakebot"


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """The directory that holds the SQLite file, trained models and evidence files."""
    env = os.environ if environ is None else environ
    return Path(env.get("INTAKEBOT_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()


def async_database_url(url: str) -> str:
    """Map a plain DATABASE_URL (as platforms hand it out) to an asyncio driver URL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    return url


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, from INTAKEBOT_* variables, DATABASE_URL and REDIS_URL."""

    data_dir: Path
    database_url: str
    redis_url: str | None
    host: str
    port: int
    nlp_backend: str
    nlp_model_path: str | None
    kb_embedding_model: str | None
    # Refunds or compensation above this many CNY wait for a supervisor (DOMAIN.md step 5).
    approval_threshold: Decimal = Decimal("500")
    # Hours by priority: first response (used when staff change a priority) and resolution.
    first_response_hours: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"high": 2, "medium": 4, "low": 24}))
    resolution_hours: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"high": 24, "medium": 72, "low": 120}))
    sla_check_seconds: float = 60.0  # how often open tickets are checked for SLA breaches
    # Channels besides the web chat; each is None (off) unless its variables are set
    # (docs/channels.md).
    telegram: TelegramConfig | None = None
    webhook: WebhookConfig | None = None
    wechat: WeChatConfig | None = None
    mail: MailConfig | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = data_dir_from_env(env)
        db = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'intakebot.db'}"
        return cls(
            data_dir=data_dir,
            database_url=async_database_url(db),
            redis_url=env.get("REDIS_URL") or None,
            host=env.get("INTAKEBOT_HOST", "127.0.0.1"),
            port=int(env.get("PORT") or env.get("INTAKEBOT_PORT") or 8080),
            nlp_backend=env.get("INTAKEBOT_NLP_BACKEND", "classical"),
            nlp_model_path=env.get("INTAKEBOT_NLP_MODEL_PATH") or None,
            kb_embedding_model=env.get("INTAKEBOT_KB_EMBEDDING_MODEL") or None,
            approval_threshold=_decimal(env.get("INTAKEBOT_APPROVAL_THRESHOLD") or "500",
                                        "INTAKEBOT_APPROVAL_THRESHOLD"),
            first_response_hours=_hours(env, "INTAKEBOT_SLA_FIRST_RESPONSE_HOURS",
                                        "high=2,medium=4,low=24"),
            resolution_hours=_hours(env, "INTAKEBOT_SLA_RESOLUTION_HOURS",
                                    "high=24,medium=72,low=120"),
            sla_check_seconds=float(env.get("INTAKEBOT_SLA_CHECK_SECONDS") or 60),
            telegram=TelegramConfig.from_env(env),
            webhook=WebhookConfig.from_env(env),
            wechat=WeChatConfig.from_env(env),
            mail=MailConfig.from_env(env),
        )


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{name} must be a number, got {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {text!r}")
    return value


def _hours(env: Mapping[str, str], name: str, default: str) -> Mapping[str, int]:
    from handoff.sla import parse_hours

    hours = parse_hours(default)
    try:
        hours.update(parse_hours(env.get(name) or ""))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    return MappingProxyType(hours)
