"""HTML building blocks of the report: escaping, sourced numbers, tables, sections and the page shell.

Every number taken from a file is written by `num`, which wraps the shown text in a span carrying where the
value came from (`data-source`: fit.json, runs.parquet, status, manifest.json or predict; `data-key`: a JSON
list locating it) and the exact value (`data-value`), so a reader of the page, or a test, can check each one.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence

NOT_SHOWN = "—"

STYLE = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#d9dde5; --panel:#f5f7fa; --warn:#8a4b00; --warnbg:#fff4e0;
        --bad:#9b1c1c; --badbg:#fdecec; --ok:#1f6f43; --accent:#2c5d9e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: var(--muted); }
h2 { margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); font-size: 20px; }
h3 { margin: 22px 0 8px; font-size: 16px; }
h4 { margin: 14px 0 6px; font-size: 14px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
nav { margin: 14px 0 0; font-size: 14px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
.glance { display: flex; flex-wrap: wrap; gap: 10px; margin: 18px 0 0; }
.glance div { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
              min-width: 130px; }
.glance b { display: block; font-size: 19px; }
.glance small { color: var(--muted); }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
th.label { background: none; font-weight: normal; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
.laws { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); gap: 4px 22px; }
.row { display: flex; flex-wrap: wrap; gap: 0 36px; align-items: flex-start; }
.nowrap, .n, small.iv { white-space: nowrap; }  /* a number never breaks; the text beside it may */
.law { border: 1px solid var(--line); border-radius: 6px; padding: 4px 12px 2px; margin: 6px 0; }
.law h3 { margin-top: 8px; }
small.iv { color: var(--muted); }
.note { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
.warn { background: var(--warnbg); color: var(--warn); border-left: 4px solid #e0a040; padding: 6px 10px;
        margin: 8px 0; font-size: 14px; }
.na { color: var(--muted); font-style: italic; margin: 6px 0; }
.bad { color: var(--bad); }
.ok { color: var(--ok); }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
      font-size: 13px; overflow: auto; white-space: pre-wrap; max-height: 420px; }
code, .id { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }
.error { white-space: pre-wrap; color: var(--bad); background: var(--badbg); font-size: 13px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 18px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 6px; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
td, th, p, li, .warn, .note, figcaption { overflow-wrap: anywhere; }
table { max-width: 100%; }
.verdicts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 12px; }
.verdict { border: 2px solid var(--accent); border-radius: 6px; padding: 2px 14px 4px; }
.id.quote { font-family: inherit; font-size: inherit; }
.verdict .said { font-size: 13px; color: var(--muted); }
.verdict table { margin: 2px 0 4px; }
.verdict td b { font-size: 17px; }
.mark { background: var(--warnbg); color: var(--warn); border-radius: 4px; padding: 0 6px; font-size: 13px;
        white-space: nowrap; }
"""

# No request can leave the page: images only from data: URIs, styles only inline, no scripts at all.
CONTENT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    """Text from a file, safe to place in HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def prose(text: object) -> str:
    """Text from a file shown as prose: escaped, with its `backticked` spans set as code (never as literal
    backticks)."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: plain text
        return esc(text)
    return "".join(f"<code>{esc(part)}</code>" if i % 2 else esc(part) for i, part in enumerate(parts))


def reason(text: object) -> str:
    """A reason quoted from a file (a law's problems) inside a table: prose, marked as text, not as numbers."""
    return f'<span class="id quote">{prose(text)}</span>'


def mark(text: str) -> str:
    """A mark the CLI also prints (not identified, withheld, weak evidence), in the same words."""
    return f'<span class="mark">{esc(text)}</span>'


def finite(value: object) -> float | None:
    """`value` as a finite float, else None (None, NaN, infinities, non-numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_number(value: float) -> str:
    """Four significant digits; whole numbers below ten million in full with thousands separators.

    A value that is not whole always shows a decimal point or an exponent, so it never reads as exact.
    """
    if value == int(value) and abs(value) < 1e7:
        return f"{int(value):,}"
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.3e}"
    shown = f"{value:.4g}"
    return shown if "." in shown or "e" in shown else f"{value:.1f}"


def num(value: object, source: str, key: Sequence, suffix: str = "") -> str:
    """A number shown with where it came from; a missing or non-finite value shows as a dash."""
    number = finite(value)
    if number is None:
        return f'<span class="missing" title="not available">{NOT_SHOWN}</span>'
    return (
        f'<span class="n" data-source="{esc(source)}" data-key="{esc(json.dumps(list(key)))}" '
        f'data-value="{number!r}">{format_number(number)}</span>{esc(suffix)}'
    )


def interval(values: object, source: str, key: Sequence) -> str:
    """`[low, high]` of a stored two-element interval, each end sourced; a dash when absent."""
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        return NOT_SHOWN
    low, high = (num(values[i], source, [*key, i]) for i in range(2))
    return f"[{low}, {high}]"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = (), row_headers: bool = False
) -> str:
    """A table of already-rendered cells; `numeric[i]` right-aligns column i; `row_headers` makes the first
    cell of each row its label (a <th>)."""
    align = [' class="r"' if i < len(numeric) and numeric[i] else "" for i in range(len(headers))]
    head = "".join(f"<th{align[i]}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(_cell(i, cell, align[i], row_headers) for i, cell in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(index: int, cell: str, align: str, row_headers: bool) -> str:
    if row_headers and index == 0:
        return f'<th scope="row" class="label">{cell}</th>'
    return f"<td{align}>{cell}</td>"


def text_cell(value: object) -> str:
    """A cell of text from a file (a run id, a name): escaped and marked as text, not a number."""
    return f'<span class="id">{esc(value)}</span>'


def unavailable(why: str) -> str:
    return f'<p class="na">not available: {prose(why)}</p>'


def warning(text_html: str) -> str:
    return f'<p class="warn">{text_html}</p>'


def note(text_html: str) -> str:
    return f'<p class="note">{text_html}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, header_html: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: header with a table of contents, then each (anchor, title, body) section."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(name)}</a>' for anchor, name, _ in sections)
    body = "".join(section(anchor, name, html_body) for anchor, name, html_body in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><main><header>{header_html}<nav>{links}</nav></header>{body}</main></body></html>\n"
    )
