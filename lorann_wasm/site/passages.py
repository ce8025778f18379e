"""Splitting documents into passages that fit the encoder's window.

A section that fits is one passage, its text unchanged. A longer one is cut
at sentence ends into passages of at most ``max_tokens`` word pieces, each
starting with the last sentences of the one before (up to ``overlap``
tokens), so a thought cut in two is whole in one of them. Passages never
cross headings: each links to its section's anchor.
"""

import re
from dataclasses import dataclass

#: the encoder reads 256 tokens, two of them [CLS] and [SEP]
WINDOW = 254
#: where sentences end: after . ! ? … and white space, or right after the full-width
#: marks of Chinese and Japanese (。！？), which no space follows; and at line ends
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？｡])|\n+")


@dataclass
class Passage:
    doc: int  # the document's number in input order
    heading: str
    anchor: str
    text: str
    #: what is embedded: the document's title (and heading) give the passage its context
    embed_text: str


class TokenCounter:
    """Word pieces in a text, as the encoder's tokenizer cuts it."""

    def __init__(self, tokenizer):
        self.tok = tokenizer

    def __call__(self, text):
        return sum(len(self.tok.wordpiece(w)) for w in self.tok.basic_tokens(text))

    def at_most(self, text, limit):
        """Whether ``text`` has at most ``limit`` pieces; a piece is at least one
        character, so short texts need no tokenising (most of WordNet's)."""
        return len(text) <= limit or self(text) <= limit


def _cut_word(word, count, limit):
    """A run of characters longer than ``limit`` tokens (text without spaces: Chinese,
    Japanese, Thai) cut into runs that fit: the last resort, so no text is dropped."""
    out = []
    while word:
        size = max(1, len(word) * limit // max(count(word), 1))
        while size > 1 and count(word[:size]) > limit:
            size = max(1, size * 3 // 4)
        out.append(word[:size])
        word = word[size:]
    return out


def _pieces(sentence, count, limit):
    """A sentence longer than ``limit`` tokens, cut between words (and inside a word
    that alone is longer)."""
    words, out, current, used = sentence.split(), [], [], 0
    for word in words:
        n = count(word)
        if n > limit:
            if current:
                out.append(" ".join(current))
                current, used = [], 0
            out.extend(_cut_word(word, count, limit))
            continue
        if current and used + n > limit:
            out.append(" ".join(current))
            current, used = [], 0
        current.append(word)
        used += n
    if current:
        out.append(" ".join(current))
    return out


def split_section(text, count, max_tokens, overlap):
    """The passages of one section's text (see the module docstring)."""
    if count.at_most(text, max_tokens):
        return [text]
    sentences = []
    for s in _SENTENCE.split(text):
        s = s.strip()
        if s:
            n = count(s)
            if n > max_tokens:
                sentences.extend((p, count(p)) for p in _pieces(s, count, max_tokens))
            else:
                sentences.append((s, n))
    passages, current, used = [], [], 0
    for s, n in sentences:
        if current and used + n > max_tokens:
            passages.append(" ".join(x for x, _ in current))
            keep, kept = [], 0
            for x, m in reversed(current):
                if kept + m > overlap or kept + m + n > max_tokens:
                    break
                keep.insert(0, (x, m))
                kept += m
            current, used = keep, kept
        current.append((s, n))
        used += n
    if current:
        passages.append(" ".join(x for x, _ in current))
    return passages


def check_passage_tokens(max_tokens):
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) \
            or not 16 <= max_tokens <= WINDOW:
        raise ValueError(f"passage tokens must be in [16, {WINDOW}], got {max_tokens!r}")
    return max_tokens


def split_documents(documents, tokenizer, max_tokens=200, overlap=None):
    """Every passage of ``documents`` (a list), in order.

    ``max_tokens`` (at most 254, the encoder's window) bounds a passage's
    text; together with its title the embedded text is cut to the window.
    ``overlap`` defaults to a fifth of ``max_tokens``.
    """
    check_passage_tokens(max_tokens)
    overlap = max_tokens // 5 if overlap is None else overlap
    count = TokenCounter(tokenizer)
    out = []
    for number, doc in enumerate(documents):
        for heading, anchor, text in doc.sections:
            context = doc.title if not heading or heading == doc.title else \
                f"{doc.title} — {heading}" if doc.title else heading
            budget = max_tokens
            if context and not count.at_most(context, WINDOW - max_tokens - 1):
                budget = max(16, min(max_tokens, WINDOW - count(context) - 1))
            for passage in split_section(text, count, budget, min(overlap, budget // 2)):
                out.append(Passage(number, heading, anchor, passage,
                                   f"{context}: {passage}" if context else passage))
    return out
