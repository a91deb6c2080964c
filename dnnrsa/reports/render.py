"""HTML of the reports: escaping, tables, figures as data URIs, and the page.

The page is ``dnnrsa/data/report_template.html`` (a :class:`string.Template`, read
with :mod:`importlib.resources`) filled with the sections' HTML. Every figure is
saved as a PNG under ``<output_dir>/figures/`` and embedded in the page as a
``data:`` URI, so the page opens offline and loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np

from .._io import atomic_write
from .._version import __version__

logger = logging.getLogger(__name__)

_MAX_TABLE_ROWS = 25


class FigureStore:
    """Saves each figure under figures/ and returns it as an HTML <figure> with a data URI."""

    def __init__(self, output_dir: Path, reuse: bool):
        self.folder = output_dir / "figures"
        self.reuse = reuse
        self.saved: list[Path] = []

    def html(
        self,
        name: str,
        make: Callable[[], object],
        caption: str,
        *,
        inputs: Sequence[Path] = (),
    ) -> str:
        from .figures import figure_to_png

        path = self.folder / f"{name}_figure.png"
        png = None
        if self.reuse and inputs and path.is_file():
            newest = max((p.stat().st_mtime for p in inputs if p.exists()), default=np.inf)
            if path.stat().st_mtime >= newest:
                png = path.read_bytes()
        if png is None:
            png = figure_to_png(make())
            with atomic_write(path, "wb") as fh:
                fh.write(png)
        self.saved.append(path)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        alt = html.escape(re.sub(r"<[^>]+>", "", caption).split(". ")[0].split(": ")[0], quote=True)
        return (
            f'<figure><img src="{uri}" alt="{alt}" data-file="figures/{html.escape(path.name)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )


# --------------------------------------------------------------------------- HTML helpers
def escape(text: object) -> str:
    """Text taken from the data, safe in HTML text and attributes."""
    return html.escape(str(text), quote=True)


def note(text: str) -> str:
    """A note paragraph (``text`` is HTML)."""
    return f'<p class="note">{text}</p>'


def code(text: str) -> str:
    """Text set as code, escaped."""
    return f"<code>{escape(text)}</code>"


def _format_cell(value: object) -> tuple[str, bool]:
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "n/a", False
        if float(value).is_integer() and abs(value) < 1e6:
            return str(int(value)), False
        return f"{value:.3g}", False
    if isinstance(value, int | np.integer):
        return str(value), False
    return str(value), True


def table_html(table, *, max_rows: int = _MAX_TABLE_ROWS) -> str:
    """The first ``max_rows`` rows of a table; text columns left-aligned."""
    head = "".join(
        f'<th class="{"text" if table[c].dtype == object else ""}">{escape(c)}</th>'
        for c in table.columns
    )
    body = []
    for row in table.head(max_rows).itertuples(index=False):
        cells = []
        for value in row:
            text, is_text = _format_cell(value)
            cells.append(
                f'<td class="text">{escape(text)}</td>' if is_text else f"<td>{escape(text)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(table) > max_rows:
        more = note(f"First {max_rows} of {len(table)} rows; the full table is in the TSV file.")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def missing(pattern: str, what: str) -> str:
    """The note that replaces a section whose input files are absent."""
    return note(f"No {what} found ({code(pattern)}); this section is omitted.")


def render_page(
    ctx,
    path: Path,
    title: str,
    subtitle: str,
    sections: Sequence[tuple[str, str, Callable[[], str]]],
) -> Path:
    """Build every section (id, heading, function giving its HTML) and write the page."""
    import matplotlib

    rendered = []
    with matplotlib.rc_context({"font.size": 9, "axes.titlesize": 9, "figure.dpi": 100}):
        for section_id, heading, make in sections:
            start = time.perf_counter()
            body = make()
            logger.debug("section %s built in %.2f s", section_id, time.perf_counter() - start)
            rendered.append((section_id, heading, body))
    toc = "".join(f'<li><a href="#{sid}">{escape(h)}</a></li>' for sid, h, _ in rendered)
    body = "\n".join(
        f'<section id="{sid}"><h2>{escape(h)}</h2>\n{b}\n</section>' for sid, h, b in rendered
    )
    template = Template(
        resources.files("dnnrsa").joinpath("data/report_template.html").read_text("utf-8")
    )
    page = template.substitute(
        title=escape(title),
        subtitle=subtitle,
        toc=toc,
        sections=body,
        version=escape(__version__),
        footer=f"Generated by dnnrsa {escape(__version__)} on {time.strftime('%Y-%m-%d %H:%M')} "
        f"from {escape(ctx.output_dir.name)}.",
    )
    with atomic_write(path) as fh:
        fh.write(page)
    logger.info("wrote %s (%d figures)", path, len(ctx.figures.saved))
    return path
