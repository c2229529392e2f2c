"""`intakebot kb …`: manage and search the FAQ knowledge base."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from knowledge_base.entries import Action, Role, Status, content_from_mapping
from knowledge_base.errors import ImportRejected, KnowledgeBaseError

app = typer.Typer(help="Knowledge base: import, edit, publish, search, evaluate.",
                  no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the knowledge-base REST API.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")

T = TypeVar("T")

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="INTAKEBOT_DATA_DIR",
    help="Data directory; its intakebot.db is the store (default ~/.intakebot).")]
DatabaseOpt = Annotated[str | None, typer.Option(
    "--database-url", envvar="DATABASE_URL",
    help="SQL database (PostgreSQL URL); overrides the SQLite file of --data-dir.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--embedding-model", envvar="INTAKEBOT_KB_EMBEDDING_MODEL",
    help="e5 (default: multilingual-e5-small, every language), minilm (packaged English "
         "all-MiniLM-L6-v2), none, or a local sentence-transformers model directory.")]
NoDenseOpt = Annotated[bool, typer.Option(
    "--no-dense", help="Lexical retrieval only (no embedding model is loaded).")]
ThresholdOpt = Annotated[float | None, typer.Option(
    "--threshold", min=0.0, max=1.0, help="Confidence threshold (default: the calibrated one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def database_url(data_dir: Path | None, url: str | None) -> str:
    """The async driver URL of the store chosen on the command line or in the environment."""
    if url:
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://"):]
        return url
    return f"sqlite+aiosqlite:///{data_directory(data_dir) / 'intakebot.db'}"


def data_directory(data_dir: Path | None) -> Path:
    """--data-dir or INTAKEBOT_DATA_DIR, else ~/.intakebot (what `serve` uses too)."""
    return (data_dir or Path.home() / ".intakebot").expanduser()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; knowledge-base errors become a message and exit code 1."""
    try:
        return asyncio.run(coro)
    except ImportRejected as exc:
        raise _fail(str(exc)) from exc
    except KnowledgeBaseError as exc:
        raise _fail(str(exc)) from exc


async def _with_store(url: str, body: Callable[[Any], Awaitable[T]]) -> T:
    from knowledge_base.store import KnowledgeStore

    store = await KnowledgeStore.open(url)
    try:
        return await body(store)
    finally:
        await store.close()


async def _with_kb(url: str, body: Callable[[Any], Awaitable[T]], *, dense: bool = True,
                   model: str | None = None, threshold: float | None = None,
                   redis_url: str | None = None, whole_index: bool = False,
                   vector_cache_dir: Path | None = None) -> T:
    """Run `body` on an open knowledge base; `whole_index` waits for the dense half first."""
    from knowledge_base.service import KnowledgeBase, KnowledgeBaseConfig

    kb = await KnowledgeBase.open(KnowledgeBaseConfig(
        database_url=url, redis_url=redis_url, embedding_model=model, dense=dense,
        threshold=threshold, record_gaps=False, vector_cache_dir=vector_cache_dir))
    try:
        if whole_index:
            # A bot answers lexically while the dense half is built in the background; a
            # command that prints search results must not, or its answers are lexical only.
            await kb.ready()
        return await body(kb)
    finally:
        await kb.close()


def _redis_url() -> str | None:
    import os

    return os.environ.get("REDIS_URL") or None


