"""The Claude model table: minimum cacheable prefix, prices, cache multipliers, retirement.

The facts are data: ``models.json`` next to this module (shipped in the wheel), one row per
model family, each with its sources and the date it was read. They change month to month, so
they live in one file and ``claude-relay models`` prints the table in force. Relays rename models
(``claude-sonnet-4-5-20250929``, ``anthropic/claude-sonnet-4.5``, ``claude-sonnet-4-5-thinking``,
``us.anthropic.claude-sonnet-4-5-v1:0``), so ids are matched by *family*: tier (opus, sonnet,
haiku, fable, mythos) and version, ignoring provider prefixes, date stamps and variant suffixes.

>>> lookup_model("anthropic/claude-sonnet-4.5").family
'sonnet-4-5'
>>> lookup_model("claude-opus-5-5").prices.read_multiplier   # Opus 5.5 reads at 0.05x input
0.05
>>> lookup_model("us.anthropic.claude-fable-5-v1:0").min_cache_tokens   # 1,024 on Bedrock
1024

The table also carries each family's LangChain model profile (context window, max output,
capability flags), with its own sources: ``model_profile`` returns it as a ``ModelProfile``.

>>> model_profile("claude-opus-5-5")["max_output_tokens"]
128000

Prices are USD per million tokens. A model whose prices were not published in our sources has
``prices=None``: cost is reported as ``None`` rather than guessed. Ids that Anthropic lists but
whose prices we have not read (``claude-fable-5-2``, ``claude-mythos-5-2``) stay unknown.

Data residency is data too (``INFERENCE_GEO``, from the file's ``inference_geo`` block): a call
the API reports with ``usage.inference_geo == "us"`` is billed at 1.1x on every token kind, on
Claude Opus 4.6, Sonnet 4.6 and later models; ``ModelSpec.price_multiplier`` gives a call's factor.

>>> lookup_model("claude-sonnet-4-6").price_multiplier("us")
1.1
>>> lookup_model("claude-haiku-4-5").price_multiplier("us")   # 4.5 and earlier: standard rate
1.0
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from langchain_claude_relay._plumbing import warn_once

__all__ = [
    "DEFAULT_MODEL",
    "GEO_LABEL",
    "MAX_PRICE_MULTIPLIER",
    "is_price_multiplier",
    "InferenceGeoPricing",
    "INFERENCE_GEO",
    "UNKNOWN_MIN_CACHE_TOKENS",
    "TABLE_FILE",
    "LongContextTier",
    "ModelPrices",
    "PriceReport",
    "Source",
    "ModelSpec",
    "ListedModel",
    "FamilyProfile",
    "PROFILE_DEFAULTS",
    "PROFILE_KEYS",
    "MODEL_TABLE",
    "LISTED_UNPRICED",
    "SOURCES",
    "model_family",
    "cache_model_key",
    "model_platform",
    "lookup_model",
    "model_profile",
    "register_model",
    "use_price_report",
    "did_you_mean",
    "price_table",
    "iter_sources",
    "load_table",
    "load_profile_defaults",
    "load_inference_geo",
    "table_rows",
]

DEFAULT_MODEL = "claude-sonnet-5-5"
"""A current model with published prices and minimum (the relay article's list is retired)."""

UNKNOWN_MIN_CACHE_TOKENS = 512
"""Assumed minimum for unknown models: a marker on a too-short prefix only costs its slot."""

TABLE_FILE = "models.json"
"""The packaged data file (in this package's directory)."""

GEO_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,15}")
"""What an inference geo may look like (``"us"``, ``"global"``): a short lower-case label."""

MAX_PRICE_MULTIPLIER = 100.0
"""The largest per-call price multiplier taken as one (a larger one is a damaged value). The
smallest is 1: a data-residency premium is never a discount, and a value near 0 read back from
a damaged ledger row would turn a call's premium into minus infinity."""


def is_price_multiplier(value: Any) -> bool:
    """Whether ``value`` is a per-call price multiplier: a number in [1, 100].

    ``MAX_PRICE_MULTIPLIER`` is the top; a bool, NaN or infinity is no multiplier.

    >>> is_price_multiplier(1.1), is_price_multiplier(0.5), is_price_multiplier(True)
    (True, False, False)
    """
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return bool(number and 1 <= value <= MAX_PRICE_MULTIPLIER)


_OLD = 1.2  # cl100k undercounts Claude prose by roughly 15-28%
_NEW = 1.56  # Claude 4.7+ count ~30% more than older models for the same text


@dataclass(frozen=True)
class LongContextTier:
    """A price tier that applies to a whole call once its prompt passes a size.

    Attributes:
        above_prompt_tokens: the tier applies when the prompt (all input tokens: plain, cache
            reads and writes) exceeds this.
        input_multiplier: every input-side price (plain, reads, writes) is multiplied by this.
        output_multiplier: the output price is multiplied by this.
    """

    above_prompt_tokens: int
    input_multiplier: float
    output_multiplier: float


