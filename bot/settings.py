"""Settings read once at start-up from the environment and passed in (never read at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
        )
