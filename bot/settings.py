"""Settings read once at start-up from the environment and passed in (never read at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from channels.base import env_flag
from channels.mail import MailConfig
from channels.telegram import TelegramConfig
from channels.webhook import WebhookConfig
from channels.wechat import WeChatConfig

if TYPE_CHECKING:
    from handoff.sla import BusinessHours

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
    # When set, SLA hours count only working time (INTAKEBOT_BUSINESS_HOURS/_DAYS, _TIMEZONE).
    business_hours: BusinessHours | None = None
    # Channels besides the web chat; each is None (off) unless its variables are set
    # (docs/channels.md).
    telegram: TelegramConfig | None = None
    webhook: WebhookConfig | None = None
    wechat: WeChatConfig | None = None
    mail: MailConfig | None = None
    # The prefix of every Redis key (INTAKEBOT_REDIS_PREFIX), so deployments can share a Redis.
    redis_prefix: str | None = None
    # REDIS_URL names a node of a Redis Cluster (INTAKEBOT_REDIS_CLUSTER=true; docs/deploy.md).
    redis_cluster: bool = False
    # After-care (docs/aftercare.md): progress updates, the survey, the durable job loop.
    update_days: float = 3.0  # the longest silence towards a customer while a ticket is open
    survey_window_hours: tuple[int, int] = (24, 48)  # the survey goes out this long after close
    quiet_hours: tuple[time, time] | None = (time(22, 0), time(8, 0))  # no updates or surveys
    timezone: str = "Asia/Shanghai"  # the customers' time zone, for the quiet hours
    scheduler_seconds: float = 30.0  # how often due jobs are looked for
    secret: str | None = None  # signs survey links; None: a random one kept in the data dir
    public_url: str | None = None  # where customers reach the app; None: http://host:port

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
            business_hours=_business_hours(env),
            telegram=TelegramConfig.from_env(env),
            webhook=WebhookConfig.from_env(env),
            wechat=WeChatConfig.from_env(env),
            mail=MailConfig.from_env(env),
            redis_prefix=env.get("INTAKEBOT_REDIS_PREFIX") or None,
            redis_cluster=env_flag(env, "INTAKEBOT_REDIS_CLUSTER", False),
            **_aftercare(env),
        )


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{name} must be a number, got {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {text!r}")
    return value


def _business_hours(env: Mapping[str, str]) -> BusinessHours | None:
    from handoff.sla import DEFAULT_DAYS, DEFAULT_TIMEZONE, BusinessHours

    hours = env.get("INTAKEBOT_BUSINESS_HOURS") or ""
    if not hours.strip():
        # INTAKEBOT_TIMEZONE alone is fine: it is also the customers' zone (quiet hours).
        for name in ("INTAKEBOT_BUSINESS_DAYS",):
            if env.get(name):
                raise ValueError(f"{name} needs INTAKEBOT_BUSINESS_HOURS (e.g. 09:00-18:00)")
        return None
    try:
        return BusinessHours.parse(hours, env.get("INTAKEBOT_BUSINESS_DAYS") or DEFAULT_DAYS,
                                   env.get("INTAKEBOT_TIMEZONE") or DEFAULT_TIMEZONE)
    except ValueError as exc:
        raise ValueError(f"INTAKEBOT_BUSINESS_HOURS/_DAYS/INTAKEBOT_TIMEZONE: {exc}") from exc


def _aftercare(env: Mapping[str, str]) -> dict[str, Any]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from handoff.aftercare import parse_quiet_hours, parse_window

    try:
        update_days = float(env.get("INTAKEBOT_UPDATE_DAYS") or 3)
        scheduler_seconds = float(env.get("INTAKEBOT_SCHEDULER_SECONDS") or 30)
    except ValueError as exc:
        raise ValueError(f"INTAKEBOT_UPDATE_DAYS and INTAKEBOT_SCHEDULER_SECONDS are numbers: "
                         f"{exc}") from exc
    if not update_days > 0 or not scheduler_seconds > 0:
        raise ValueError("INTAKEBOT_UPDATE_DAYS and INTAKEBOT_SCHEDULER_SECONDS must be > 0")
    try:
        start, end = parse_window(env.get("INTAKEBOT_SURVEY_WINDOW_HOURS") or "24-48")
        quiet = parse_quiet_hours(env.get("INTAKEBOT_QUIET_HOURS") or "22:00-08:00")
    except ValueError as exc:
        raise ValueError(f"INTAKEBOT_SURVEY_WINDOW_HOURS / INTAKEBOT_QUIET_HOURS: {exc}") from exc
    zone = env.get("INTAKEBOT_TIMEZONE") or "Asia/Shanghai"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"INTAKEBOT_TIMEZONE: unknown time zone {zone!r}") from exc
    return {"update_days": update_days,
            "survey_window_hours": (int(start.total_seconds()) // 3600,
                                    int(end.total_seconds()) // 3600),
            "quiet_hours": quiet, "timezone": zone, "scheduler_seconds": scheduler_seconds,
            "secret": env.get("INTAKEBOT_SECRET") or None,
            "public_url": (env.get("INTAKEBOT_PUBLIC_URL") or "").rstrip("/") or None}


def _hours(env: Mapping[str, str], name: str, default: str) -> Mapping[str, int]:
    from handoff.sla import parse_hours

    hours = parse_hours(default)
    try:
        hours.update(parse_hours(env.get(name) or ""))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    return MappingProxyType(hours)