# ---- entries ---------------------------------------------------------------------------------


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="YAML, JSON, JSON Lines or CSV of entries.")],
    publish: Annotated[bool, typer.Option("--publish", help="Publish the entries at once.")]
    = False,
    fmt: Annotated[str | None, typer.Option("--format", help="yaml|json|jsonl|csv "
                                            "(default: from the file name).")] = None,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Import entries: all of them or, if any row is bad, none (every bad row is listed)."""
    from knowledge_base.files import load_file

    try:
        items = load_file(file, fmt)  # every row checked before the database is touched
    except KnowledgeBaseError as exc:
        raise _fail(str(exc)) from exc
    url = database_url(data_dir, db)

    async def run() -> Any:
        if publish:
            # Publishing rebuilds the index and tells running bots to reload.
            return await _with_kb(url, lambda kb: kb.import_entries(items, _actor(), publish=True),
                                  dense=False, redis_url=_redis_url())
        return await _with_store(url, lambda store: store.import_entries(items, _actor()))

    outcome = _run(run())
    typer.echo(f"imported {file}: {len(outcome.created)} created, {len(outcome.updated)} "
               f"updated, {len(outcome.unchanged)} unchanged, {len(outcome.published)} published")


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="yaml|json|jsonl|csv")] = "yaml",
    status: Annotated[Status | None, typer.Option(help="Only entries in this status.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (default: stdout).")]
    = None,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Write the entries' working copies in a format `kb import` reads back."""
    from knowledge_base.files import dump

    entries = _run(_with_store(database_url(data_dir, db), lambda s: s.list_entries(status)))
    try:
        text = dump([e.to_dict() for e in entries], fmt)
    except KnowledgeBaseError as exc:
        raise _fail(str(exc)) from exc
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"exported {len(entries)} entries to {output}", err=True)