@dataclass(frozen=True)
class ModelPrices:
    """USD per million tokens, each kind stored explicitly (read multipliers differ by model).

    Attributes:
        input: plain input.
        output: output (reasoning included).
        cache_read: a cache read.
        cache_write_5m: a cache write with the 5-minute TTL.
        cache_write_1h: a cache write with the 1-hour TTL.
        long_context: the tier for long prompts, where one was published.
    """

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    long_context: LongContextTier | None = None

    @classmethod
    def standard(
        cls,
        input: float,
        output: float,
        read_multiplier: float = 0.1,
        *,
        write_5m_multiplier: float = 1.25,
        write_1h_multiplier: float = 2.0,
        long_context: LongContextTier | None = None,
    ) -> ModelPrices:
        """Prices from an input price and the cache multipliers (Anthropic's usual by default).

        Args:
            input: base input price, USD per million tokens.
            output: output price, USD per million tokens.
            read_multiplier: cache-read price as a fraction of ``input`` (0.1 on most models,
                0.05 on Opus 5.5, 0.025 on Fable 5.1 and Mythos 5.1).
            write_5m_multiplier: 5-minute write price as a multiple of ``input``.
            write_1h_multiplier: 1-hour write price as a multiple of ``input``.
            long_context: a long-prompt tier, if any.

        Returns:
            The full price record.

        >>> ModelPrices.standard(4, 20, 0.05).cache_read
        0.2
        """
        return cls(
            input=input,
            output=output,
            cache_read=round(input * read_multiplier, 9),
            cache_write_5m=round(input * write_5m_multiplier, 9),
            cache_write_1h=round(input * write_1h_multiplier, 9),
            long_context=long_context,
        )

    @property
    def read_multiplier(self) -> float:
        """The cache-read price as a fraction of the input price."""
        return round(self.cache_read / self.input, 6) if self.input else 0.0

    def charges(
        self,
        plain: int,
        read: int,
        write_5m: int,
        write_1h: int,
        output: int,
        *,
        multiplier: float = 1.0,
    ) -> tuple[float, float, float, float, float]:
        """USD for each token kind of one call, with the long-context tier applied.

        The one place a call is priced: ``cost.cost_breakdown`` and the emulator's billing both
        use it.

        Args:
            plain: plain input tokens.
            read: cache-read tokens.
            write_5m: 5-minute cache-write tokens.
            write_1h: 1-hour cache-write tokens.
            output: output tokens.
            multiplier: a factor on every price of the call, after the long-context tier (the
                data-residency multiplier, ``ModelSpec.price_multiplier``; 1 by default).

        Returns:
            ``(plain input, cache read, 5m writes, 1h writes, output)`` in USD.

        >>> ModelPrices.standard(2, 10).charges(1_000, 100_000, 0, 0, 500)
        (0.002, 0.02, 0.0, 0.0, 0.005)
        >>> ModelPrices.standard(3, 15).charges(1_000_000, 0, 0, 0, 0, multiplier=1.1)[0]
        3.3
        """
        prices = self.for_prompt(plain + read + write_5m + write_1h, multiplier)
        return (
            plain * prices.input / 1e6,
            read * prices.cache_read / 1e6,
            write_5m * prices.cache_write_5m / 1e6,
            write_1h * prices.cache_write_1h / 1e6,
            output * prices.output / 1e6,
        )

    def scaled(self, multiplier: float, output_multiplier: float | None = None) -> ModelPrices:
        """These prices times ``multiplier`` (output: ``output_multiplier``, else the same).

        The long-context tier is kept.

        >>> ModelPrices.standard(5, 25).scaled(1.1).cache_write_1h
        11.0
        """
        k_out = multiplier if output_multiplier is None else output_multiplier
        return replace(
            self,
            input=round(self.input * multiplier, 9),
            output=round(self.output * k_out, 9),
            cache_read=round(self.cache_read * multiplier, 9),
            cache_write_5m=round(self.cache_write_5m * multiplier, 9),
            cache_write_1h=round(self.cache_write_1h * multiplier, 9),
        )

    def for_prompt(self, prompt_tokens: int, multiplier: float = 1.0) -> ModelPrices:
        """The prices that apply to a call whose prompt has ``prompt_tokens`` tokens in all.

        The long-context tier when the prompt passes it, then ``multiplier`` on every kind
        (the call's data-residency multiplier, ``ModelSpec.price_multiplier``).

        >>> tier = LongContextTier(100_000, 5, 5)
        >>> ModelPrices.standard(0.1, 0.5, long_context=tier).for_prompt(100_001).input
        0.5
        """
        prices = self
        tier = self.long_context
        if tier is not None and prompt_tokens > tier.above_prompt_tokens:
            k_in, k_out = tier.input_multiplier, tier.output_multiplier
            prices = replace(self.scaled(k_in, k_out), long_context=None)
        return prices if multiplier == 1.0 else prices.scaled(multiplier)


@dataclass(frozen=True)
class Source:
    """Where a fact was read, and when."""

    key: str
    title: str
    read_on: _dt.date


@dataclass(frozen=True)
class PriceReport:
    """Another published reading of a model's prices, selectable with ``use_price_report``.

    Attributes:
        name: its key (e.g. ``"reads-0.05x"``).
        prices: the prices it reports.
        sources: keys of ``SOURCES``.
        read_on: when it was read.
        note: what it is and how it differs from the row's own prices.
    """

    name: str
    prices: ModelPrices
    sources: tuple[str, ...]
    read_on: _dt.date
    note: str = ""


PROFILE_TOKEN_KEYS = ("max_input_tokens", "max_output_tokens")
"""``ModelProfile`` keys that hold a token count (a positive int)."""

PROFILE_FLAG_KEYS = (
    "text_inputs",
    "image_inputs",
    "image_url_inputs",
    "pdf_inputs",
    "audio_inputs",
    "video_inputs",
    "image_tool_message",
    "pdf_tool_message",
    "text_outputs",
    "image_outputs",
    "audio_outputs",
    "video_outputs",
    "reasoning_output",
    "tool_calling",
    "tool_choice",
    "tool_call_streaming",
    "structured_output",
    "temperature",
    "attachment",
)
"""``ModelProfile`` keys that hold a yes/no capability (a bool)."""

PROFILE_KEYS = frozenset(PROFILE_TOKEN_KEYS + PROFILE_FLAG_KEYS)
"""The ``ModelProfile`` keys ``models.json`` may set (all declared by langchain-core's
``ModelProfile``; a key it does not declare would make LangChain warn)."""

_PROFILE_BLOCK_KEYS = frozenset({"values", "sources", "read_on", "note"})


def _profile_values(raw: object, where: str) -> tuple[tuple[str, Any], ...]:
    """Check a profile's values (known keys, right types) and freeze them, sorted by key."""
    if not isinstance(raw, Mapping):
        msg = f"{where}: profile values must be an object of ModelProfile keys, got {raw!r}"
        raise ValueError(msg)
    unknown = sorted(set(raw) - PROFILE_KEYS)
    if unknown:
        msg = f"{where}: unknown profile key(s) {unknown}: choose from {sorted(PROFILE_KEYS)}"
        raise ValueError(msg)
    for key, value in raw.items():
        if value is None:  # unknown for this family: drops a default
            continue
        if key in PROFILE_TOKEN_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{where}: {key} must be a positive token count, got {value!r}"
                raise ValueError(msg)
        elif not isinstance(value, bool):
            msg = f"{where}: {key} must be true or false, got {value!r}"
            raise ValueError(msg)
    return tuple(sorted(raw.items()))


