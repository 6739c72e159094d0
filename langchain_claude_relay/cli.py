"""``claude-relay``: the command line (demo, emulator, plan, stats, probe, models, bench).

Each subcommand is a small function over the library; ``--help`` on each says what it does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]


def _emulator_choices() -> dict[str, tuple[str, ...]]:
    """The ``EmulatorSettings`` fields that take one of a few names, with those names."""
    from langchain_claude_relay.emulator import DIALECTS, TIERS
    from langchain_claude_relay.emulator.engine import BAD_RELAY_MODES
    from langchain_claude_relay.emulator.server import CLOCKS

    return {
        "dialect": tuple(DIALECTS),
        "bad_relay": tuple(BAD_RELAY_MODES),
        "tier": tuple(TIERS),
        "clock": tuple(CLOCKS),
    }


_CHOICE_HELP = {
    "dialect": ("usage dialect of /v1/chat/completions", None),
    "bad_relay": ("what a misbehaving relay does to cache markers", "a relay that keeps them"),
    "tier": ("rate-limit preset", "no rate limits"),
    "clock": ("the emulator's clock (virtual: moves only when told)", None),
}
"""Help for the named-value flags: (what it sets, what the default means if not its name)."""


def _fault_kinds(text: str) -> str:
    """An argparse type: a comma-separated list of known fault kinds."""
    from langchain_claude_relay.emulator.faults import parse_fault_kinds

    try:
        parse_fault_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _emulator_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``EmulatorSettings`` field, typed from the dataclass.

    Fields that take one of a few names get argparse ``choices`` (a wrong name is a usage
    error that lists them); fault kinds are checked as they are parsed.
    """
    from langchain_claude_relay.emulator import EmulatorSettings

    hints = typing.get_type_hints(EmulatorSettings)
    docs = _attribute_docs(EmulatorSettings.__doc__ or "")
    choices = _emulator_choices()
    for field in dataclasses.fields(EmulatorSettings):
        hint = hints[field.name]
        args = typing.get_args(hint)
        is_optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if is_optional else hint
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if field.name in choices:
            names = choices[field.name]
            what, default_meaning = _CHOICE_HELP[field.name]
            help_text = f"{what}: one of {', '.join(names)} (default: {default_meaning or default})"
            parser.add_argument(
                flag, choices=names, default=default, metavar="NAME", help=help_text
            )
            continue
        help_text = f"{docs.get(field.name, '')} (default: {default})".strip()
        if base is bool and not is_optional:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
            continue
        converter: Any = base if base in (int, float, str) else str
        if base is bool:  # optional bool: true/false/none
            converter = _optional_bool
        if field.name in ("fault_kinds", "fault_script"):
            converter = _fault_kinds
        parser.add_argument(flag, type=converter, default=default, help=help_text)


