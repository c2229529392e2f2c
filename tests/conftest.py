"""Shared fixtures: one trained triage model per test session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from knowledge_base.retrieval import Searcher
from nlp.analyzer import Analyzer
from nlp.main_topic import MainTopicBackend
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
    """The default reading without E5: the classical model, trained (or loaded from the cache)
    once per session, reading the main topic span by span."""
    return Analyzer(MainTopicBackend(load_classical(model_config)))


@pytest.fixture(scope="session")
def e5_searcher(request: pytest.FixtureRequest) -> Searcher:
    """The shipped default ranking (multilingual-e5-small) over the seed FAQ, for every test
    that needs the bot to answer as it would in production. Embedding the seed's ~700 texts
    takes 15-40 s of CPU, so the vectors are kept in pytest's cache directory (by text: a
    changed seed re-embeds only what changed). A KnowledgeBase opened with this searcher
    installs its own snapshot; the vectors are reused."""
    from knowledge_base.entries import PublishedEntry
    from knowledge_base.files import load_file
    from knowledge_base.service import SEED_FILE, make_searcher

    searcher = make_searcher(embedding_model="e5")
    cache = Path(request.config.cache.mkdir("kb-vectors")) / "e5-seed.npz"
    searcher.load_vectors(cache)
    searcher.rebuild([PublishedEntry(i, 1, c) for i, c in load_file(SEED_FILE)])
    searcher.save_vectors(cache)
    return searcher


CHROMIUM = "/usr/bin/chromium"  # Debian's package; never a browser playwright downloads
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian chromium driven by playwright."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium fonts-wqy-microhei")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