@dataclass(frozen=True)
class FamilyProfile:
    """A family's LangChain model-profile facts (``ModelProfile`` keys), with their sources.

    Only what this family's sources say; ``model_profile`` lays it over ``PROFILE_DEFAULTS``
    (the flags every current Claude has). A key left out is unknown, not ``False``; a key set
    to ``None`` is unknown for this family even where the defaults have it (sources disagree).

    Attributes:
        values: ``(ModelProfile key, value)`` pairs, e.g. ``("max_input_tokens", 1000000)``;
            a ``None`` value withdraws that key's default.
        sources: keys of ``SOURCES`` the values were read from.
        read_on: when they were read.
        note: anything a reader should know (a beta header, a figure left out and why).
    """

    values: tuple[tuple[str, Any], ...] = ()
    sources: tuple[str, ...] = ()
    read_on: _dt.date | None = None
    note: str = ""

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        sources: Sequence[str] = (),
        read_on: _dt.date | None = None,
        note: str = "",
    ) -> FamilyProfile:
        """A checked profile from ``ModelProfile`` keys (for ``register_model(profile=...)``).

        >>> FamilyProfile.from_mapping({"max_input_tokens": 1_000_000}).as_dict()
        {'max_input_tokens': 1000000}

        Raises:
            ValueError: for a key ``models.json`` does not carry or a value of the wrong type.
        """
        return cls(_profile_values(values, "profile"), tuple(sources), read_on, note)

    def as_dict(self) -> dict[str, Any]:
        """The values as a fresh dict."""
        return dict(self.values)


@dataclass(frozen=True)
class ModelSpec:
    """What the planner, the limiter and the cost accounting need to know about one model family.

    Attributes:
        family: canonical family key, e.g. ``"sonnet-5-5"``.
        min_cache_tokens: shortest cacheable prefix; shorter prefixes are silently not cached.
        prices: USD per million tokens, or ``None`` when not published in our sources.
        reads_count_toward_itpm: whether cache reads count toward input-tokens-per-minute.
        token_ratio_prior: expected Claude tokens per ``cl100k_base`` token before calibration.
        retired_on: end-of-life date, if announced.
        known: ``False`` for an id not in the table (safe defaults were used).
        current: part of Anthropic's current lineup.
        platform_min_cache_tokens: ``(platform, minimum)`` pairs where a platform differs
            (Bedrock: 1,024 for Fable 5 and Mythos 5).
        refuses_automatic_caching_on: platforms that refuse a top-level ``cache_control``
            with this model (the legacy Bedrock integration, Opus 4.6 and earlier).
        thinking_types: the ``thinking.type`` values Claude takes for this model (empty: not
            in our sources, nothing is refused): ``enabled`` (a ``budget_tokens``) is a 400 on
            Claude 4.7 and later, ``adaptive`` on 4.5 and earlier.
        sampling: which sampling settings the model takes: ``"none"`` (``temperature``,
            ``top_p`` and ``top_k`` are a 400: Claude 4.7 and later), ``"temperature_or_top_p"``
            (not both: Opus 4.1 to the 4.6 models), ``""`` (no rule in our sources).
        takes_prefill: ``False`` when a request ending with an assistant turn (a prefill) is a
            400 (Claude 4.6 and later); ``None``: no rule in our sources.
        takes_forced_tool: ``False`` when a ``tool_choice`` that forces a tool (``any`` or a
            named tool) is a 400 (Opus 5.5, Sonnet 5.5, Fable 5.1); ``None``: no rule in our
            sources.
        sources: keys of ``SOURCES`` the row was read from.
        read_on: when the row was read.
        note: anything a reader of the table should know.
        price_reports: other published readings of the prices (see ``use_price_report``).
        profile: the family's LangChain model-profile facts (context window, max output,
            capability flags that differ from ``PROFILE_DEFAULTS``); ``None`` for an id the
            table does not know. ``model_profile`` returns them as a ``ModelProfile``.
        inference_geo_multipliers: ``(geo, multiplier)`` pairs: what a call the API reports
            with ``usage.inference_geo == geo`` pays on every price (``INFERENCE_GEO``: 1.1 for
            ``"us"`` on Opus 4.6, Sonnet 4.6 and later); empty where the geo does not change
            the price (4.5 and earlier models).
    """

    family: str
    min_cache_tokens: int
    prices: ModelPrices | None
    reads_count_toward_itpm: bool = False
    token_ratio_prior: float = _OLD
    retired_on: _dt.date | None = None
    known: bool = True
    current: bool = False
    platform_min_cache_tokens: tuple[tuple[str, int], ...] = ()
    refuses_automatic_caching_on: tuple[str, ...] = ()
    thinking_types: tuple[str, ...] = ()
    sampling: str = ""
    takes_prefill: bool | None = None
    takes_forced_tool: bool | None = None
    sources: tuple[str, ...] = ()
    read_on: _dt.date | None = None
    note: str = ""
    price_reports: tuple[PriceReport, ...] = field(default=(), compare=False)
    profile: FamilyProfile | None = None
    inference_geo_multipliers: tuple[tuple[str, float], ...] = ()

    def price_multiplier(self, inference_geo: str | None) -> float:
        """The factor on every price of a call run in ``inference_geo`` (1 when unknown).

        >>> lookup_model("claude-opus-5-5").price_multiplier("us")
        1.1
        >>> lookup_model("claude-opus-5-5").price_multiplier(None)
        1.0
        """
        if inference_geo is None:
            return 1.0
        return dict(self.inference_geo_multipliers).get(inference_geo, 1.0)

    def is_retired(self, today: _dt.date | None = None) -> bool:
        """Whether the model has reached its announced end of life on ``today``."""
        if self.retired_on is None:
            return False
        return (today or _dt.date.today()) >= self.retired_on

    def min_cache_tokens_on(self, platform: str | None) -> int:
        """The minimum on a platform (``"bedrock"``, ...), or the general one."""
        return dict(self.platform_min_cache_tokens).get(platform or "", self.min_cache_tokens)

    def accepts_automatic_caching_on(self, platform: str | None) -> bool:
        """Whether a top-level ``cache_control`` is accepted with this model on a platform."""
        return platform not in self.refuses_automatic_caching_on


