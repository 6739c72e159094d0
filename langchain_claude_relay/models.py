"""The Claude model table: minimum cacheable prefix, prices, rate-limit rules, retirement.

Facts live here as data, in one table, because they change month to month. Relays rename
models (``claude-sonnet-4-5-20250929``, ``anthropic/claude-sonnet-4.5``,
``claude-sonnet-4-5-thinking``, ``us.anthropic.claude-sonnet-4-5-v1:0``), so ids are matched by
*family*: tier (opus, sonnet, haiku, fable, mythos) and version, ignoring provider prefixes, date
stamps and variant suffixes.

>>> lookup_model("anthropic/claude-sonnet-4.5").family
'sonnet-4-5'
>>> lookup_model("claude-3-5-haiku-20241022").min_cache_tokens
2048
>>> lookup_model("claude-opus-5-5").known   # newer than our sources: kept unknown, not invented
False

Prices are USD per million tokens. A model whose prices were not published in our sources has
``prices=None``: cost is reported as ``None`` rather than guessed.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

__all__ = [
    "DEFAULT_MODEL",
    "UNKNOWN_MIN_CACHE_TOKENS",
    "ModelPrices",
    "ModelSpec",
    "MODEL_TABLE",
    "model_family",
    "lookup_model",
    "register_model",
]

DEFAULT_MODEL = "claude-sonnet-4-6"
"""A current model with published prices and minimum (the relay article's list is retired)."""

UNKNOWN_MIN_CACHE_TOKENS = 512
"""Assumed minimum for unknown models: a marker on a too-short prefix only costs its slot."""


@dataclass(frozen=True)
class ModelPrices:
    """USD per million tokens, each kind stored explicitly (read multipliers differ by model)."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float

    @classmethod
    def standard(cls, input: float, output: float, read_multiplier: float = 0.1) -> ModelPrices:
        """Prices with Anthropic's usual multipliers: write 5m 1.25x, write 1h 2x, read 0.1x.

        Args:
            input: base input price, USD per million tokens.
            output: output price, USD per million tokens.
            read_multiplier: cache-read price as a fraction of ``input``.

        Returns:
            The full price record.
        """
        return cls(
            input=input,
            output=output,
            cache_read=round(input * read_multiplier, 6),
            cache_write_5m=round(input * 1.25, 6),
            cache_write_1h=round(input * 2.0, 6),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What the planner, the limiter and the cost accounting need to know about one model family.

    Attributes:
        family: canonical family key, e.g. ``"sonnet-4-5"``.
        min_cache_tokens: shortest cacheable prefix; shorter prefixes are silently not cached.
        prices: USD per million tokens, or ``None`` when not published in our sources.
        reads_count_toward_itpm: whether cache reads count toward input-tokens-per-minute.
        token_ratio_prior: expected Claude tokens per ``cl100k_base`` token before calibration.
        retired_on: end-of-life date, if announced.
        known: ``False`` for an id not in the table (safe defaults were used).
    """

    family: str
    min_cache_tokens: int
    prices: ModelPrices | None
    reads_count_toward_itpm: bool = False
    token_ratio_prior: float = 1.2
    retired_on: _dt.date | None = None
    known: bool = True

    def is_retired(self, today: _dt.date | None = None) -> bool:
        """Whether the model has reached its announced end of life on ``today``."""
        if self.retired_on is None:
            return False
        return (today or _dt.date.today()) >= self.retired_on


_std = ModelPrices.standard
_OLD = 1.2  # cl100k undercounts Claude prose by roughly 15-28%
_NEW = 1.56  # Claude 4.7+ count ~30% more than older models for the same text

# family -> spec. Sources: ../shared/DESIGN.md (Anthropic's docs as of 2026-08; SDK 2.12 models).
MODEL_TABLE: dict[str, ModelSpec] = {
    spec.family: spec
    for spec in [
        # 512-token minimum
        ModelSpec("opus-5", 512, _std(5, 25), token_ratio_prior=_NEW),
        ModelSpec("fable-5", 512, _std(10, 50), token_ratio_prior=_NEW),
        ModelSpec("mythos-5", 512, _std(10, 50), token_ratio_prior=_NEW),
        # 1,024
        ModelSpec("opus-4-8", 1024, _std(5, 25), token_ratio_prior=_NEW),
        ModelSpec("sonnet-5", 1024, _std(2, 10), token_ratio_prior=_NEW),
        ModelSpec("sonnet-4-6", 1024, _std(3, 15)),
        ModelSpec("sonnet-4-5", 1024, _std(3, 15), retired_on=_dt.date(2026, 11, 30)),
        ModelSpec("opus-4-1", 1024, _std(15, 75)),
        ModelSpec("opus-4", 1024, _std(15, 75), retired_on=_dt.date(2026, 6, 15)),
        ModelSpec("sonnet-4", 1024, _std(3, 15), retired_on=_dt.date(2026, 6, 15)),
        ModelSpec("sonnet-3-7", 1024, _std(3, 15), retired_on=_dt.date(2026, 2, 19)),
        ModelSpec("sonnet-3-5", 1024, _std(3, 15), retired_on=_dt.date(2025, 10, 22)),
        ModelSpec("opus-3", 1024, _std(15, 75), retired_on=_dt.date(2026, 1, 5)),
        # 2,048
        ModelSpec("opus-4-7", 2048, _std(5, 25), token_ratio_prior=_NEW),
        ModelSpec(
            "haiku-3-5",
            2048,
            _std(0.8, 4),
            reads_count_toward_itpm=True,
            retired_on=_dt.date(2026, 2, 19),
        ),
        ModelSpec("haiku-3", 2048, _std(0.25, 1.25), reads_count_toward_itpm=True),
        # 4,096
        ModelSpec("opus-4-6", 4096, _std(5, 25)),
        ModelSpec("opus-4-5", 4096, _std(5, 25)),
        ModelSpec("haiku-4-5", 4096, _std(1, 5)),
    ]
}

_TIERS = ("opus", "sonnet", "haiku", "fable", "mythos")
_overrides: dict[str, ModelSpec] = {}
_warned_unknown: set[str] = set()
_warned_retired: set[str] = set()


def model_family(model_id: str) -> str | None:
    """Reduce a relay's model id to its family key, or ``None`` if it names no Claude tier.

    Handles provider prefixes (``anthropic/``, ``us.anthropic.``, ``bedrock/``), dots as
    version separators, date stamps (``-20250929``, ``@20250929``), Bedrock suffixes
    (``-v1:0``) and variants (``-thinking``, ``-latest``), in both naming orders
    (``claude-sonnet-4-5`` and ``claude-3-5-sonnet``).

    >>> model_family("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
    'sonnet-3-7'
    >>> model_family("claude-opus-4-0")
    'opus-4'
    >>> model_family("gpt-4o") is None
    True
    """
    name = model_id.strip().lower().rsplit("/", 1)[-1]
    name = name.split("@", 1)[0]
    name = re.sub(r"-v\d+(:\d+)?$", "", name)
    name = name.replace(".", "-").replace("_", "-")
    tokens = [t for t in re.split(r"[^a-z0-9]+", name) if t]
    tier_positions = [i for i, t in enumerate(tokens) if t in _TIERS]
    if not tier_positions:
        return None
    pos = tier_positions[0]
    tier = tokens[pos]

    def version_digits(seq: list[str]) -> list[str]:
        out: list[str] = []
        for tok in seq:
            if tok.isdigit() and len(tok) <= 2:
                out.append(tok)
            else:
                break
        return out

    after = version_digits(tokens[pos + 1 :])
    if after:
        version = after
    else:  # old order: claude-3-5-sonnet
        before = [t for t in tokens[:pos] if t.isdigit() and len(t) <= 2]
        version = before
    if not version:
        return None
    if len(version) > 1 and version[1] == "0":  # claude-opus-4-0 is Opus 4
        version = version[:1]
    return "-".join([tier, *version[:2]])


def register_model(model_id_or_family: str, **changes: object) -> ModelSpec:
    """Override or add a model's facts (for example a new model's minimum or prices).

    Args:
        model_id_or_family: a relay id or a family key such as ``"opus-5-5"``.
        **changes: ``ModelSpec`` fields to set (``min_cache_tokens``, ``prices``, ...).

    Returns:
        The spec now in force for that family.

    Raises:
        ValueError: if the id names no Claude family or a field is unknown.
    """
    family = model_family(model_id_or_family) or model_id_or_family
    if not re.fullmatch(r"[a-z]+-\d+(-\d+)?", family):
        msg = f"cannot register {model_id_or_family!r}: it names no Claude family like 'opus-5-5'"
        raise ValueError(msg)
    base = _overrides.get(family) or MODEL_TABLE.get(family) or _unknown_spec(family)
    try:
        spec = replace(base, family=family, known=True, **changes)  # type: ignore[arg-type]
    except TypeError as exc:
        msg = f"unknown ModelSpec field in {sorted(changes)}: {exc}"
        raise ValueError(msg) from exc
    _overrides[family] = spec
    lookup_model.cache_clear()
    return spec


def _unknown_spec(family: str) -> ModelSpec:
    version = [int(x) for x in family.split("-")[1:] if x.isdigit()]
    newer = version >= [4, 7]
    return ModelSpec(
        family=family,
        min_cache_tokens=UNKNOWN_MIN_CACHE_TOKENS,
        prices=None,
        token_ratio_prior=_NEW if newer else _OLD,
        known=False,
    )


@lru_cache(maxsize=256)
def lookup_model(model_id: str) -> ModelSpec:
    """The spec for a relay model id, matched by family; unknown ids get safe defaults.

    An unknown id (a model newer than our sources, or a relay alias we cannot parse) gets the
    low minimum of 512 tokens and no prices, with one warning per id. A retired model keeps its
    prices (old code and some relays still map it) and warns once.

    Args:
        model_id: the model id as the relay spells it.

    Returns:
        The model's spec (``spec.known`` is ``False`` for the safe default).
    """
    family = model_family(model_id)
    spec = None
    if family is not None:
        spec = _overrides.get(family) or MODEL_TABLE.get(family)
    if spec is None:
        if model_id not in _warned_unknown:
            _warned_unknown.add(model_id)
            warnings.warn(
                f"Model {model_id!r} is not in langchain-claude-relay's model table: assuming a "
                f"{UNKNOWN_MIN_CACHE_TOKENS}-token cache minimum (learned from usage) and no "
                "prices "
                "(cost_usd is None). Set its facts with "
                "langchain_claude_relay.models.register_model(...).",
                stacklevel=2,
            )
        return _unknown_spec(family or model_id)
    if spec.is_retired() and model_id not in _warned_retired:
        _warned_retired.add(model_id)
        warnings.warn(
            f"Model {model_id!r} ({spec.family}) was retired on {spec.retired_on}: it is still "
            f"priced for old code and relays that map it, but prefer a current model such as "
            f"{DEFAULT_MODEL!r}.",
            DeprecationWarning,
            stacklevel=2,
        )
    return spec


def price_table() -> Mapping[str, ModelSpec]:
    """The table in force, overrides included (read-only view for reports)."""
    return {**MODEL_TABLE, **_overrides}