def _attribute_docs(docstring: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section."""
    docs: dict[str, str] = {}
    current: str | None = None
    in_section = False
    for line in docstring.splitlines():
        stripped = line.strip()
        if stripped == "Attributes:":
            in_section = True
            continue
        if not in_section:
            continue
        head, sep, text = stripped.partition(": ")
        if sep and head.isidentifier():
            current = head
            docs[current] = text
        elif stripped and current is not None:
            docs[current] += " " + stripped
        elif not stripped and current is not None:
            break
    return {k: v.replace("``", "").replace("%", "%%") for k, v in docs.items()}


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        msg = f"{text!r} is not a TCP port: give 0 to 65535 (0 takes a free one)"
        raise argparse.ArgumentTypeError(msg)
    return port


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"{text!r} is not a whole number of at least 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def _optional_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    if lowered in ("none", "auto", ""):
        return None
    msg = f"expected true, false or none, not {text!r}"
    raise argparse.ArgumentTypeError(msg)


def _cmd_emulator(args: argparse.Namespace) -> int:
    from langchain_claude_relay.emulator import EmulatorSettings
    from langchain_claude_relay.emulator.server import EmulatorBindError, serve

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EmulatorSettings)}
    try:
        settings = EmulatorSettings(**values)
    except ValueError as exc:  # a combination the flags cannot check one by one
        args.parser.error(str(exc))
    try:
        serve(
            args.host,
            args.port,
            settings,
            require_key=args.require_key,
            announce=lambda banner: print(banner, file=sys.stderr, flush=True),
        )
    except EmulatorBindError as exc:
        raise SystemExit(f"claude-relay emulator: {exc}") from None
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from langchain_claude_relay._convert import to_claude_request
    from langchain_claude_relay.errors import ClaudeRelayError
    from langchain_claude_relay.models import DEFAULT_MODEL
    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.request import CacheControl
    from langchain_claude_relay.store import MemoryStore

    try:
        data = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"claude-relay plan: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    except RecursionError:
        print(
            f"claude-relay plan: cannot read {args.file}: its JSON is nested too deeply "
            "(a chat request is a few levels deep)",
            file=sys.stderr,
        )
        return 2
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict) or "messages" not in data:
        print(
            "claude-relay plan: expected a JSON object with 'messages' "
            "(and optional 'tools', 'model')",
            file=sys.stderr,
        )
        return 2
    model = args.model or data.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        print(
            f"claude-relay plan: 'model' in {args.file} must be a model id string such as "
            f"{DEFAULT_MODEL!r}, not {type(model).__name__}",
            file=sys.stderr,
        )
        return 2
    try:
        request = to_claude_request(
            data["messages"],
            model=model,
            tools=data.get("tools"),
            tool_choice=data.get("tool_choice"),
            cache_scope="" if args.fresh else _plan_scope(args, model),
        )
        if data.get("cache_control") is not None:  # automatic caching: a top-level marker
            top_level = CacheControl.parse(data["cache_control"])
            request = dataclasses.replace(request, cache_control=top_level)
        planner = CachePlanner(store=MemoryStore()) if args.fresh else CachePlanner()
        plan = planner.plan(request, ttl=args.ttl)
    except (ClaudeRelayError, ValueError) as exc:
        print(f"claude-relay plan: {exc}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"claude-relay plan: {args.file} is nested too deeply to plan", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(plan.explain())
    return 0


def _plan_scope(args: argparse.Namespace, model: str) -> str:
    """The cache scope of the relay and key the environment (or the flags) name, else ``""``.

    A ``ChatClaudeRelay``'s calls key the planner's records by its relay and key
    (``ClaudeRequest.cache_scope``): the plan sees what they cached only under the same scope,
    so it is the scope ``ChatClaudeRelay()`` built from the same settings has.
    """
    import os

    from pydantic import SecretStr

    from langchain_claude_relay.chat_models import ChatClaudeRelay

    # Nothing is sent: a plain-http relay (a chat model's ``allow_insecure_http=True``, which
    # the scope leaves out) is planned for all the same.
    settings: dict[str, Any] = {"model": model, "ledger": False, "allow_insecure_http": True}
    if args.base_url:
        settings["base_url"] = args.base_url
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        settings["api_key"] = SecretStr(key) if key else None
    try:
        llm = ChatClaudeRelay(**settings)
    except ValueError:  # a relay no chat model can use (the message never shows the key):
        return ""  # nothing was cached through it
    if not llm.base_url or llm.api_key is None:  # no relay named: the records of none
        return ""
    return llm._cache_scope_digest()


def _cmd_stats(args: argparse.Namespace) -> int:
    import time

    from langchain_claude_relay.ledger import summarize
    from langchain_claude_relay.ledger.chart import chart_path, write_stats_chart

    since = None
    if args.since is not None:
        since = time.time() - _parse_duration(args.since)
    try:
        entries = _stored_ledger_entries(since)
    except _LedgerUnreadable as exc:
        print(f"claude-relay stats: {exc}", file=sys.stderr)
        return 1
    summary = summarize(entries, since=since)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, allow_nan=False))
    else:
        print(summary.to_table())
    if args.chart:
        problem = write_stats_chart(entries, args.chart, since=since)
        if problem is not None:
            print(f"claude-relay stats: {problem}", file=sys.stderr)
            return 1
        print(f"chart: {chart_path(args.chart)}", file=sys.stderr)
    return 0


class _LedgerUnreadable(Exception):
    """The ledger ``stats`` was asked to report on exists but cannot be read."""


def _stored_ledger_entries(since: float | None) -> list[Any]:
    """The entries of the ledger ``default_ledger()`` would use, read without a fallback.

    ``default_ledger()`` falls back to memory when the disk fails, which suits a chat call but
    would make ``stats`` report "no calls" for a damaged ledger. A ledger that does not exist
    yet has no calls (nothing is created to say so). A ledger put in place with
    ``set_default_ledger`` (a ``MemoryLedger`` in a notebook or a test) is the one reported.

    Raises:
        _LedgerUnreadable: if the ledger exists (or Redis is named) but cannot be read.

    """
    from langchain_claude_relay._env import ledger_dir, redis_url
    from langchain_claude_relay.ledger import DiskLedger, FallbackLedger
    from langchain_claude_relay.ledger.disk import DATABASE
    from langchain_claude_relay.ledger.fallback import current_default_ledger
    from langchain_claude_relay.ledger.memory import Ledger
    from langchain_claude_relay.ledger.redis import RedisLedger
    from langchain_claude_relay.store.sqlite import LEGACY_DATABASE
    from langchain_claude_relay.transport.checks import redact_url

    chosen = current_default_ledger()  # set_default_ledger's, or None / the lazy disk default
    if chosen is not None and not isinstance(chosen, FallbackLedger):
        return chosen.entries(since=since)
    url = redis_url()
    directory = ledger_dir()
    where = redact_url(url) if url is not None else str(directory)
    if url is None:
        if directory.exists() and not directory.is_dir():
            msg = f"cannot read the ledger at {where}: it is a file, not a directory"
            raise _LedgerUnreadable(msg)
        if not (directory / DATABASE).exists() and not (directory / LEGACY_DATABASE).exists():
            return []  # no ledger yet: no calls recorded
    ledger: Ledger | None = None
    try:
        ledger = RedisLedger(url) if url is not None else DiskLedger(directory)
        return ledger.entries(since=since)
    except Exception as exc:
        cause = exc.__cause__ or exc
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        if url is not None:
            reason = type(cause).__name__  # a Redis error may quote the URL and its password
        msg = f"cannot read the ledger at {where}: {reason}"
        raise _LedgerUnreadable(msg) from None
    finally:
        if ledger is not None:
            ledger.close()


def _parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``7d`` -> seconds (finite, not negative)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    cleaned = text.strip().lower()
    try:
        if cleaned[-1] in units:
            seconds = float(cleaned[:-1]) * units[cleaned[-1]]
        else:
            seconds = float(cleaned)
    except (ValueError, IndexError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        msg = f"claude-relay stats: cannot read --since {text!r}: use e.g. 90s, 15m, 2h or 7d"
        raise SystemExit(msg) from None
    return seconds


def _cmd_probe(args: argparse.Namespace) -> int:
    from langchain_claude_relay._env import API_KEY_ENVS, BASE_URL_ENVS, first_set

    base_url = args.base_url or first_set(BASE_URL_ENVS)
    key_names = [args.api_key_env] if args.api_key_env else list(API_KEY_ENVS)
    api_key = first_set(key_names)
    if not base_url:
        print(
            "claude-relay probe: no relay base URL: pass --base-url URL or set "
            "CLAUDE_RELAY_BASE_URL",
            file=sys.stderr,
        )
        return 2
    if not api_key:
        print(
            f"claude-relay probe: no API key: set {' or '.join(key_names)} "
            "(or name another variable with --api-key-env)",
            file=sys.stderr,
        )
        return 2
    json_file = None
    if args.json and args.json != "-":  # a bad path fails now, before any request is sent
        target = Path(args.json)
        created = not target.exists()
        try:
            json_file = target.open("a", encoding="utf-8")  # appending loses nothing yet
        except OSError as exc:
            print(
                f"claude-relay probe: cannot write --json {args.json}: {exc.strerror or exc} "
                "(give a writable file path, or - for stdout)",
                file=sys.stderr,
            )
            return 2
    try:
        return _probe_and_report(args, base_url, api_key, json_file)
    finally:
        if json_file is not None:
            written = json_file.tell() > 0
            json_file.close()
            if created and not written:  # the probe failed: leave no empty file behind
                Path(args.json).unlink(missing_ok=True)


def _probe_and_report(args: argparse.Namespace, base_url: str, api_key: str, json_file: Any) -> int:
    """Probe the relay, print (and write to ``json_file``) the verdicts, save them."""
    from pydantic import SecretStr

    from langchain_claude_relay.capabilities import (
        DEFAULT_MAX_AGE_S,
        adaptation_for,
        capabilities_path,
        save_capabilities,
    )
    from langchain_claude_relay.chat_models import ChatClaudeRelay
    from langchain_claude_relay.errors import ClaudeRelayError
    from langchain_claude_relay.models import DEFAULT_MODEL
    from langchain_claude_relay.probe import probe_relay
    from langchain_claude_relay.transport.checks import redact_url

    try:
        llm = ChatClaudeRelay(
            model=args.model or DEFAULT_MODEL,
            base_url=base_url,
            api_key=SecretStr(api_key),
            ledger=False,
        )
        caps = probe_relay(llm)
    except (ValueError, ClaudeRelayError) as exc:  # settings (a bad URL, ...), or the relay
        secrets = {"CLAUDE_RELAY_BASE_URL": base_url, "CLAUDE_RELAY_API_KEY": api_key}
        return _failed("probe", exc, secrets)
    adaptation = adaptation_for(caps)
    if args.json:
        document = {"capabilities": caps.to_dict(), "adaptation": adaptation.to_dict()}
        text = json.dumps(document, indent=2)
        if json_file is None:
            print(text)
        else:
            json_file.seek(0)
            json_file.truncate()
            json_file.write(text + "\n")
    if args.json != "-":
        print(f"relay: {redact_url(base_url)}")
        for line in caps.summary_lines():
            print(f"  {line}")
        print("adaptation:")
        notes = list(adaptation.warnings)
        if caps.keeps_response_format is False:
            notes.append(
                "response_format does not reach Claude's structured outputs through this relay "
                "(probe: keeps response_format = no), so with_structured_output's default binds "
                "its schema as a tool here (unforced on models that refuse a forced tool)."
            )
        for note in notes or (_no_adaptation(caps),):
            print(f"  {note}")
    if not args.no_cache:
        try:
            save_capabilities(base_url, caps)
        except OSError as exc:
            print(f"claude-relay probe: could not save the verdicts: {exc}", file=sys.stderr)
            return 1
        days = DEFAULT_MAX_AGE_S / 86400
        print(f"saved to {capabilities_path()} (trusted for {days:g} days)", file=sys.stderr)
    return 0


def _no_adaptation(caps: Any) -> str:
    """The probe's line when nothing is adapted: the markers were seen kept, or it cannot tell."""
    if caps.keeps_block_markers is True:
        return "none needed: the relay keeps what the planner sends"
    fields = ", ".join(caps.usage_fields) or "none"
    return (
        "none, but undetermined: the probe could not tell whether cache_control reaches Claude "
        f"(the relay reports no cache reads or writes; usage fields: {fields}). Markers are "
        "still planned (one that is dropped costs nothing), but costs will show no cache "
        "savings unless the relay reports them."
    )


def _cmd_models(args: argparse.Namespace) -> int:
    from langchain_claude_relay.models import SOURCES, table_rows

    rows = table_rows()
    if not args.all:
        rows = [r for r in rows if r["status"] != "retired"]
    if args.json:
        sources = {k: {"title": s.title, "read_on": str(s.read_on)} for k, s in SOURCES.items()}
        print(json.dumps({"models": rows, "sources": sources}, indent=2))
        return 0
    print(_models_text(rows))
    return 0


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _models_text(rows: Sequence[dict[str, Any]]) -> str:
    """The model table as printed by ``claude-relay models``."""
    from langchain_claude_relay.models import DEFAULT_MODEL, SOURCES

    header = ["family", "status", "min", "input", "output", "read", "read x", "5m", "1h"]
    header += ["notes", "sources (read on)"]
    cells = []
    for r in rows:
        minimum = str(r["min_cache_tokens"] or "?")
        minimum += "".join(f" ({p}: {n})" for p, n in r["platform_min_cache_tokens"].items())
        notes = [r["note"]] if r["note"] else []
        if r["long_context"]:
            tier = r["long_context"]
            notes.append(
                f"prompt over {tier['above_prompt_tokens']:,} tokens: input x"
                f"{tier['input_multiplier']:g}, output x{tier['output_multiplier']:g}"
            )
        if r["refuses_automatic_caching_on"]:
            notes.append(
                "automatic caching refused on legacy "
                + ", ".join(r["refuses_automatic_caching_on"])
            )
        if r["thinking_types"]:
            notes.append("thinking: " + "/".join(r["thinking_types"]))
        if r["sampling"] == "none":
            notes.append("no temperature/top_p/top_k")
        elif r["sampling"] == "temperature_or_top_p":
            notes.append("temperature or top_p, not both")
        if r["takes_prefill"] is False:
            notes.append("no prefill")
        if r["takes_forced_tool"] is False:
            notes.append("no forced tool_choice")
        geos = [f"{g} x{m:g}" for g, m in r["inference_geo_multipliers"].items() if m != 1]
        if geos:
            notes.append("inference_geo " + ", ".join(geos))
        notes += [
            f"report {p['name']}: reads {p['read_multiplier']:g}x" for p in r["price_reports"]
        ]
        if r["retired_on"]:
            notes.insert(
                0,
                f"retired {r['retired_on']}"
                if r["status"] == "retired"
                else f"end of life {r['retired_on']}",
            )
        cells.append(
            [
                r["family"],
                r["status"],
                minimum,
                _usd(r["input"]),
                _usd(r["output"]),
                _usd(r["cache_read"]),
                "-" if r["read_multiplier"] is None else f"{r['read_multiplier']:g}x",
                _usd(r["cache_write_5m"]),
                _usd(r["cache_write_1h"]),
                "; ".join(notes),
                f"{', '.join(r['sources'])} ({r['read_on']})",
            ]
        )
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {2, 3, 4, 5, 6, 7, 8}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    lines = [
        f"Model table in force (USD per million tokens; default model {DEFAULT_MODEL}). "
        "min: shortest cacheable prefix in tokens; read x: cache read / input.",
        line(header),
        line(["-" * w for w in widths]),
        *(line(c) for c in cells),
        "",
        "Sources:",
        *(f"  {k}: {s.title} (read {s.read_on})" for k, s in SOURCES.items()),
    ]
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    import os

    from langchain_claude_relay.demo import run_demo
    from langchain_claude_relay.errors import ClaudeRelayError

    try:
        return run_demo(turns=args.turns, relay=args.relay)
    except (ValueError, ClaudeRelayError) as exc:  # settings (no key, ...), or the relay
        return _failed("demo", exc, os.environ)


def _failed(command: str, exc: Exception, environ: Any) -> int:
    """Report a command's failure on one line: 2 for its settings, 1 for the relay's answer."""
    from langchain_claude_relay.errors import ClaudeRelayError

    relay = isinstance(exc, ClaudeRelayError) and not isinstance(exc, ValueError)
    cause = f"the relay failed ({type(exc).__name__}): " if relay else ""
    print(f"claude-relay {command}: {cause}{_one_line(exc, environ)}", file=sys.stderr)
    return 1 if relay else 2


def _one_line(exc: Exception, environ: Any) -> str:
    """An error as one line, without the relay key or the URL's credentials.

    A pydantic ``ValidationError`` gives each field's message (not its multi-line report).
    """
    from langchain_claude_relay.errors import redact
    from langchain_claude_relay.transport.checks import redact_url

    errors = getattr(exc, "errors", None)
    text = str(exc)
    if callable(errors):
        with contextlib.suppress(Exception):
            text = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in errors())
    base_url = environ.get("CLAUDE_RELAY_BASE_URL")
    if base_url:
        text = text.replace(base_url, redact_url(base_url))
    return " ".join(redact(text, environ.get("CLAUDE_RELAY_API_KEY")).split())


