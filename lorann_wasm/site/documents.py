"""Reading a collection: JSONL, CSV, and folders of Markdown, text or built HTML.

Every reader yields :class:`Document`s; every problem with the input is a
``ValueError`` that names the file (and line or row) so it can be fixed.

In folders only regular files are read, at most :data:`MAX_PAGE_BYTES` each
(a named pipe, a device or a huge file is skipped with a warning); links
that lead outside the folder are skipped too (a link to ``../.env`` must not
publish it); and a lorann-wasm search site found inside (an earlier ``-o``)
is not read as pages. Under ``--html-root`` a site's pages are its HTML
files; Markdown and text files are read when given as inputs themselves.
"""

import csv
import json
import os
import posixpath
import re
import stat
import sys
import urllib.parse
from dataclasses import dataclass, field

from .html_text import read_html
from .paths import inside

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
HTML_SUFFIXES = (".html", ".htm")
#: a page in a folder larger than this is skipped (with a warning): no real page is,
#: and reading one whole would take the memory a generated or hostile one asks for
MAX_PAGE_BYTES = 32 << 20
#: a CSV cell may hold this much (Python's csv module stops at 128 KiB by default)
MAX_CSV_FIELD = 64 << 20

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
    return _text_ok(value, where, name)


def _from_record(record, number, names, where):
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    text = _value(record, names.text, where)
    if text is None:
        raise ValueError(f"{where}: no {names.text!r} field (choose one with --text-field); "
                         f"fields here: {sorted(map(str, record))}")
    title = _value(record, names.title, where) or ""
    extra = {}
    for name in names.extra:
        value = record.get(name)
        if isinstance(value, list):
            value = [_text_ok(str(v), where, name) for v in value]
        elif value is not None:
            value = _text_ok(str(value), where, name)
        extra[name] = value
    return Document(id=_value(record, names.id, where) or str(number), title=title,
                    url=_value(record, names.url, where), sections=[("", None, text)],
                    fields=extra)


def _warn(msg):
    print(f"site: warning: {msg}", file=sys.stderr, flush=True)


def _text_ok(value, where, name):
    """``value`` if it can be written as UTF-8 (no lone surrogates), else ValueError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: field {name!r} holds a lone surrogate (\\ud800-\\udfff), "
                         "which is not text") from None
    return value


def read_jsonl(path, names=Fields()):
    """One document per line of a JSON Lines file (blank lines are skipped); a
    record without an id gets its number."""
    _regular_file(path)
    number = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            where = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: not UTF-8 (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            except RecursionError:  # (Python's parser gives up past ~1,000 levels)
                raise ValueError(f"{where}: JSON nested too deep to read") from None
            yield _from_record(record, number, names, where)
            number += 1


def read_csv(path, names=Fields()):
    """One document per row of a CSV file with a header row."""
    _regular_file(path)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        row_no = 1
        try:
            if reader.fieldnames is None:
                raise ValueError(f"{path}: empty CSV file (a header row is needed)")
            for row_no, row in enumerate(reader, 2):
                where = f"{path}: row {row_no}"
                if None in row:
                    raise ValueError(f"{where}: {len(row[None])} more cell(s) than the header "
                                     f"has columns ({len(reader.fieldnames)})")
                yield _from_record(row, row_no - 2, names, where)
        except csv.Error as exc:
            raise ValueError(f"{path}: row {row_no + 1}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 (after row {row_no}: byte {exc.start})") from None


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


def _regular_file(path):
    """Refuse an input that is not a regular file (a pipe would block, a device never end)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file (a pipe, device or socket is not read)")


def is_search_site(folder):
    """Whether ``folder`` holds a site made by lorann-wasm (its site.json says so)."""
    try:
        with open(os.path.join(folder, "site.json"), encoding="utf-8") as f:
            return json.load(f).get("generator") == "lorann-wasm site"
    except (OSError, ValueError, AttributeError):
        return False


def _pages(folder, skip, suffixes):
    root = os.path.realpath(folder)
    for current, dirs, files in os.walk(folder):
        kept = []
        for d in sorted(dirs):
            path = os.path.join(current, d)
            real = os.path.realpath(path)
            if d.startswith(".") or real in skip:
                continue
            if not inside(real, root):
                _warn(f"{path} links outside {folder}: skipped")
            elif is_search_site(path):
                _warn(f"{path} is a lorann-wasm search site: skipped")
            else:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            if not name.lower().endswith(suffixes) or name.startswith("."):
                continue
            path = os.path.join(current, name)
            if not inside(path, root):
                _warn(f"{path} links outside {folder}: skipped")
                continue
            try:
                info = os.stat(path)
            except OSError as exc:
                _warn(f"{path}: {exc.strerror}: skipped")
                continue
            if not stat.S_ISREG(info.st_mode):
                _warn(f"{path} is not a regular file: skipped")
            elif info.st_size > MAX_PAGE_BYTES:
                _warn(f"{path} is {info.st_size / 1e6:.0f} MB, more than a page "
                      f"({MAX_PAGE_BYTES >> 20} MiB at most): skipped")
            else:
                yield path


def page_url(path, html_root, link_base):
    """The link to a page: its path from ``link_base`` (where the search page lives).

    ``index.html`` becomes its folder, so links work on hosts that hide it.
    """
    rel = os.path.relpath(path, html_root).replace(os.sep, "/")
    if rel == "index.html" or rel.endswith("/index.html"):
        rel = rel[: -len("index.html")] or "./"
    base = os.path.relpath(html_root, link_base).replace(os.sep, "/")
    joined = posixpath.normpath(posixpath.join(base, rel)) + ("/" if rel.endswith("/") else "")
    if joined in (".", "./"):
        return "./"
    # a file name may hold "#", "?", "%" or spaces: each path segment percent-encoded
    return "/".join(urllib.parse.quote(part) for part in joined.split("/"))


def read_folder(folder, html_root=None, link_base=None, skip=(), pages_only=False):
    """One document per ``.md``/``.markdown``/``.txt``/``.html``/``.htm`` file, in path order
    (with ``pages_only``, the HTML files only).

    Links are relative to ``link_base`` (default: ``html_root``, default: ``folder``).
    """
    skip = {os.path.realpath(s) for s in skip}
    suffixes = HTML_SUFFIXES if pages_only else TEXT_SUFFIXES + HTML_SUFFIXES
    for path in _pages(folder, skip, suffixes):
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
    """Every document of every input (files by suffix: .jsonl, .csv; folders). The
    folder that is ``html_root`` gives its HTML pages only."""
    for path in inputs:
        lower = path.lower()
        if os.path.isdir(path):
            pages_only = html_root is not None and (
                os.path.realpath(path) == os.path.realpath(html_root))
            yield from read_folder(path, html_root, link_base, skip, pages_only)
        elif not os.path.exists(path):
            raise ValueError(f"{path}: no such file or folder")
        elif lower.endswith((".jsonl", ".ndjson")):
            yield from read_jsonl(path, names)
        elif lower.endswith(".csv"):
            yield from read_csv(path, names)
        elif lower.endswith(TEXT_SUFFIXES + HTML_SUFFIXES):
            _regular_file(path)
            yield read_page(path, os.path.dirname(os.path.abspath(path)), html_root, link_base)
        else:
            raise ValueError(f"{path}: unknown input type; expected .jsonl, .csv, .md, .txt, "
                             ".html or a folder of them")
