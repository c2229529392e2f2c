"""Reading and writing FAQ files: YAML, JSON, JSON Lines and CSV, every row checked with its line.

A file is read whole and every row validated before anything is written; the caller gets either
all entries or an ImportRejected listing every bad row (line, id, what is wrong).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from knowledge_base.entries import EntryContent, content_from_mapping, validate_id
from knowledge_base.errors import ImportRejected, KnowledgeBaseError, RowError

FORMATS = ("yaml", "json", "jsonl", "csv")
MAX_FILE_BYTES = 50 * 1024 * 1024
# Fields an export writes for information; an import ignores them.
_INFORMATIVE = {"status", "version", "published_version", "updated_by", "updated_at"}
_KNOWN = {"id", "question", "paraphrases", "answer", "answer_hant", "answer_en", "category",
          "tags"} | _INFORMATIVE


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    aliases = {"yml": "yaml", "ndjson": "jsonl"}
    fmt = aliases.get(suffix, suffix)
    if fmt not in FORMATS:
        raise KnowledgeBaseError(
            f"{path}: unknown file type {path.suffix!r} (use .yaml, .json, .jsonl or .csv)")
    return fmt


def _yaml_rows(text: str) -> Iterator[tuple[int, Any]]:
    # compose() keeps each node's line; construct each item separately to report its line.
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "entries" and isinstance(value, yaml.SequenceNode):
                root = value
                break
    if not isinstance(root, yaml.SequenceNode):
        yield root.start_mark.line + 1, _NotAList()
        return
    loader = yaml.SafeLoader("")
    for node in root.value:
        yield node.start_mark.line + 1, loader.construct_object(node, deep=True)


def _json_rows(text: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if text[pos:pos + 1] != "[":
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("entries"), list):
            for item in data["entries"]:
                yield 0, item
            return
        yield 1, _NotAList()
        return
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise json.JSONDecodeError("unterminated list", text, pos)
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        item, pos = decoder.raw_decode(text, pos)
        yield line, item


def _jsonl_rows(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Unreadable(f"not valid JSON: {exc.msg}")


def _csv_rows(text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        yield 1, _Unreadable("the CSV header must name the columns, including id")
        return
    line = reader.line_num
    for row in reader:
        start = line + 1
        line = reader.line_num
        if None in row:
            yield start, _Unreadable("more cells than header columns")
            continue
        yield start, {k: v for k, v in row.items() if v not in (None, "")}


class _NotAList:
    message = "the file must hold a list of entries"


class _Unreadable:
    def __init__(self, message: str) -> None:
        self.message = message


def read_rows(path: Path, fmt: str | None = None) -> list[tuple[int, Any]]:
    """The raw rows of a file with their line numbers.

    Raises:
        ImportRejected: the file cannot be parsed at all (with the line of the syntax error).
    """
    fmt = fmt or detect_format(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImportRejected(str(path), [RowError(0, None, "file larger than 50 MB")])
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRejected(str(path), [RowError(0, None, f"cannot read: {exc}")]) from exc
    readers = {"yaml": _yaml_rows, "json": _json_rows, "jsonl": _jsonl_rows, "csv": _csv_rows}
    try:
        return list(readers[fmt](text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ImportRejected(str(path), [RowError(line, None, f"invalid YAML: {exc}")]) from exc
    except json.JSONDecodeError as exc:
        raise ImportRejected(str(path), [RowError(exc.lineno, None, f"invalid JSON: {exc.msg}")]
                             ) from exc
    except csv.Error as exc:
        raise ImportRejected(str(path), [RowError(0, None, f"invalid CSV: {exc}")]) from exc


def parse_rows(source: str, rows: Iterable[tuple[int, Any]]) -> list[tuple[str, EntryContent]]:
    """Validate rows into (id, content); all of them, or ImportRejected with every bad row."""
    errors: list[RowError] = []
    entries: list[tuple[str, EntryContent]] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, _NotAList | _Unreadable):
            errors.append(RowError(line, None, row.message))
            continue
        if not isinstance(row, dict):
            errors.append(RowError(line, None, "an entry must be an object with id, question "
                                               "and answer"))
            continue
        raw_id = row.get("id")
        shown_id = str(raw_id) if raw_id is not None else None
        try:
            unknown = sorted(set(map(str, row)) - _KNOWN)
            if unknown:
                raise KnowledgeBaseError(f"unknown field(s): {', '.join(unknown)}")
            if raw_id is None:
                raise KnowledgeBaseError("id is missing")
            entry_id = validate_id(raw_id)
            content = content_from_mapping(row)
        except KnowledgeBaseError as exc:
            errors.append(RowError(line, shown_id, str(exc)))
            continue
        if entry_id in first_line:
            errors.append(RowError(line, entry_id,
                                   f"duplicate id (first on line {first_line[entry_id]})"))
            continue
        first_line[entry_id] = line
        entries.append((entry_id, content))
    if errors:
        raise ImportRejected(source, errors)
    if not entries:
        raise ImportRejected(source, [RowError(0, None, "no entries in the file")])
    return entries


def load_file(path: Path, fmt: str | None = None) -> list[tuple[str, EntryContent]]:
    """Read and validate a whole FAQ file.

    Raises:
        ImportRejected: the file or any row is bad; lists every problem with its line.
    """
    return parse_rows(str(path), read_rows(path, fmt))


def dump(rows: list[dict[str, Any]], fmt: str) -> str:
    """Entries (as dicts) in one of FORMATS."""
    if fmt == "yaml":
        return yaml.safe_dump(rows, allow_unicode=True, sort_keys=False, width=100)
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        out = io.StringIO()
        columns = ["id", "question", "paraphrases", "answer", "answer_hant", "answer_en",
                   "category", "tags", "status", "version"]
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            flat = dict(row)
            for name in ("paraphrases", "tags"):
                flat[name] = "|".join(row.get(name) or [])
            writer.writerow(flat)
        return out.getvalue()
    raise KnowledgeBaseError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
