"""A pure-NumPy sentence encoder (all-MiniLM-L6-v2) for query and corpus embedding.

The same code embeds the corpus offline in CPython and the queries in the
browser under Pyodide, so both sides agree.
"""

from .tokenizer import WordPieceTokenizer

__all__ = ["WordPieceTokenizer"]