@app.command("list")
def list_(
    status: Annotated[Status | None, typer.Option(help="Only entries in this status.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """List the entries: id, status, version, question."""
    entries = _run(_with_store(database_url(data_dir, db), lambda s: s.list_entries(status)))
    for e in entries:
        if as_json:
            typer.echo(json.dumps(e.to_dict(), ensure_ascii=False))
        else:
            served = f"v{e.published_version}" if e.published_version else "-"
            typer.echo(f"{e.id}\t{e.status.value}\tv{e.version}\tserved:{served}\t"
                       f"{e.content.question}")


@app.command()
def show(
    entry_id: Annotated[str, typer.Argument(metavar="ID")],
    versions: Annotated[bool, typer.Option("--versions", help="Also list every version.")]
    = False,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Show one entry as JSON (with its version history if asked)."""

    async def body(store: Any) -> dict[str, Any]:
        data: dict[str, Any] = (await store.get(entry_id)).to_dict()
        if versions:
            data["versions"] = [v.to_dict() for v in await store.versions(entry_id)]
        return data

    data = _run(_with_store(database_url(data_dir, db), body))
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command()
def add(
    question: Annotated[str, typer.Option(help="The canonical question.")],
    answer: Annotated[str, typer.Option(help="The answer (zh-Hans).")],
    entry_id: Annotated[str | None, typer.Option("--id", help="Entry id (default: generated).")]
    = None,
    paraphrase: Annotated[list[str] | None, typer.Option(help="Another way to ask (repeat).")]
    = None,
    answer_en: Annotated[str | None, typer.Option(help="The answer in English.")] = None,
    answer_hant: Annotated[str | None, typer.Option(help="The answer in Traditional Chinese.")]
    = None,
    category: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeat).")] = None,
    publish: Annotated[bool, typer.Option("--publish", help="Publish at once.")] = False,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Add one entry as a draft (or published with --publish)."""
    try:
        content = content_from_mapping({
            "question": question, "answer": answer, "paraphrases": paraphrase or [],
            "answer_en": answer_en, "answer_hant": answer_hant, "category": category,
            "tags": tag or []})
    except KnowledgeBaseError as exc:
        raise _fail(str(exc)) from exc
    entry = _run(_with_kb(database_url(data_dir, db),
                          lambda kb: kb.create(entry_id, content, _actor(), publish=publish),
                          dense=False, redis_url=_redis_url()))
    typer.echo(f"{entry.id}\t{entry.status.value}\tv{entry.version}")


def _transition(entry_id: str, action: Action, data_dir: Path | None, db: str | None) -> None:
    entry = _run(_with_kb(database_url(data_dir, db),
                          lambda kb: kb.transition(entry_id, action, _actor()),
                          dense=False, redis_url=_redis_url()))
    typer.echo(f"{entry.id}\t{entry.status.value}\tv{entry.version}")


@app.command()
def publish(entry_id: Annotated[str, typer.Argument(metavar="ID")],
            data_dir: DataDirOpt = None, db: DatabaseOpt = None) -> None:
    """Publish an entry's working copy (running bots reload it)."""
    _transition(entry_id, Action.PUBLISH, data_dir, db)


@app.command()
def archive(entry_id: Annotated[str, typer.Argument(metavar="ID")],
            data_dir: DataDirOpt = None, db: DatabaseOpt = None) -> None:
    """Stop serving an entry (its history is kept)."""
    _transition(entry_id, Action.ARCHIVE, data_dir, db)


@app.command()
def rollback(entry_id: Annotated[str, typer.Argument(metavar="ID")],
             version: Annotated[int, typer.Argument(min=1)],
             data_dir: DataDirOpt = None, db: DatabaseOpt = None) -> None:
    """Publish a copy of an earlier version as the newest version."""
    entry = _run(_with_kb(database_url(data_dir, db),
                          lambda kb: kb.rollback(entry_id, version, _actor()),
                          dense=False, redis_url=_redis_url()))
    typer.echo(f"{entry.id}\t{entry.status.value}\tv{entry.version}")


@app.command()
def reindex(
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
    model: ModelOpt = None,
    no_dense: NoDenseOpt = False,
) -> None:
    """Rebuild the search index from the published entries and tell running bots to reload."""
    from tqdm import tqdm

    from knowledge_base.notify import InMemoryNotifier, RedisNotifier
    from knowledge_base.service import make_searcher

    async def body(store: Any) -> tuple[int, float]:
        entries = await store.published()
        searcher = make_searcher(embedding_model=model, dense=not no_dense)
        with tqdm(total=len(entries), desc="indexing", unit="entry") as bar:
            def advance(n: int) -> None:
                bar.update(n)

            snapshot = await asyncio.to_thread(searcher.build, entries, progress=advance)
        url = _redis_url()
        notifier = RedisNotifier(url) if url else InMemoryNotifier()
        try:
            await notifier.notify("reindex")
        finally:
            await notifier.close()
        return snapshot.size, snapshot.build_seconds

    size, seconds = _run(_with_store(database_url(data_dir, db), body))
    typer.echo(f"indexed {size} published entries in {seconds:.2f} s")


# ---- search and evaluation ---------------------------------------------------------------


def _read_batch(path: Path) -> list[str]:
    from knowledge_base.errors import RowError

    handle = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    texts: list[str] = []
    errors: list[RowError] = []
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict) or not isinstance(data.get("text"), str):
                    raise ValueError
                texts.append(data["text"])
            except ValueError:
                errors.append(RowError(number, None, 'expected {"text": "…"}'))
    if errors:
        raise ImportRejected(str(path), errors)
    return texts


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="The question.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=50)] = 5,
    as_json: JsonOpt = False,
    batch: Annotated[Path | None, typer.Option(
        "--batch", help='JSON Lines of {"text": …} ("-" for stdin); one result line each.')]
    = None,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
    model: ModelOpt = None,
    no_dense: NoDenseOpt = False,
    threshold: ThresholdOpt = None,
) -> None:
    """Search the published entries (models are loaded once for a whole --batch)."""
    if (text is None) == (batch is None):
        raise _fail("give either TEXT or --batch FILE")
    texts = [text] if text is not None else []
    if batch is not None:
        try:
            texts = _read_batch(batch)
        except ImportRejected as exc:
            raise _fail(str(exc)) from exc
        except OSError as exc:
            raise _fail(f"cannot read {batch}: {exc}") from exc

    async def body(kb: Any) -> list[Any]:
        return [await kb.search(t, top_k=top_k, record_gap=False) for t in texts]

    results = _run(_with_kb(database_url(data_dir, db), body, dense=not no_dense, model=model,
                            threshold=threshold, whole_index=True,
                            vector_cache_dir=data_directory(data_dir)))
    for result in results:
        if as_json or batch is not None:
            typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
            continue
        verdict = "confident" if result.confident else "no confident answer"
        typer.echo(f"{verdict} (confidence {result.confidence:.2f})")
        for rank, hit in enumerate(result.hits, start=1):
            typer.echo(f"{rank}. [{hit.id}] {hit.score:.3f} {hit.question}")
            if rank == 1:
                typer.echo(f"   {hit.answer}")


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help='JSON Lines of {"text", "faq_id" or null}.')],
    kb_file: Annotated[Path | None, typer.Option(
        "--kb", help="Evaluate against this FAQ file, loaded into a temporary store.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
    model: ModelOpt = None,
    no_dense: NoDenseOpt = False,
    threshold: ThresholdOpt = None,
    show_misses: Annotated[bool, typer.Option(
        "--misses", help="Also list the questions it got wrong (after the report; with --json "
        "one JSON line each).")] = False,
) -> None:
    """hit@1, hit@3, MRR and precision/recall of "no confident answer" on a labelled file."""
    from knowledge_base.evaluation import evaluate, misses, read_queries
    from knowledge_base.files import load_file

    try:
        queries = read_queries(file)
        items = load_file(kb_file) if kb_file is not None else None
    except KnowledgeBaseError as exc:
        raise _fail(str(exc)) from exc

    async def body(kb: Any) -> Any:
        if items is not None:
            await kb.import_entries(items, "eval", publish=True)
        snapshot = kb.searcher.snapshot
        results = await asyncio.to_thread(
            lambda: [kb.searcher.search_in(snapshot, q.text) for q in queries])
        return evaluate(results, queries), misses(results, queries)

    with tempfile.TemporaryDirectory(prefix="intakebot-kb-eval-") as tmp:
        url = (f"sqlite+aiosqlite:///{Path(tmp) / 'kb.db'}" if items is not None
               else database_url(data_dir, db))
        report, wrong = _run(_with_kb(url, body, dense=not no_dense, model=model,
                                      threshold=threshold, whole_index=True))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        for miss in wrong if show_misses else []:
            typer.echo(json.dumps(miss.to_dict(), ensure_ascii=False))
        return
    typer.echo(f"queries              {report.queries} ({report.answerable} answerable)")
    typer.echo(f"hit@1                {report.hit_at_1:.3f}")
    typer.echo(f"hit@3                {report.hit_at_3:.3f}")
    typer.echo(f"MRR                  {report.mrr:.3f}")
    typer.echo(f"confident precision  {report.confident_precision:.3f}")
    typer.echo(f"answered right       {report.answered:.3f}")
    typer.echo(f"no-answer precision  {report.no_answer_precision:.3f}")
    typer.echo(f"no-answer recall     {report.no_answer_recall:.3f}")
    if show_misses and wrong:
        typer.echo("\nexpected\tgot\trank\tconfidence\ttext")
        for miss in wrong:
            typer.echo(f"{miss.expected or '-'}\t{miss.got or '-'}\t{miss.rank or '-'}\t"
                       f"{miss.confidence:.3f}{'' if miss.confident else ' (declined)'}\t"
                       f"{miss.text}")


@app.command()
def calibrate(
    seed: Annotated[Path | None, typer.Option(help="FAQ with paraphrases (default: the seed).")]
    = None,
    out_of_scope: Annotated[Path | None, typer.Option(
        help="JSON Lines of questions nothing answers (default data/kb/out_of_scope.jsonl).")]
    = None,
    customer_questions: Annotated[Path | None, typer.Option(
        help='JSON Lines of {"text", "faq_id" or null}: real customer messages labelled with '
             "the seed entry that answers them (or null), asked as they are.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the dense model's calibration (default: the "
        "packaged file of that model).")] = None,
    lexical_output: Annotated[Path | None, typer.Option(
        "--lexical-output", help="Where to write the lexical-only calibration (default: the "
        "packaged calibration-lexical.json).")] = None,
    check: Annotated[Path | None, typer.Option(
        help="FAQ with paraphrases the fit is checked on, never fitted on (default: "
             "data/kb/practice.yaml, another desk's FAQ).")] = None,
    precision: Annotated[float, typer.Option(min=0.5, max=0.99, help="Answer precision the "
                                             "threshold must reach on the fitting data.")]
    = 0.8,
    decisive_precision: Annotated[float, typer.Option(
        min=0.5, max=0.999, help="Precision at which a lexical-only answer is taken as settled "
        "and the query embedding is skipped.")] = 0.95,
    model: ModelOpt = None,
    no_dense: NoDenseOpt = False,
) -> None:
    """Refit the reranker/confidence models on the project's own data (never the eval files).

    Two models: lexical-only (used when the dense half does not take part) and, unless
    --no-dense, the dense model's.
    """
    from knowledge_base.confidence import LEXICAL_CALIBRATION_FILE, Calibrator, fit, top1_right
    from knowledge_base.entries import PublishedEntry
    from knowledge_base.evaluation import (
        PRACTICE_FILE,
        calibration_samples,
        read_out_of_scope,
        read_queries,
    )
    from knowledge_base.files import load_file
    from knowledge_base.service import SEED_FILE, calibration_file, make_searcher

    try:
        seed_entries = [PublishedEntry(i, 1, c) for i, c in load_file(seed or SEED_FILE)]
        check_entries = [PublishedEntry(i, 1, c)
                         for i, c in load_file(check or PRACTICE_FILE)]
        oos = read_out_of_scope(out_of_scope) if out_of_scope else read_out_of_scope()
        customer = read_queries(customer_questions) if customer_questions else []
    except KnowledgeBaseError as exc:
        raise _fail(str(exc)) from exc
    except OSError as exc:
        raise _fail(f"cannot read {customer_questions}: {exc}") from exc
    unknown = sorted({q.faq_id for q in customer if q.faq_id is not None}
                     - {e.id for e in seed_entries})
    if unknown:
        raise _fail(f"customer questions name entries the seed does not have: {unknown}")
    # The features do not depend on the calibrator: fit from scratch, whatever is shipped.
    searcher = make_searcher(embedding_model=model, dense=not no_dense,
                             calibrator=Calibrator.uninformed(),
                             lexical_calibrator=Calibrator.uninformed())
    jobs: list[tuple[bool, Path]] = [
        (False, (output if no_dense else lexical_output) or LEXICAL_CALIBRATION_FILE)]
    if searcher.embedder is not None:
        jobs.append((True, output or calibration_file(searcher.embedder)))
    for dense, target in jobs:
        samples = calibration_samples(searcher, seed_entries, oos, dense=dense,
                                      customer=customer)
        calibrator, report = fit(samples, precision_target=precision,
                                 decisive_precision=None if dense else decisive_precision)
        # Its paraphrases asked held out and against the bare questions, as the seed's are.
        report["check_top1_right"] = round(top1_right(calibrator, calibration_samples(
            searcher, check_entries, (), dense=dense)), 3)
        calibrator.save(target, report)
        typer.echo(json.dumps({"file": str(target), "threshold": calibrator.threshold,
                               "decisive": calibrator.decisive, **report}, ensure_ascii=False))


# ---- gaps and API keys -------------------------------------------------------------------


@app.command()
def gaps(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Questions customers asked that got no confident answer, most asked first (PII masked)."""
    found = _run(_with_store(database_url(data_dir, db), lambda s: s.gaps(limit=limit)))
    for gap in found:
        if as_json:
            typer.echo(json.dumps(gap.to_dict(), ensure_ascii=False))
        else:
            best = f"{gap.best_entry_id} {gap.best_confidence:.2f}" if gap.best_entry_id else "-"
            typer.echo(f"{gap.count}\t{gap.last_seen:%Y-%m-%d %H:%M}\t{best}\t{gap.text}")


@apikey_app.command("create")
def apikey_create(
    role: Annotated[Role, typer.Option(help="kb_editor, reviewer or admin.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Create an API key and print its token (shown this once only)."""
    info, token = _run(_with_store(database_url(data_dir, db),
                                   lambda s: s.create_api_key(name, role, _actor())))
    typer.echo(f"created key {info.key_id} ({info.role.value}) for {info.name}", err=True)
    typer.echo(token)


@apikey_app.command("list")
def apikey_list(data_dir: DataDirOpt = None, db: DatabaseOpt = None) -> None:
    """List the active API keys (never their tokens)."""
    for info in _run(_with_store(database_url(data_dir, db), lambda s: s.api_keys())):
        typer.echo(f"{info.key_id}\t{info.role.value}\t{info.name}\t{info.created_at:%Y-%m-%d}")


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
                  data_dir: DataDirOpt = None, db: DatabaseOpt = None) -> None:
    """Stop accepting an API key."""
    _run(_with_store(database_url(data_dir, db), lambda s: s.revoke_api_key(key_id, _actor())))
    typer.echo(f"revoked {key_id}")
