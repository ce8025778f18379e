"""BERT uncased WordPiece tokenisation, matching the reference (``tokenizers``) ids.

Basic tokenisation: drop control characters and U+FFFD, map white space to
spaces, put spaces around CJK ideographs, strip accents (NFD, then drop
combining marks), lower-case, split on white space and punctuation. Then
greedy longest-match-first WordPiece with ``##`` continuations; a word
longer than 100 characters, or one that cannot be covered, becomes [UNK].
"""

import re
import unicodedata

MAX_WORD_CHARS = 100
#: characters of text tokenised at a time (a window ends before white space)
WINDOW_CHARS = 4096
_SPLIT = re.compile(r"[ \t\n\r]")


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """Text -> token ids for an uncased BERT vocabulary (one token per line of vocab.txt)."""

    def __init__(self, vocab, max_length=256):
        if isinstance(vocab, str):
            with open(vocab, encoding="utf-8") as f:
                vocab = [line.rstrip("\n") for line in f]
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
            if special not in self.vocab:
                raise ValueError(f"vocabulary has no {special} token")
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.unk, self.pad = self.vocab["[UNK]"], self.vocab["[PAD]"]
        self.max_length = max_length
        self._cache = {}

    def normalize(self, text):
        """Clean, space out CJK, strip accents and lower-case."""
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFD", "".join(out))
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        return text.lower()

    def basic_tokens(self, text):
        """Words and punctuation marks, in order."""
        tokens = []
        for word in self.normalize(text).split():
            start = 0
            for i, ch in enumerate(word):
                if _is_punctuation(ch):
                    if start < i:
                        tokens.append(word[start:i])
                    tokens.append(ch)
                    start = i + 1
            if start < len(word):
                tokens.append(word[start:])
        return tokens

    def wordpiece(self, word):
        """Ids of one word's pieces (cached)."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                ids = [self.unk]
                break
            start = end
        if len(self._cache) < 200_000:
            self._cache[word] = ids
        return ids

    def encode(self, text):
        """``[CLS] pieces... [SEP]`` ids, truncated to ``max_length`` tokens in all.

        Long texts are read a window at a time (cut before a space, tab or
        newline, where tokenising in parts gives the same ids as the whole),
        stopping once ``max_length`` ids are reached: a 1 MB text costs no more
        than its first few kilobytes.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = [self.cls]
        limit = self.max_length - 1
        start = 0
        while start < len(text) and len(ids) < limit:
            stop = _SPLIT.search(text, min(start + WINDOW_CHARS, len(text)))
            stop = stop.start() if stop else len(text)
            for word in self.basic_tokens(text[start:stop]):
                ids.extend(self.wordpiece(word))
                if len(ids) >= limit:
                    break
            start = max(stop, start + 1)
        return ids[:limit] + [self.sep]
