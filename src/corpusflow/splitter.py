"""langchain's RecursiveCharacterTextSplitter that also says where each chunk starts.

Its own module so that importing corpusflow.chunking does not import langchain (about half
a second): a run whose inputs are all unchanged never splits a text and never pays it.
"""

from __future__ import annotations

import re

from langchain_text_splitters import RecursiveCharacterTextSplitter
from langchain_text_splitters.character import _split_text_with_regex

Located = tuple[int, str, int | None]  # (start offset, chunk, its length if known)


class OffsetSplitter(RecursiveCharacterTextSplitter):
    """langchain's RecursiveCharacterTextSplitter that also says where each chunk starts.

    `_split_at` and `_merge_at` are the library's `_split_text` and `_merge_splits`
    (langchain-text-splitters 1.x) step for step, on (offset, text) pairs. With the separator
    kept at the start of each piece (the default), the library's pieces are contiguous slices
    of the text, so a chunk starts at its first piece's offset plus the whitespace that
    `strip` removes. tests/integration/test_properties_tokens.py checks that the texts equal
    the library's own `split_text` on arbitrary input, so a library change that would alter
    them is caught.
    """

    #: True when the length function is additive at whitespace: a text cut just before
    #: whitespace measures the sum of its parts, and whitespace alone measures 0 (a BERT
    #: WordPiece tokenizer's count). Then a chunk merged at a whitespace separator, stripped,
    #: has exactly the length the merge added up.
    additive_at_whitespace = False

    def split_with_offsets(self, text: str) -> list[tuple[int, str]]:
        return [(start, chunk) for start, chunk, _ in self.split_with_lengths(text)]

    def split_with_lengths(self, text: str) -> list[tuple[int, str, int | None]]:
        """(start, chunk, its length or None): the length where `additive_at_whitespace`
        makes the merge's sum exact, so the caller need not measure the chunk again."""
        if self._keep_separator not in (True, "start"):
            raise ValueError("offsets need the separator kept at the start of each piece")
        return self._split_at(0, text, self._separators)

    def _split_at(self, base: int, text: str, separators: list[str]) -> list[Located]:
        final: list[Located] = []
        separator, new_separators = separators[-1], []
        for i, candidate in enumerate(separators):
            pattern = candidate if self._is_separator_regex else re.escape(candidate)
            if not candidate:
                separator = candidate
                break
            if re.search(pattern, text):
                separator, new_separators = candidate, separators[i + 1 :]
                break
        pattern = separator if self._is_separator_regex else re.escape(separator)
        splits, pos = [], base
        for piece in _split_text_with_regex(text, pattern, keep_separator=self._keep_separator):
            splits.append((pos, piece))
            pos += len(piece)
        # every piece but the first starts with the separator: pieces merged at a whitespace
        # separator are cut just before whitespace
        exact = self.additive_at_whitespace and separator.isspace() and not self._is_separator_regex
        good: list[tuple[int, str]] = []
        for at, piece in splits:
            if self._length_function(piece) < self._chunk_size:
                good.append((at, piece))
                continue
            if good:
                final.extend(self._merge_at(good, exact))
                good = []
            if not new_separators:
                final.append((at, piece, None))
            else:
                final.extend(self._split_at(at, piece, new_separators))
        if good:
            final.extend(self._merge_at(good, exact))
        return final

    def _merge_at(self, splits: list[tuple[int, str]], exact: bool = False) -> list[Located]:
        sep_len = self._length_function("")  # kept separators: pieces are joined with ""
        docs: list[Located] = []
        current: list[tuple[int, str]] = []
        total = 0
        for at, piece in splits:
            len_ = self._length_function(piece)
            if total + len_ + (sep_len if current else 0) > self._chunk_size:
                if current:
                    doc = self._join_at(current, total if exact else None)
                    if doc is not None:
                        docs.append(doc)
                    while total > self._chunk_overlap or (
                        total + len_ + (sep_len if current else 0) > self._chunk_size and total > 0
                    ):
                        total -= self._length_function(current[0][1]) + (
                            sep_len if len(current) > 1 else 0
                        )
                        current = current[1:]
            current.append((at, piece))
            total += len_ + (sep_len if len(current) > 1 else 0)
        doc = self._join_at(current, total if exact else None)
        if doc is not None:
            docs.append(doc)
        return docs

    def _join_at(self, pieces: list[tuple[int, str]], length: int | None) -> Located | None:
        """The pieces joined and stripped (whitespace adds no length where it is exact)."""
        if not pieces:
            return None
        start, text = pieces[0][0], "".join(piece for _, piece in pieces)
        if self._strip_whitespace:
            kept = text.lstrip()
            start += len(text) - len(kept)
            text = kept.rstrip()
        return (start, text, length) if text else None
