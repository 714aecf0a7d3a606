"""A report as a list of blocks, written out as Markdown and as one self-contained HTML page.

Text may hold `code` spans and **bold**, which both renderers understand. Tables are DataFrames
of display strings; images are PNG files beside the Markdown and embedded in the HTML.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    csv: str | None = None  # the CSV file that holds the table's numbers


@dataclass(frozen=True)
class Image:
    file: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | Image


def markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            note = f"\n\n{_csv_note(block.csv)}" if block.csv else ""
            parts.append(_markdown_table(block.frame) + note)
        else:
            parts.append(f"![{block.caption}]({block.file})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def page(blocks: list[Block], title: str, images: dict[str, bytes]) -> str:
    """One HTML page with every image inlined, readable offline."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
            parts.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            note = f"<p>{_inline(_csv_note(block.csv))}</p>" if block.csv else ""
            parts.append(_html_table(block.frame) + note)
        else:
            data = base64.b64encode(images[block.file]).decode()
            alt = html.escape(block.caption)
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
            )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(name) for name in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows])


def _html_table(frame: pd.DataFrame) -> str:
    header = "".join(f"<th>{_inline(str(name))}</th>" for name in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(False)
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def _csv_note(csv: str) -> str:
    return f"Numbers: `{csv}`"


def _inline(text: str) -> str:
    """Escape for HTML, then turn `code` and **bold** into tags."""
    text = html.escape(text.strip(), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.45;color:#222}"
    "table{border-collapse:collapse;margin:0.5rem 0;font-size:0.9rem}"
    "th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}code{background:#f4f4f4;padding:0 0.2rem}"
    "figure{margin:1rem 0}img{max-width:100%}figcaption{font-style:italic;font-size:0.9rem}"
)