@dataclass(frozen=True)
class InferenceGeoPricing:
    """The data-residency price multipliers (``models.json``'s ``inference_geo`` block).

    Attributes:
        multipliers: ``(geo, multiplier)`` pairs as the sources state them (``"global"`` 1,
            ``"us"`` 1.1), applied to every token kind of a call.
        families: the families they apply to (Opus 4.6, Sonnet 4.6 and later); every other
            family of the table is billed at the standard rate whatever its geo.
        unlisted_from_version: a family the table has no row for (a newer model given prices
            with ``register_model``) takes the multipliers from this version on (``(4, 6)``:
            "Claude Opus 4.6 and all subsequent models"); ``None``: never.
        sources: keys of ``SOURCES``.
        read_on: when they were read.
        note: what the sources say, in a sentence or two.
    """

    multipliers: tuple[tuple[str, float], ...] = ()
    families: tuple[str, ...] = ()
    unlisted_from_version: tuple[int, ...] | None = None
    sources: tuple[str, ...] = ()
    read_on: _dt.date | None = None
    note: str = ""

    @property
    def geos(self) -> frozenset[str]:
        """The geos the table knows (what ``usage.normalize_usage`` keeps)."""
        return frozenset(geo for geo, _ in self.multipliers)

    def for_family(self, family: str, *, listed: bool) -> tuple[tuple[str, float], ...]:
        """The multipliers a family pays (``listed``: the table has a row for it)."""
        if family in self.families:
            return self.multipliers
        if listed or self.unlisted_from_version is None:
            return ()
        version = tuple(int(x) for x in family.split("-")[1:] if x.isdigit())
        return self.multipliers if version and version >= self.unlisted_from_version else ()


@dataclass(frozen=True)
class ListedModel:
    """An id Anthropic lists whose prices and minimum are not in our sources (kept unknown).

    ``profile`` holds what a source does say about it (context window, max output), if any.
    """

    family: str
    sources: tuple[str, ...]
    read_on: _dt.date
    note: str = ""
    profile: FamilyProfile | None = None


# ------------------------------------------------------------------------------ the data


def _date(raw: Any, where: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(str(raw))
    except ValueError:
        msg = f"{TABLE_FILE}: {where}: {raw!r} is not a date (YYYY-MM-DD)"
        raise ValueError(msg) from None


def _number(row: Mapping[str, Any], key: str, defaults: Mapping[str, Any]) -> float:
    value = row.get(key, defaults.get(key))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        msg = f"{TABLE_FILE}: {row.get('family')}: {key} must be a number >= 0, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _prices(row: Mapping[str, Any], defaults: Mapping[str, Any]) -> ModelPrices | None:
    if "input" not in row:
        return None
    tier = row.get("long_context")
    return ModelPrices.standard(
        _number(row, "input", defaults),
        _number(row, "output", defaults),
        _number(row, "read_multiplier", defaults),
        write_5m_multiplier=_number(row, "write_5m_multiplier", defaults),
        write_1h_multiplier=_number(row, "write_1h_multiplier", defaults),
        long_context=LongContextTier(
            int(tier["above_prompt_tokens"]),
            float(tier["input_multiplier"]),
            float(tier["output_multiplier"]),
        )
        if tier
        else None,
    )


def _checked_sources(
    keys: Sequence[str], family: str, known: Mapping[str, Source]
) -> tuple[str, ...]:
    missing = [k for k in keys if k not in known]
    if not keys or missing:
        msg = f"{TABLE_FILE}: {family}: every row needs sources from 'sources' (unknown: {missing})"
        raise ValueError(msg)
    return tuple(keys)


def _family_profile(raw: object, where: str, known: Mapping[str, Source]) -> FamilyProfile | None:
    """A row's ``profile`` block (``values``, ``sources``, ``read_on``, ``note``), checked."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) - _PROFILE_BLOCK_KEYS:
        msg = (
            f"{TABLE_FILE}: {where}: a profile is an object with keys "
            f"{sorted(_PROFILE_BLOCK_KEYS)}, got {raw!r}"
        )
        raise ValueError(msg)
    return FamilyProfile(
        values=_profile_values(raw.get("values", {}), f"{TABLE_FILE}: {where}"),
        sources=_checked_sources(raw.get("sources", ()), f"{where}.profile", known),
        read_on=_date(raw.get("read_on"), f"{where}.profile"),
        note=str(raw.get("note", "")),
    )


def _geo_pricing(data: Mapping[str, Any], known: Mapping[str, Source]) -> InferenceGeoPricing:
    """The file's ``inference_geo`` block, checked (an empty one when the file has none)."""
    raw = data.get("inference_geo")
    if raw is None:
        return InferenceGeoPricing()
    where = f"{TABLE_FILE}: inference_geo"
    multipliers = raw.get("multipliers") if isinstance(raw, Mapping) else None
    if not isinstance(multipliers, Mapping) or not multipliers:
        msg = f"{where}: 'multipliers' must be an object of geo -> multiplier, got {multipliers!r}"
        raise ValueError(msg)
    pairs: list[tuple[str, float]] = []
    for geo, value in multipliers.items():
        if not GEO_LABEL.fullmatch(str(geo)) or not is_price_multiplier(value):
            msg = f"{where}: {geo!r}: {value!r} is not a geo label with a multiplier of at least 1"
            raise ValueError(msg)
        pairs.append((str(geo), float(value)))
    families = raw.get("families", ())
    if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
        msg = f"{where}: 'families' must be a list of family keys, got {families!r}"
        raise ValueError(msg)
    since = raw.get("unlisted_from_version")
    if since is not None and (
        not isinstance(since, list)
        or not since
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in since)
    ):
        msg = f"{where}: 'unlisted_from_version' must be a list of ints like [4, 6], got {since!r}"
        raise ValueError(msg)
    return InferenceGeoPricing(
        multipliers=tuple(sorted(pairs)),
        families=tuple(families),
        unlisted_from_version=None if since is None else tuple(since),
        sources=_checked_sources(raw.get("sources", ()), "inference_geo", known),
        read_on=_date(raw.get("read_on"), "inference_geo"),
        note=str(raw.get("note", "")),
    )


