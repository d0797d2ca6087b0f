"""One self-contained HTML page: tables sortable by their headers, figures as SVG data.

Nothing is fetched: styles and the sorting script are inline, images are base64
``data:`` URIs, and a Content-Security-Policy allows exactly that (the script by its
hash), so the page opens offline and an injected script could not run even if some
text escaped ``html.escape``, which every user-provided string goes through.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass, field

from ablate.report.render import DisplayTable

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #1b1f24; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
.meta, .note { color: #57606a; font-size: .9em; }
.description { white-space: pre-wrap; color: #32383f; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; }
th { background: #f6f8fa; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: .9em; }
"""

# Sorts a table by the clicked header: numbers as numbers, text as text, empty cells last.
SCRIPT = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") { return null; }
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b) {
    if (typeof a === typeof b) { return a < b ? -1 : (a > b ? 1 : 0); }
    return typeof a === "number" ? -1 : 1;
  }
  function sortBy(table, headers, th, col) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = key(r1.cells[col]), b = key(r2.cells[col]);
      if (a === null || b === null) { return (a === null) - (b === null); }
      return dir * compare(a, b);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, col) {
      th.tabIndex = 0;
      th.title = "sort";
      th.addEventListener("click", function () { sortBy(table, headers, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, headers, th, col); }
      });
    });
  });
}());
"""


@dataclass(frozen=True)
class Image:
    caption: str
    data: bytes
    mime: str = "image/svg+xml"
    size: tuple[int, int] | None = None  # shown at (width, height) CSS pixels, else natural


@dataclass(frozen=True)
class Section:
    heading: str
    tables: list[DisplayTable] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    note: str = ""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def content_security_policy() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def table_html(table: DisplayTable) -> str:
    head = "".join(f'<th scope="col">{_e(c.header)}</th>' for c in table.columns)
    rows = []
    for i in range(table.n_rows):
        cells = []
        for j, col in enumerate(table.columns):
            value = col.values[i]
            text = _e(col.cells[i])
            if (i, j) in table.emphasis:
                text = f"<strong>{text}</strong>"
            data = "" if value is None else _e(value)
            cls = ' class="num"' if col.numeric else ""
            cells.append(f'<td{cls} data-v="{data}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts = [f"<h3>{_e(table.title)}</h3>"]
    if table.description:
        parts.append(f'<p class="description">{_e(table.description)}</p>')
    parts.append(f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
                 f'<tbody>{"".join(rows)}</tbody></table></div>')
    parts += [f'<p class="note">{_e(note)}</p>' for note in table.notes]
    return "\n".join(parts)


def image_html(image: Image) -> str:
    data = base64.b64encode(image.data).decode("ascii")
    size = f' width="{image.size[0]}" height="{image.size[1]}"' if image.size else ""
    return (f'<figure><img src="data:{image.mime};base64,{data}"{size} alt="{_e(image.caption)}">'
            f"<figcaption>{_e(image.caption)}</figcaption></figure>")


def render_page(title: str, sections: list[Section], meta: str = "") -> str:
    """The whole page as one string (UTF-8)."""
    body = [f"<h1>{_e(title)}</h1>"]
    if meta:
        body.append(f'<p class="meta">{_e(meta)}</p>')
    for section in sections:
        body.append(f"<section><h2>{_e(section.heading)}</h2>")
        if section.note:
            body.append(f'<p class="note">{_e(section.note)}</p>')
        body += [table_html(t) for t in section.tables]
        body += [image_html(i) for i in section.images]
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(content_security_policy())}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
