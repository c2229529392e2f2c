"""Shared fixtures: one trained triage model per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nlp.analyzer import Analyzer
from nlp.models import ModelConfig, load_classical


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INTAKEBOT_DATA_DIR when set (CI gives each run a fresh one), else a session temp dir."""
    env = os.environ.get("INTAKEBOT_DATA_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("intakebot-data")


@pytest.fixture(scope="session")
def model_config(data_dir: Path) -> ModelConfig:
    return ModelConfig(data_dir=data_dir)


@pytest.fixture(scope="session")
def analyzer(model_config: ModelConfig) -> Analyzer:
    """The default classical analyzer, trained (or loaded from the cache) once per session."""
    return Analyzer(load_classical(model_config))
