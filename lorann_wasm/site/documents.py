"""Reading a collection: JSONL, CSV, and folders of Markdown, text or built HTML.

Every reader yields :class:`Document`s; every problem with the input is a
``ValueError`` that names the file (and line or row) so it can be fixed.
"""

import csv
import json
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field

from .html_text import read_html

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
HTML_SUFFIXES = (".html", ".htm")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass
class Fields:
    """Which record fields hold what (JSONL and CSV inputs)."""
    text: str = "text"
    title: str = "title"
    url: str = "url"
    id: str = "id"
    #: further fields shown with each result (and kept for filtering)
    extra: tuple = ()


@dataclass
class Document:
    """One document: its sections are ``(heading, anchor, text)``; ``url`` may be None."""
    id: str
    title: str
    url: str = None
    sections: list = field(default_factory=list)
    fields: dict = field(default_factory=dict)


def _value(record, name, where):
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _from_record(record, number, names, where):
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    text = _value(record, names.text, where)
    if text is None:
        raise ValueError(f"{where}: no {names.text!r} field (choose one with --text-field); "
                         f"fields here: {sorted(record)}")
    title = _value(record, names.title, where) or ""
    extra = {}
    for name in names.extra:
        value = record.get(name)
        if isinstance(value, list):
            value = [str(v) for v in value]
        elif value is not None:
            value = str(value)
        extra[name] = value
    return Document(id=_value(record, names.id, where) or str(number), title=title,
                    url=_value(record, names.url, where), sections=[("", None, text)],
                    fields=extra)


def read_jsonl(path, names=Fields()):
    """One document per line of a JSON Lines file (blank lines are skipped); a
    record without an id gets its number."""
    number = 0
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not data
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            yield _from_record(record, number, names, where)
            number += 1


def read_csv(path, names=Fields()):
    """One document per row of a CSV file with a header row."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty CSV file (a header row is needed)")
        for row_no, row in enumerate(reader, 2):
            yield _from_record(row, row_no - 2, names, f"{path}: row {row_no}")


def slug(heading):
    """A GitHub-style anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def read_markdown(text):
    """``(title, sections)`` of Markdown (or plain) text; sections split at ATX headings."""
    sections, heading, anchor, lines, title = [], "", None, [], None
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        match = None if fence else _MD_HEADING.match(line)
        if match:
            if "\n".join(lines).strip():
                sections.append((heading, anchor, "\n".join(lines).strip()))
            heading = match.group(2)
            anchor, lines = slug(heading), [heading]
            if title is None and len(match.group(1)) == 1:
                title = heading
        else:
            lines.append(line)
    if "\n".join(lines).strip():
        sections.append((heading, anchor, "\n".join(lines).strip()))
    return title, sections


def _pages(folder, skip):
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(root, d)) not in skip)
        for name in sorted(files):
            if name.lower().endswith(TEXT_SUFFIXES + HTML_SUFFIXES) and not name.startswith("."):
                yield os.path.join(root, name)


def page_url(path, html_root, link_base):
    """The link to a page: its path from ``link_base`` (where the search page lives).

    ``index.html`` becomes its folder, so links work on hosts that hide it.
    """
    rel = os.path.relpath(path, html_root).replace(os.sep, "/")
    if rel == "index.html" or rel.endswith("/index.html"):
        rel = rel[: -len("index.html")] or "./"
    base = os.path.relpath(html_root, link_base).replace(os.sep, "/")
    joined = posixpath.normpath(posixpath.join(base, rel)) + ("/" if rel.endswith("/") else "")
    return "./" if joined in (".", "./") else joined


def read_folder(folder, html_root=None, link_base=None, skip=()):
    """One document per ``.md``/``.markdown``/``.txt``/``.html``/``.htm`` file, in path order.

    Links are relative to ``link_base`` (default: ``html_root``, default: ``folder``).
    """
    skip = {os.path.realpath(s) for s in skip}
    for path in _pages(folder, skip):
        yield read_page(path, folder, html_root, link_base)


def read_page(path, folder, html_root=None, link_base=None):
    """One Markdown, text or HTML file as a document; its id is its path under ``folder``."""
    html_root = html_root or folder
    link_base = link_base or html_root
    with open(path, "rb") as f:
        raw = f.read()
    try:
        source = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # one page in an old encoding should not stop a whole site
        source = raw.decode("utf-8", errors="replace")
        print(f"site: warning: {path} is not UTF-8 (byte {exc.start}); undecodable bytes "
              "are shown as \ufffd", file=sys.stderr)
    if path.lower().endswith(HTML_SUFFIXES):
        title, sections = read_html(source)
        url = page_url(path, html_root, link_base)
    else:  # Markdown and text files are not pages a browser shows: no link
        title, sections = read_markdown(source)
        url = None
    return Document(id=os.path.relpath(path, folder).replace(os.sep, "/"),
                    title=title or os.path.splitext(os.path.basename(path))[0],
                    url=url, sections=sections)


def read_inputs(inputs, names=Fields(), html_root=None, link_base=None, skip=()):
    """Every document of every input (files by suffix: .jsonl, .csv; folders)."""
    for path in inputs:
        lower = path.lower()
        if os.path.isdir(path):
            yield from read_folder(path, html_root, link_base, skip)
        elif not os.path.exists(path):
            raise ValueError(f"{path}: no such file or folder")
        elif lower.endswith((".jsonl", ".ndjson")):
            yield from read_jsonl(path, names)
        elif lower.endswith(".csv"):
            yield from read_csv(path, names)
        elif lower.endswith(TEXT_SUFFIXES + HTML_SUFFIXES):
            yield read_page(path, os.path.dirname(os.path.abspath(path)), html_root, link_base)
        else:
            raise ValueError(f"{path}: unknown input type; expected .jsonl, .csv, .md, .txt, "
                             ".html or a folder of them")
