"""Volatile-text detection and the 'static block keeps changing' rule."""

from __future__ import annotations

import pytest

from langchain_claude_relay.planner.stability import (
    CHANGE_STREAK,
    HASH_HISTORY,
    find_volatile,
    note_block_hash,
)


@pytest.mark.parametrize(
    ("text", "kind", "excerpt"),
    [
        ("Current time: 2025-03-01T09:30:00Z.", "timestamp", "2025-03-01T09:30:00Z"),
        ("now 2025-03-01 09:30 UTC", "timestamp", "2025-03-01 09:30"),
        ("at 2024-12-31T23:59:59.123+01:00 sharp", "timestamp", "2024-12-31T23:59:59.123+01:00"),
        ("Today is 2025-03-01.", "date", "2025-03-01"),
        ("Date: 3/14/2024", "date", "3/14/2024"),
        ("Date: 12/25/24 ok", "date", "12/25/24"),
        ("It is 14:05:09 now", "time", "14:05:09"),
        ("trace 3f2a9c1e-0d4b-4e8a-9b7c-1a2b3c4d5e6f", "uuid", "3f2a9c1e…"),
        ("TRACE 3F2A9C1E-0D4B-4E8A-9B7C-1A2B3C4D5E6F", "uuid", "3F2A9C1E…"),
        ("commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "hex id", "9fceb02d…"),
        ("nonce 1234567890123456 end", "hex id", "12345678…"),
        ("This is request #123 of the day", "counter", "request #123"),
        ("call # 7", "counter", "call # 7"),
        ("Überprüfung 2025-03-01T09:30:00Z", "timestamp", "2025-03-01T09:30:00Z"),
    ],
)
def test_finds_volatile_text(text: str, kind: str, excerpt: str) -> None:
    found = find_volatile(text)
    assert (kind, excerpt) in [(m.kind, m.excerpt) for m in found]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "You are a helpful assistant. Answer in French.",
        "Use slicing like a[0:10] and ratios like 3:2.",
        "Version 1.2.3 and section 4.5 of RFC 9110.",
        "# Heading\n#12 is a markdown-ish line without a word before it",
        "deadbeefdeadbeefcafe is all letters",  # no digit: words, not an id
        "abc0123456789abcdefXYZ",  # glued to letters on both sides: not a standalone id
        "Call me at 555-1234.",
    ],
)
def test_ignores_stable_text(text: str) -> None:
    assert find_volatile(text) == ()


def test_limit_and_order() -> None:
    text = " ".join(f"2025-01-{d:02d}" for d in range(1, 10))
    assert len(find_volatile(text, limit=3)) == 3
    assert [m.excerpt for m in find_volatile(text, limit=2)] == ["2025-01-01", "2025-01-02"]


def test_note_block_hash_counts_consecutive_new_hashes() -> None:
    history: list[float] = []
    streaks = []
    for h in range(1, CHANGE_STREAK + 3):
        history, streak = note_block_hash(history, h)
        streaks.append(streak)
    assert streaks == list(range(CHANGE_STREAK + 2))
    assert streaks[CHANGE_STREAK] >= CHANGE_STREAK


@pytest.mark.parametrize("prompts", [2, 3, 5])
def test_a_rotation_of_static_prompts_is_not_reported(prompts: int) -> None:
    history: list[float] = []
    streaks = []
    for call in range(40):
        history, streak = note_block_hash(history, call % prompts + 1)
        streaks.append(streak)
    assert max(streaks) < CHANGE_STREAK


def test_alternating_prompts_are_not_changes() -> None:
    history: list[float] = []
    for h in [1, 2, 1, 2, 1, 2]:
        history, streak = note_block_hash(history, h)
    assert streak == 0
    assert len(history) <= HASH_HISTORY + 1