def _spec(
    row: Mapping[str, Any],
    defaults: Mapping[str, Any],
    known: Mapping[str, Source],
    geo: InferenceGeoPricing | None = None,
) -> ModelSpec:
    family = str(row["family"])
    base = _prices(row, defaults)
    reports = tuple(
        PriceReport(
            name=str(report["name"]),
            prices=_prices({**row, **report}, defaults) or base,  # type: ignore[arg-type]
            sources=_checked_sources(report.get("sources", ()), family, known),
            read_on=_date(report["read_on"], f"{family}.price_reports"),
            note=str(report.get("note", "")),
        )
        for report in row.get("price_reports", ())
    )
    return ModelSpec(
        family=family,
        min_cache_tokens=int(row["min_cache_tokens"]),
        prices=base,
        reads_count_toward_itpm=bool(row.get("reads_count_toward_itpm", False)),
        token_ratio_prior=_number(row, "token_ratio_prior", defaults),
        retired_on=_date(row["retired_on"], family) if "retired_on" in row else None,
        current=bool(row.get("current", False)),
        platform_min_cache_tokens=tuple(
            (str(k), int(v)) for k, v in row.get("platform_min_cache_tokens", {}).items()
        ),
        refuses_automatic_caching_on=tuple(row.get("refuses_automatic_caching_on", ())),
        thinking_types=tuple(str(t) for t in row.get("thinking_types", ())),
        sampling=_sampling_rule(row.get("sampling", ""), family),
        takes_prefill=bool(row["prefill"]) if "prefill" in row else None,
        takes_forced_tool=(
            bool(row["forced_tool_choice"]) if "forced_tool_choice" in row else None
        ),
        sources=_checked_sources(row.get("sources", ()), family, known),
        read_on=_date(row["read_on"], family),
        note=str(row.get("note", "")),
        price_reports=reports,
        profile=_family_profile(row.get("profile"), family, known),
        inference_geo_multipliers=(geo or InferenceGeoPricing()).for_family(family, listed=True),
    )


_SAMPLING_RULES = ("", "none", "temperature_or_top_p")


def _sampling_rule(raw: Any, family: str) -> str:
    if raw not in _SAMPLING_RULES:
        msg = f"{TABLE_FILE}: {family}: sampling {raw!r} is not one of {_SAMPLING_RULES[1:]}"
        raise ValueError(msg)
    return str(raw)


def load_table(
    text: str,
) -> tuple[dict[str, Source], dict[str, ModelSpec], dict[str, ListedModel]]:
    """Parse the model table's JSON (``models.json``'s format).

    Args:
        text: the JSON text.

    Returns:
        ``(sources, families, listed but unpriced)``, each keyed by its name.

    Raises:
        ValueError: if a row lacks a field, names an unknown source or has a bad value.
    """
    return _parsed_table(text)[:3]


def _parsed_table(
    text: str,
) -> tuple[
    dict[str, Source],
    dict[str, ModelSpec],
    dict[str, ListedModel],
    FamilyProfile,
    InferenceGeoPricing,
]:
    """Every block of the model table, checked against the others.

    ``load_table``'s three, then the profile defaults and the data-residency multipliers.
    """
    data = json.loads(text)
    defaults = data.get("defaults", {})
    sources = {
        key: Source(key, str(s["title"]), _date(s["read_on"], f"sources.{key}"))
        for key, s in data["sources"].items()
    }
    try:
        geo = _geo_pricing(data, sources)
        table = {row["family"]: _spec(row, defaults, sources, geo) for row in data["families"]}
        listed = {
            row["family"]: ListedModel(
                row["family"],
                _checked_sources(row.get("sources", ()), row["family"], sources),
                _date(row["read_on"], row["family"]),
                str(row.get("note", "")),
                _family_profile(row.get("profile"), row["family"], sources),
            )
            for row in data.get("listed_unpriced", ())
        }
        profile_defaults = (
            _family_profile(data.get("profile_defaults"), "profile_defaults", sources)
            or FamilyProfile()
        )
    except KeyError as exc:
        msg = f"{TABLE_FILE}: a row lacks the field {exc}"
        raise ValueError(msg) from None
    overlap = set(table) & set(listed)
    if overlap:
        msg = f"{TABLE_FILE}: {sorted(overlap)} are both priced and listed as unpriced"
        raise ValueError(msg)
    stray = sorted(set(geo.families) - set(table))
    if stray:
        msg = f"{TABLE_FILE}: inference_geo names families the table does not price: {stray}"
        raise ValueError(msg)
    return sources, table, listed, profile_defaults, geo


def load_profile_defaults(text: str) -> FamilyProfile:
    """Parse the profile flags every current Claude has (``models.json``'s ``profile_defaults``).

    Raises:
        ValueError: if the block names an unknown key or source or has a bad value (or the
            rest of the table does: it is read whole, as ``load_table`` reads it).
    """
    return _parsed_table(text)[3]


def load_inference_geo(text: str) -> InferenceGeoPricing:
    """Parse the data-residency multipliers (``models.json``'s ``inference_geo`` block).

    Raises:
        ValueError: if the block has a bad geo, multiplier, family list or source (or the rest
            of the table does: it is read whole, as ``load_table`` reads it).
    """
    return _parsed_table(text)[4]


SOURCES: dict[str, Source]
MODEL_TABLE: dict[str, ModelSpec]
"""family -> spec, as read from ``models.json``."""
LISTED_UNPRICED: dict[str, ListedModel]
"""Families Anthropic lists but whose prices and minimum we have not read: kept unknown."""
PROFILE_DEFAULTS: FamilyProfile
"""The ``ModelProfile`` flags every current Claude has (a family's own profile overrides them)."""
INFERENCE_GEO: InferenceGeoPricing
"""The data-residency multipliers in force (``"us"``: 1.1x on Opus 4.6, Sonnet 4.6 and later)."""
_TABLE_TEXT = resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8")
SOURCES, MODEL_TABLE, LISTED_UNPRICED, PROFILE_DEFAULTS, INFERENCE_GEO = _parsed_table(_TABLE_TEXT)