def build_parser() -> argparse.ArgumentParser:
    """The ``claude-relay`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="claude-relay",
        description="Claude through OpenAI-compatible relays, with prompt caching planned for you.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="an agent over a large document, several turns over virtual time, with savings"
    )
    demo.add_argument(
        "--turns", type=_positive_int, default=None, help="questions to ask (default: all 8)"
    )
    demo.add_argument(
        "--relay",
        action="store_true",
        help="run on the relay CLAUDE_RELAY_BASE_URL names, with CLAUDE_RELAY_API_KEY (billed; "
        "default: the embedded emulator, whatever the environment says)",
    )
    demo.set_defaults(func=_cmd_demo)

    emulator = sub.add_parser(
        "emulator", help="serve the local relay emulator (Claude's caching rules and billing)"
    )
    emulator.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    emulator.add_argument(
        "--port", type=_port, default=8787, help="port, 0-65535 (0: a free one; default: 8787)"
    )
    emulator.add_argument(
        "--require-key",
        metavar="KEY",
        default=None,
        help="refuse requests that do not present KEY (Authorization: Bearer, x-api-key or "
        "api-key); default: any key is accepted",
    )
    with contextlib.suppress(ImportError):  # without the extra, the command says what to install
        _emulator_flags(emulator)
    emulator.set_defaults(func=_cmd_emulator, parser=emulator)

    plan = sub.add_parser(
        "plan", help="show the cache plan for a request (OpenAI chat JSON) without sending it"
    )
    plan.add_argument(
        "file",
        help="JSON file: {'model', 'messages', 'tools', 'cache_control'} or a list of messages "
        "(a top-level cache_control asks for automatic caching)",
    )
    plan.add_argument("--model", help="model id (default: the file's, else the default model)")
    plan.add_argument(
        "--ttl", choices=["auto", "5m", "1h"], default="auto", help="TTL policy (default: auto)"
    )
    plan.add_argument(
        "--fresh", action="store_true", help="ignore learned statistics (plan as for a first call)"
    )
    plan.add_argument(
        "--base-url",
        help="the relay whose cached prefixes the plan sees (default: $CLAUDE_RELAY_BASE_URL, "
        "$OPENAI_BASE_URL, $OPENAI_API_BASE)",
    )
    plan.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding that relay's key (default: CLAUDE_RELAY_API_KEY, "
        "then OPENAI_API_KEY); only a digest of it keys the records",
    )
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.set_defaults(func=_cmd_plan)

    stats = sub.add_parser(
        "stats", help="the ledger: calls, hit rate, tokens by kind, cost, saved, wasted writes"
    )
    stats.add_argument("--since", help="only calls in the last DURATION (e.g. 15m, 2h, 7d)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument(
        "--chart",
        metavar="PATH",
        help="also draw spend, savings and hit rate over time as a PNG (needs matplotlib)",
    )
    stats.set_defaults(func=_cmd_stats)

    probe = sub.add_parser(
        "probe",
        help="test what a relay keeps of cache markers (block, tool, ttl; injected markers) "
        "and of response_format",
        description="Send a few small requests (max_tokens=1, one of up to 24) to tell whether "
        "the relay keeps cache_control on blocks and tools, keeps its ttl, adds markers of its "
        "own, reports cache writes, or forwards response_format to Claude's structured outputs; "
        "print the verdicts and how the planner adapts, and save them (by URL hash) in the state "
        "directory.",
    )
    probe.add_argument(
        "--base-url",
        help="relay base URL (default: $CLAUDE_RELAY_BASE_URL, $OPENAI_BASE_URL, $OPENAI_API_BASE)",
    )
    probe.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the key (default: CLAUDE_RELAY_API_KEY, "
        "then OPENAI_API_KEY); the key itself is never taken on the command line",
    )
    probe.add_argument(
        "--model", help="model id as the relay spells it (default: the default model)"
    )
    probe.add_argument(
        "--json", metavar="PATH", help="also write the verdicts as JSON to PATH (- for stdout)"
    )
    probe.add_argument(
        "--no-cache", action="store_true", help="do not save the verdicts in the state directory"
    )
    probe.set_defaults(func=_cmd_probe)

    models = sub.add_parser(
        "models",
        help="the model table in force: minimums, prices, read multipliers, sources and dates",
    )
    models.add_argument(
        "--all", action="store_true", help="also list retired models (priced for old code)"
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=_cmd_models)

    # `bench` has its own parser (langchain_claude_relay.bench); main() hands it the arguments.
    sub.add_parser(
        "bench",
        help="cost against an offline optimum and peer strategies; overhead against "
        "ChatOpenAI; the emulator under load",
        add_help=False,
    )

    return parser


_EXTRA_OF_MODULE = {
    "uvicorn": "emulator",
    "starlette": "emulator",
    "langchain": "demo",
    "matplotlib": "charts",
    "redis": "redis",
    "anthropic": "anthropic",
}
"""The extra that installs each optional top-level package a command may need."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            from langchain_claude_relay.bench import run_bench

            return run_bench(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        command = argv[0] if argv else "claude-relay"
        extra = "demo" if command == "demo" else extra  # the demo's extra has the emulator too
        print(
            f"claude-relay {command}: needs the {extra} extra: "
            f"pip install 'langchain-claude-relay[{extra}]'",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
