"""The request as the planner reads it: its blocks in prefix order, their facts, prefix hashes.

``scan_request`` lists the tools, the system blocks and the message blocks in prefix order (an
``Item`` each: position, kind, role, section, marker) with their ``Facts``: the content hash,
the raw token counts (prose, tool text, media) and, for the blocks meant to stay identical call
after call (tools, system, the first user message), the volatile-looking text in them. Facts are
memoized per block content, so a growing conversation counts each block once. No store, no
clock: the memo and the token estimator are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from langchain_claude_relay.planner.stability import VolatileMatch, find_volatile
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    ClaudeRequest,
    Position,
    Tool,
    chain_prefix_hashes,
    remember_prefix_hashes,
)
from langchain_claude_relay.tokens import (
    BlockMemo,
    TokenEstimator,
    TokenParts,
    block_parts,
    content_key,
    tool_parts,
)

__all__ = ["Facts", "Item", "Scan", "scan_request"]


class Facts(NamedTuple):
    """What a block's content says, memoized by content.

    Attributes:
        hash: the block's content hash.
        raw: raw token counts ``(prose, tool text, media)`` before calibration.
        volatile: volatile-looking text in it (``None``: not scanned, not a static block).
    """

    hash: str
    raw: tuple[float, float, float]
    volatile: tuple[VolatileMatch, ...] | None


class Item(NamedTuple):
    """One tool or content block of the request, in prefix order.

    Attributes:
        position: where it sits in the request.
        kind: ``"tool"`` or the block type (``"text"``, ``"document"``...).
        role: ``"tool"``, ``"system"``, ``"user"`` or ``"assistant"``.
        section: ``"tools"``, ``"system"`` or ``"messages"``.
        message: the message index (``-1`` outside messages).
        markable: whether a marker may sit on it.
        marker: the user's marker on it, if any.
        source: the block or tool itself.
    """

    position: Position
    kind: str
    role: str
    section: str
    message: int
    markable: bool
    marker: CacheControl | None
    source: Block | Tool


@dataclass(frozen=True)
class Scan:
    """A scanned request: items, their facts and the prefix hash through each, in prefix order.

    The prefix hashes are ``request.prefix_hashes()``: keyed by the model and the cache scope as
    well as the content (``request.cache_partition()``), so every record keyed by them (the
    store's ``p:`` and ``c:`` records, fine templates, lineage entries, requests in flight, the
    fleet's warm marks) is per model and per cache (relay and account).
    """

    items: tuple[Item, ...]
    facts: tuple[Facts, ...]
    prefix_hashes: tuple[str, ...]

    @property
    def is_tool(self) -> list[bool]:
        """Per item: whether it is a tool definition (calibrated at the tool rate)."""
        return [item.section == "tools" for item in self.items]

    @property
    def raws(self) -> list[tuple[float, float, float]]:
        """Per item: its raw token counts ``(prose, tool text, media)``."""
        return [fact.raw for fact in self.facts]


def scan_request(request: ClaudeRequest, memo: BlockMemo[Facts], estimator: TokenEstimator) -> Scan:
    """List a request's items with their facts (memoized in ``memo``) and prefix hashes.

    Args:
        request: the request.
        memo: facts already known, by block content (updated with the new ones).
        estimator: counts the raw tokens of a block not in ``memo``.

    Returns:
        The scan; its prefix hashes equal ``request.prefix_hashes()``.
    """
    items = _items(request)
    facts: list[Facts] = []
    for item in items:
        key = content_key(item.source)
        fact = memo.get(key)
        static = _static(item)
        if fact is None or (static and fact.volatile is None):
            parts = _parts(item.source)
            volatile = find_volatile("\n".join((*parts.prose, *parts.tool))) if static else None
            if fact is None:
                fact = Facts(item.source.hash, estimator.count_parts(parts), volatile)
            else:
                fact = fact._replace(volatile=volatile)
            memo.put(key, fact)
        facts.append(fact)
    # request.prefix_hashes() from the memoized block hashes: the same chain (seeded with the
    # model and the cache scope, as Claude caches per model and account), no rehashing
    prefixes = chain_prefix_hashes(
        [item.section for item in items],
        [fact.hash for fact in facts],
        request.messages_context_hash(),
        model_key=request.cache_partition(),
    )
    remember_prefix_hashes(request, prefixes)
    return Scan(tuple(items), tuple(facts), prefixes)


def _items(request: ClaudeRequest) -> list[Item]:
    items = [
        Item(Position("tools", i), "tool", "tool", "tools", -1, True, t.cache_control, t)
        for i, t in enumerate(request.tools)
    ]
    items += [
        Item(Position("system", i), b.type, "system", "system", -1, b.markable, b.cache_control, b)
        for i, b in enumerate(request.system)
    ]
    items += [
        Item(
            Position("messages", m, j),
            b.type,
            message.role,
            "messages",
            m,
            b.markable,
            b.cache_control,
            b,
        )
        for m, message in enumerate(request.messages)
        for j, b in enumerate(message.content)
    ]
    return items


def _static(item: Item) -> bool:
    """Blocks meant to be identical call after call: tools, system, the first user message."""
    return item.section != "messages" or item.message == 0


def _parts(source: Block | Tool) -> TokenParts:
    return tool_parts(source) if isinstance(source, Tool) else block_parts(source)