_TIERS = ("opus", "sonnet", "haiku", "fable", "mythos")
_overrides: dict[str, ModelSpec] = {}


# ------------------------------------------------------------------------------ matching


def _tokens(model_id: str) -> list[str]:
    name = model_id.strip().lower().rsplit("/", 1)[-1]
    name = name.rsplit(":", 1)[0] if name.startswith("arn:") else name
    name = name.split("@", 1)[0]
    name = re.sub(r"-v\d+(:\d+)?$", "", name)
    name = name.replace(".", "-").replace("_", "-")
    return [t for t in re.split(r"[^a-z0-9]+", name) if t]


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
    >>> model_family("claude-mythos-preview")
    'mythos-preview'
    >>> model_family("gpt-4o") is None
    True
    """
    tokens = _tokens(model_id)
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
    elif tokens[pos + 1 : pos + 2] == ["preview"]:
        return f"{tier}-preview"
    else:  # old order: claude-3-5-sonnet
        version = [t for t in tokens[:pos] if t.isdigit() and len(t) <= 2]
    if not version:
        return None
    if len(version) > 1 and version[1] == "0":  # claude-opus-4-0 is Opus 4
        version = version[:1]
    return "-".join([tier, *version[:2]])


@lru_cache(maxsize=1024)
def cache_model_key(model: str) -> str:
    """The model as Claude's cache tells models apart (one cache per model).

    That is the model's family (``lookup_model(model).family``, computed here without its
    warnings): relays' spellings of one model (an alias, its dated id, ``anthropic/...``)
    share one cache, two models (two versions of a tier included) never do. An id that names
    no Claude family is its own key, as ``lookup_model`` keys its unknown spec. The planner's
    prefix hashes and the emulator's cache keys both start from it.

    >>> cache_model_key("claude-opus-4-1-20250805"), cache_model_key("anthropic/claude-opus-4.1")
    ('opus-4-1', 'opus-4-1')
    >>> cache_model_key("claude-opus-4")
    'opus-4'
    """
    return model_family(model) or model


def model_platform(model_id: str) -> str | None:
    """The cloud platform an id's spelling belongs to, when it says so.

    Bedrock ids are ``anthropic.claude-...`` (with an optional region prefix such as ``us.`` or
    ``global.``), Bedrock ARNs, and LiteLLM's ``bedrock/...`` routes to them (a relay in front
    of LiteLLM passes them through; LiteLLM sends the rest to Bedrock); anything else (relay
    ids, ``anthropic/claude-...``, Vertex's ``claude-...@date``, which shares the Claude API's
    minimums) gives ``None``.

    >>> model_platform("global.anthropic.claude-opus-5-5-v1:0"), model_platform("claude-opus-5-5")
    ('bedrock', None)
    >>> model_platform("bedrock/converse/us.anthropic.claude-fable-5-v1:0")
    'bedrock'
    """
    name = model_id.strip().lower()
    if name.startswith(("arn:aws:bedrock", "bedrock/")) or re.match(
        r"^([a-z]+\.)?anthropic\.claude", name
    ):
        return "bedrock"
    return None


def did_you_mean(model_id: str) -> str | None:
    """The closest known model id to a misspelt one (``claude-sonet-4-6`` -> ``claude-sonnet-4-6``).

    >>> did_you_mean("claude-sonet-4-6")
    'claude-sonnet-4-6'
    >>> did_you_mean("gpt-4o") is None
    True
    """
    words = [t for t in _tokens(model_id) if t not in ("claude", "anthropic")]
    guess = "-".join(words)
    families = [*MODEL_TABLE, *LISTED_UNPRICED, *_overrides]
    close = difflib.get_close_matches(guess, families, n=1, cutoff=0.8)
    return f"claude-{close[0]}" if close and close[0] != guess else None


# ------------------------------------------------------------------------------ lookup


_SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "min_cache_tokens": (int,),
    "reads_count_toward_itpm": (bool,),
    "token_ratio_prior": (int, float),
    "current": (bool,),
    "note": (str,),
}


def _check_changes(changes: Mapping[str, object]) -> None:
    names = {f.name for f in fields(ModelSpec)} - {"family", "known"}
    unknown = sorted(set(changes) - names)
    if unknown:
        msg = f"unknown ModelSpec field(s) {unknown}: choose from {sorted(names)}"
        raise ValueError(msg)
    prices = changes.get("prices")
    if "prices" in changes and prices is not None and not isinstance(prices, ModelPrices):
        msg = (
            f"prices must be a ModelPrices (or None for unpriced), got {type(prices).__name__}: "
            "build one with ModelPrices.standard(input, output, read_multiplier) or "
            "ModelPrices(input=..., output=..., cache_read=..., cache_write_5m=..., "
            "cache_write_1h=...), in USD per million tokens"
        )
        raise TypeError(msg)
    for name, kinds in _SPEC_TYPES.items():
        value = changes.get(name)
        if name in changes and (
            not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))
        ):
            msg = f"{name} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}"
            raise TypeError(msg)
    if "min_cache_tokens" in changes and int(changes["min_cache_tokens"]) < 1:  # type: ignore[call-overload]
        msg = (
            f"min_cache_tokens must be a positive token count, got {changes['min_cache_tokens']!r}"
        )
        raise ValueError(msg)
    profile = changes.get("profile")
    if "profile" in changes and profile is not None and not isinstance(profile, FamilyProfile):
        msg = (
            f"profile must be a FamilyProfile (or None), got {type(profile).__name__}: build one "
            "with FamilyProfile.from_mapping({'max_input_tokens': ..., 'max_output_tokens': ...})"
        )
        raise TypeError(msg)
    if "inference_geo_multipliers" in changes:
        _geo_pairs(changes["inference_geo_multipliers"])
    retired = changes.get("retired_on")
    if "retired_on" in changes and retired is not None and not isinstance(retired, _dt.date):
        msg = f"retired_on must be a datetime.date or None, got {retired!r}"
        raise TypeError(msg)


def _geo_pairs(value: Any) -> tuple[tuple[str, float], ...]:
    """``inference_geo_multipliers`` as ``register_model`` takes it (a mapping or pairs), checked.

    Raises:
        TypeError: for anything but geo labels mapped to multipliers in [1, 100].
    """
    msg = (
        "inference_geo_multipliers must map geo labels (like 'us') to multipliers in "
        f"[1, {MAX_PRICE_MULTIPLIER:g}], e.g. {{'us': 1.1}}"
    )
    try:
        items = list(value.items() if isinstance(value, Mapping) else value)
        pairs = [(geo, m) for geo, m in items]
    except (TypeError, ValueError):
        raise TypeError(msg) from None
    for geo, m in pairs:
        if not (isinstance(geo, str) and GEO_LABEL.fullmatch(geo)) or not is_price_multiplier(m):
            raise TypeError(msg)
    return tuple(sorted((geo, float(m)) for geo, m in pairs))


def register_model(model_id_or_family: str, **changes: object) -> ModelSpec:
    """Override or add a model's facts (for example a new model's minimum or prices).

    ``register_model("claude-opus-9", min_cache_tokens=1024,
    prices=ModelPrices.standard(5, 25, read_multiplier=0.05))`` sets a new model's facts. A plain
    dict is refused:

    >>> register_model("claude-opus-9", prices={"input": 5})
    Traceback (most recent call last):
    ...
    TypeError: prices must be a ModelPrices (or None for unpriced), got dict: ...

    Args:
        model_id_or_family: a relay id or a family key such as ``"opus-5-5"``.
        **changes: ``ModelSpec`` fields to set (``min_cache_tokens``, ``prices``, ...).
            ``prices`` must be a ``ModelPrices``: a plain dict is refused, because its keys
            (per million? which multiplier?) cannot be checked.

    Returns:
        The spec now in force for that family.

    Raises:
        ValueError: if the id names no Claude family or a field is unknown.
        TypeError: if a field has the wrong type (``prices`` that is not a ``ModelPrices``).
    """
    family = model_family(model_id_or_family) or model_id_or_family
    if not re.fullmatch(r"[a-z]+-(\d+(-\d+)?|preview)", family):
        msg = f"cannot register {model_id_or_family!r}: it names no Claude family like 'opus-5-5'"
        raise ValueError(msg)
    _check_changes(changes)
    if "inference_geo_multipliers" in changes:
        changes["inference_geo_multipliers"] = _geo_pairs(changes["inference_geo_multipliers"])
    base = _overrides.get(family) or MODEL_TABLE.get(family) or _unknown_spec(family)
    spec = replace(base, family=family, known=True, **changes)  # type: ignore[arg-type]
    _overrides[family] = spec
    lookup_model.cache_clear()
    return spec


def use_price_report(model_id_or_family: str, report: str) -> ModelSpec:
    """Price a model by another published reading (e.g. Sonnet 5.5 reads at 0.05x).

    Args:
        model_id_or_family: the model.
        report: the report's name (``claude-relay models`` lists them).

    Returns:
        The spec now in force.

    Raises:
        ValueError: if the model has no report of that name.
    """
    family = model_family(model_id_or_family) or model_id_or_family
    spec = MODEL_TABLE.get(family)
    reports = {r.name: r for r in spec.price_reports} if spec is not None else {}
    if report not in reports:
        msg = f"{model_id_or_family!r} has no price report {report!r}; it has {sorted(reports)}"
        raise ValueError(msg)
    return register_model(family, prices=reports[report].prices)


def _unknown_spec(family: str) -> ModelSpec:
    version = [int(x) for x in family.split("-")[1:] if x.isdigit()]
    newer = version >= [4, 7]
    return ModelSpec(
        family=family,
        min_cache_tokens=UNKNOWN_MIN_CACHE_TOKENS,
        prices=None,
        token_ratio_prior=_NEW if newer else _OLD,
        known=False,
        inference_geo_multipliers=INFERENCE_GEO.for_family(family, listed=False),
    )


def _warn_unknown(model_id: str, family: str | None) -> None:
    listed = LISTED_UNPRICED.get(family or "")
    if listed is not None:
        why = (
            f"Model {model_id!r} is listed by Anthropic ({', '.join(listed.sources)}, read "
            f"{listed.read_on}) but its prices and cache minimum are not in "
            "langchain-claude-relay's sources. "
        )
    else:
        suggestion = did_you_mean(model_id)
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        why = f"Model {model_id!r} is not in langchain-claude-relay's model table.{hint} "
    warn_once(
        ("unknown_model", model_id),
        why + f"Assuming a {UNKNOWN_MIN_CACHE_TOKENS}-token cache minimum (learned from usage) "
        "and no prices (cost_usd is None). Set its facts with "
        "langchain_claude_relay.models.register_model(...).",
    )


@lru_cache(maxsize=256)
def lookup_model(model_id: str) -> ModelSpec:
    """The spec for a relay model id, matched by family; unknown ids get safe defaults.

    An unknown id (a model newer than our sources, a listed-but-unpriced one, or a relay alias
    we cannot parse) gets the low minimum of 512 tokens and no prices, with one warning per id
    (with a "did you mean" for a near miss). A retired model keeps its prices (old code and some
    relays still map it) and warns once. A Bedrock id gets Bedrock's minimum where it differs.

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
        _warn_unknown(model_id, family)
        return _unknown_spec(family or model_id)
    if spec.is_retired():
        warn_once(
            ("retired_model", model_id),
            f"Model {model_id!r} ({spec.family}) was retired on {spec.retired_on}: it is still "
            f"priced for old code and relays that map it, but prefer a current model such as "
            f"{DEFAULT_MODEL!r}.",
            DeprecationWarning,
        )
    minimum = spec.min_cache_tokens_on(model_platform(model_id))
    return spec if minimum == spec.min_cache_tokens else replace(spec, min_cache_tokens=minimum)


