"""The readable text of a built HTML page: title, and sections under headings.

What a person reads, not the page chrome: ``script``, ``style``, ``nav``,
``header``, ``footer`` (and a few more, and their ARIA roles) and anything
marked ``data-lorann-ignore`` are skipped; when the page marks its content
with ``data-lorann-body``, ``main`` (or ``role="main"``) or ``article``, only
that is read (the first
of these kinds present, in that order). Each heading starts a section; its
anchor is the heading's ``id``, else the nearest enclosing element's ``id``
(Sphinx, MkDocs and Hugo put it on a wrapping ``section``).
"""

import html.parser
import re

SKIP = frozenset({"script", "style", "nav", "header", "footer", "noscript", "template", "svg",
                  "form", "button", "select", "textarea", "iframe", "head"})
#: ARIA landmark roles that mean the same as the skipped elements
SKIP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
#: elements that end a line of text
BLOCKS = frozenset({"p", "div", "li", "ul", "ol", "br", "tr", "td", "th", "dt", "dd", "pre",
                    "section", "article", "main", "blockquote", "table", "figcaption", "hr",
                    "dl", "aside", "details", "summary"} | HEADINGS)
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "param", "source", "track", "wbr"})
#: content markers, most specific first
BODY_MARKERS = ("data-lorann-body", "main", "article")
_SPACE = re.compile(r"[ \t\r\f\v]+")


#: open elements kept at most: deeper ones are read as if they had no end (a page
#: nested this deep is broken or hostile; the stack must not grow with it)
MAX_DEPTH = 256


class _Reader(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []  # (tag, id, skipped, markers)
        self.open = {}  # tag -> how many of the stack's elements it names
        self.title = []
        self.in_title = False
        self.pieces = []  # (text, markers, section number)
        self.sections = [["", None]]  # [heading, anchor]
        self.heading = None  # (depth, text parts) while inside a heading

    def _state(self):
        if not self.stack:
            return False, frozenset()
        return self.stack[-1][2], self.stack[-1][3]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self.in_title = True
        skipped, markers = self._state()
        classes = (attrs.get("class") or "").split()
        role = attrs.get("role")
        skipped = (skipped or tag in SKIP or role in SKIP_ROLES
                   or "data-lorann-ignore" in attrs or "headerlink" in classes)
        if "data-lorann-body" in attrs:
            markers = markers | {"data-lorann-body"}
        elif tag in ("main", "article") or role == "main":
            markers = markers | {"main" if role == "main" else tag}
        if tag in BLOCKS:
            self._text("\n")
        if tag in HEADINGS and not skipped and self.heading is None:
            anchor = attrs.get("id") or next((e[1] for e in reversed(self.stack) if e[1]), None)
            self.sections.append(["", anchor])
            self.heading = (len(self.stack), [], markers)
        if tag not in VOID and len(self.stack) < MAX_DEPTH:
            self.stack.append((tag, attrs.get("id"), skipped, markers))
            self.open[tag] = self.open.get(tag, 0) + 1

    def handle_startendtag(self, tag, attrs):
        if tag in BLOCKS:
            self._text("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in VOID or not self.open.get(tag):
            return  # a stray end tag: ignored, without looking through the stack
        # pop to the matching open tag: each element is popped once, so reading is
        # linear however the tags nest (the scan for every stray end tag was quadratic)
        while True:
            popped = self.stack.pop()[0]
            self.open[popped] -= 1
            if popped == tag:
                break
        if self.heading is not None and len(self.stack) <= self.heading[0]:
            self.sections[-1][0] = _SPACE.sub(" ", "".join(self.heading[1])).strip()
            self.heading = None
        if tag in BLOCKS:
            self._text("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
            return
        skipped, _ = self._state()
        if skipped:
            return
        if self.heading is not None:
            self.heading[1].append(data)
        self._text(data)

    def _text(self, data):
        _, markers = self._state()
        self.pieces.append((data, markers, len(self.sections) - 1))


def _clean(text):
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def read_html(source):
    """``(title, sections)`` of an HTML string; sections are ``(heading, anchor, text)``.

    Text keeps one line per block; sections with no text are left out.
    """
    reader = _Reader()
    reader.feed(source)
    reader.close()
    present = set().union(*(m for _, m, _ in reader.pieces)) if reader.pieces else set()
    marker = next((m for m in BODY_MARKERS if m in present), None)
    texts = [[] for _ in reader.sections]
    for data, markers, section in reader.pieces:
        if marker is None or marker in markers:
            texts[section].append(data)
    sections = []
    for (heading, anchor), parts in zip(reader.sections, texts):
        text = _clean("".join(parts))
        if text:
            sections.append((heading, anchor, text))
    return _clean("".join(reader.title)).replace("\n", " "), sections
