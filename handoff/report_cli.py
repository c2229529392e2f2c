"""`intakebot report`: a weekly or monthly report as Markdown, JSON, CSV, HTML or PNG.

The HTML page is self-contained (styles inline, charts as base64 PNG), so it can be mailed or
archived as one file.
"""

from __future__ import annotations

import asyncio
import base64
import html
import sys
from pathlib import Path
from typing import Annotated

import typer

from handoff.errors import HandoffError
from handoff.reports import (
    GAP_SCAN,
    TEXT_FORMATS,
    InvalidReport,
    Report,
    build_report,
    choose_period,
    render_text,
    summary_rows,
)
from knowledge_base.cli import DatabaseOpt, DataDirOpt, database_url
from knowledge_base.errors import KnowledgeBaseError

FORMATS = (*TEXT_FORMATS, "html", "png")


async def load_report(url: str, kind: str, start: str | None, end: str | None) -> Report:
    """The report from the database at `url` (tickets, and the knowledge base's gaps)."""
    from handoff.tickets import TicketStore
    from knowledge_base.store import KnowledgeStore

    period = choose_period(kind, start, end)
    tickets = await TicketStore.open(url)
    try:
        kb = await KnowledgeStore.open(url)
        try:
            gaps = await kb.gaps(limit=GAP_SCAN)
        finally:
            await kb.close()
        return await build_report(tickets.engine, period, unanswered=gaps)
    finally:
        await tickets.close()


def render(report: Report, fmt: str) -> bytes:
    """The report in any of FORMATS, as bytes."""
    if fmt == "png":
        from handoff.charts import overview

        return overview(report)
    if fmt == "html":
        return render_html(report).encode()
    return render_text(report, fmt).encode()


_STYLE = """
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif;margin:2em;color:#1a202c}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #cbd5e0;padding:.3em .6em}
td.n{text-align:right}.charts{display:flex;flex-wrap:wrap;gap:1em}.charts img{max-width:48%}
"""


def render_html(report: Report) -> str:
    """A self-contained HTML page: the figures as tables and every chart embedded."""
    from handoff.charts import TITLES, charts

    esc = html.escape
    title = f"投诉报告 Complaint report {report.period.label()}"
    parts = [f"<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\">"
             f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             f"<p>Compared with {esc(report.previous_period.label())}; generated "
             f"{report.generated_at:%Y-%m-%d %H:%M} UTC.</p>",
             "<table><tr><th>figure</th><th>this period</th><th>previous</th><th>change</th>"
             "</tr>"]
    parts += [f"<tr><td>{esc(a)}</td><td class=n>{esc(b)}</td><td class=n>{esc(c)}</td>"
              f"<td class=n>{esc(d)}</td></tr>" for a, b, c, d in summary_rows(report)]
    parts.append("</table><div class=charts>")
    for name, png in charts(report).items():
        data = base64.b64encode(png).decode()
        parts.append(f'<img src="data:image/png;base64,{data}" alt="{esc(TITLES[name])}">')
    parts.append("</div>")
    for name, counts in (*report.volume.items(), ("improve_aspect", report.improve_aspects)):
        parts.append(f"<h2>{esc(TITLES[name])}</h2><table><tr><th>value</th><th>count</th>"
                     "<th>previous</th></tr>")
        parts += [f"<tr><td>{esc(c.key)}</td><td class=n>{c.count}</td>"
                  f"<td class=n>{c.previous}</td></tr>" for c in counts]
        parts.append("</table>")
    for heading, mentions in (("Frequent suggestions 常见建议", report.suggestions),
                              ("Top unanswered questions 未解答问题", report.unanswered)):
        parts.append(f"<h2>{esc(heading)}</h2><table><tr><th>text</th><th>count</th></tr>")
        parts += [f"<tr><td>{esc(m.text)}</td><td class=n>{m.count}</td></tr>"
                  for m in mentions]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def report(
    period: Annotated[str, typer.Option(help="week (Monday-Sunday, China time) or month.")]
    = "week",
    start: Annotated[str | None, typer.Option(
        "--from", help="ISO date. With --to: first day of a span; alone: a day of the week "
        "or month wanted. Default: the last complete one.")] = None,
    end: Annotated[str | None, typer.Option(
        "--to", help="ISO date: the day after the span (exclusive).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, json, csv, html or png.")] = "md",
    out: Annotated[Path | None, typer.Option(
        help="Write to this file (required for png; default: standard output).")] = None,
    data_dir: DataDirOpt = None,
    db: DatabaseOpt = None,
) -> None:
    """Complaint figures of a week or month against the one before (docs/reports.md)."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    if fmt == "png" and out is None:
        raise typer.BadParameter("png needs a file", param_hint="--out")
    try:
        choose_period(period, start, end)  # bad input fails before the database is opened
        made = asyncio.run(load_report(database_url(data_dir, db), period, start, end))
    except InvalidReport as exc:
        raise typer.BadParameter(str(exc)) from exc
    except (HandoffError, KnowledgeBaseError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    body = render(made, fmt)
    if out is None:
        sys.stdout.write(body.decode())
    else:
        out.write_bytes(body)
        typer.echo(f"wrote {out} ({len(body)} bytes)", err=True)