_TEMPERATURE_BY_SAMPLING = {"none": False, "temperature_or_top_p": True}


def model_profile(model: str) -> dict[str, Any] | None:
    """The LangChain ``ModelProfile`` for a relay model id, from the table; ``None`` if unknown.

    What ``ChatClaudeRelay._resolve_model_profile`` returns. Matched by family like
    ``lookup_model`` (``anthropic/claude-sonnet-4.5``, ``claude-opus-4-1-20250805`` and Bedrock
    ids included), overrides from ``register_model`` included, but pure: no warning, no I/O,
    and a fresh dict each call (the caller may change it).

    The profile is ``PROFILE_DEFAULTS`` (the flags every current Claude has), then
    ``temperature`` where the family's sampling rule says (``False`` when ``temperature`` is a
    400, Claude 4.7 and later; ``True`` for the temperature-or-top_p models) and ``tool_choice``
    where its forced-tool rule does (``takes_forced_tool``), then the
    family's own facts (``max_input_tokens``, ``max_output_tokens``, flags that differ). A fact
    no source gave is left out, never guessed. An id Anthropic lists without prices
    (``claude-fable-5-2``) gets the defaults and what its sources say.

    Args:
        model: the model id as the relay spells it.

    Returns:
        A ``ModelProfile``-shaped dict, or ``None`` for an id that names no family the table
        (or ``register_model``, or the listed-but-unpriced ids) knows.

    >>> model_profile("claude-sonnet-5-5")["max_input_tokens"]
    1000000
    >>> model_profile("anthropic/claude-haiku-4.5")["max_output_tokens"]
    64000
    >>> model_profile("gpt-4o") is None
    True
    """
    family = model_family(model)
    if family is None:
        return None
    spec = _overrides.get(family) or MODEL_TABLE.get(family)
    listed = LISTED_UNPRICED.get(family)
    if spec is None and listed is None:
        return None
    profile = PROFILE_DEFAULTS.as_dict()
    if spec is not None and spec.sampling in _TEMPERATURE_BY_SAMPLING:
        profile["temperature"] = _TEMPERATURE_BY_SAMPLING[spec.sampling]
    if spec is not None and spec.takes_forced_tool is not None:
        profile["tool_choice"] = spec.takes_forced_tool
    own = spec.profile if spec is not None else None
    if own is None and listed is not None:
        own = listed.profile
    if own is not None:
        profile.update(own.as_dict())
    return {key: value for key, value in profile.items() if value is not None}


def price_table() -> Mapping[str, ModelSpec]:
    """The table in force, overrides included (read-only view for reports)."""
    return {**MODEL_TABLE, **_overrides}


def iter_sources(spec: ModelSpec | ListedModel) -> Iterator[Source]:
    """The sources a row names."""
    return (SOURCES[key] for key in spec.sources if key in SOURCES)


def _prices_row(prices: ModelPrices | None) -> dict[str, Any]:
    if prices is None:
        keys = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
        return {**dict.fromkeys(keys), "read_multiplier": None, "long_context": None}
    tier = prices.long_context
    return {
        "input": prices.input,
        "output": prices.output,
        "cache_read": prices.cache_read,
        "cache_write_5m": prices.cache_write_5m,
        "cache_write_1h": prices.cache_write_1h,
        "read_multiplier": prices.read_multiplier,
        "long_context": None
        if tier is None
        else {
            "above_prompt_tokens": tier.above_prompt_tokens,
            "input_multiplier": tier.input_multiplier,
            "output_multiplier": tier.output_multiplier,
        },
    }


def table_rows(today: _dt.date | None = None) -> list[dict[str, Any]]:
    """The table in force as JSON-able rows, overrides included (``claude-relay models``).

    Each row has the family, its status (``current``, ``available``, ``retired``, ``listed,
    unpriced`` or ``registered``), minimums, prices and multipliers, retirement, note, price
    reports, sources and the date read. Current models first, then by family. A family listed
    as unpriced that ``register_model`` gave facts to has one row, ``registered``.
    """
    rows: list[dict[str, Any]] = []
    for family, spec in price_table().items():
        if family in _overrides:
            status = "registered"
        elif spec.is_retired(today):
            status = "retired"
        else:
            status = "current" if spec.current else "available"
        rows.append(
            {
                "family": family,
                "status": status,
                "min_cache_tokens": spec.min_cache_tokens,
                "platform_min_cache_tokens": dict(spec.platform_min_cache_tokens),
                **_prices_row(spec.prices),
                "retired_on": str(spec.retired_on) if spec.retired_on else None,
                "refuses_automatic_caching_on": list(spec.refuses_automatic_caching_on),
                "thinking_types": list(spec.thinking_types),
                "sampling": spec.sampling,
                "takes_prefill": spec.takes_prefill,
                "takes_forced_tool": spec.takes_forced_tool,
                "inference_geo_multipliers": dict(spec.inference_geo_multipliers),
                "note": spec.note,
                "price_reports": [
                    {
                        "name": r.name,
                        "read_multiplier": r.prices.read_multiplier,
                        "sources": list(r.sources),
                        "read_on": str(r.read_on),
                    }
                    for r in spec.price_reports
                ],
                "sources": list(spec.sources),
                "read_on": str(spec.read_on) if spec.read_on else None,
            }
        )
    for family, listed in LISTED_UNPRICED.items():
        if family in _overrides:  # registered: its row above says so
            continue
        rows.append(
            {
                "family": family,
                "status": "listed, unpriced",
                "min_cache_tokens": None,
                "platform_min_cache_tokens": {},
                **_prices_row(None),
                "retired_on": None,
                "refuses_automatic_caching_on": [],
                "thinking_types": [],
                "sampling": "",
                "takes_prefill": None,
                "takes_forced_tool": None,
                "inference_geo_multipliers": {},
                "note": listed.note,
                "price_reports": [],
                "sources": list(listed.sources),
                "read_on": str(listed.read_on),
            }
        )
    order = {"current": 0, "available": 1, "registered": 2, "listed, unpriced": 3, "retired": 4}
    return sorted(rows, key=lambda r: order[r["status"]])
