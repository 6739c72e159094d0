"""What the transport checks before and after it talks to a relay: URLs, TLS, secrets.

* ``check_base_url``: an http(s) URL; plain ``http://`` only to loopback unless allowed; no
  credentials in it (userinfo, or a query parameter named like a credential: ``?key=...``).
* Credential headers (``is_secret_header``: the ``SECRET_HEADER_NAMES``, and any name with a word
  of ``CREDENTIAL_WORDS`` or a qualified ``key``, such as ``cf-aig-authorization`` or
  ``x-portkey-api-key``) are split from plain ones and kept ``SecretStr``.
* TLS verification cannot be switched off silently: an ``http_client`` whose TLS settings are
  readable (``httpx``/``httpx2`` clients and their proxy mounts) and that does not verify
  certificates or host names draws an ``InsecureTransportWarning`` when the base URL is
  ``https://``. A client whose transport hides its settings (a custom transport) is not checked.
* ``scrub_error``: the key never leaves in an error (replaced by ``***``).
* ``redact_url``: a URL as it may be shown -- in errors, logs, reprs, callbacks' and LangSmith's
  parameters -- with its userinfo and every query value replaced by ``***`` (a relay URL such as
  ``https://user:KEY@relay/v1?key=KEY`` carries credentials). The HTTP libraries log each
  request's full URL at INFO, and ``botocore`` logs a Bedrock request's signed headers (the
  session token among them) at DEBUG: ``hide_in_http_logs`` registers a base URL's credentials
  and the transport's other secrets with a filter on their loggers, which writes ``***`` in
  their place.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlparse, urlsplit

from pydantic import SecretStr

from langchain_claude_relay._env import BASE_URL_ENV
from langchain_claude_relay._plumbing import warn_external, warn_once
from langchain_claude_relay.errors import (
    MIN_SECRET_CHARS,
    APIResponseError,
    APIStatusError,
    ClaudeRelayError,
    InsecureTransportWarning,
    RequestValidationError,
)

__all__ = [
    "SECRET_HEADER_NAMES",
    "CREDENTIAL_WORDS",
    "KEY_QUALIFIERS",
    "CREDENTIAL_QUERY_NAMES",
    "is_credential_query_name",
    "REDACTED",
    "is_secret_header",
    "split_secret_headers",
    "check_base_url",
    "check_base_url_for_api",
    "ANTHROPIC_HOST",
    "is_loopback_host",
    "client_skips_tls_verification",
    "warn_if_unverified",
    "scrub_error",
    "chain_mentions",
    "redact_url",
    "url_credentials",
    "hide_in_http_logs",
]

REDACTED = "***"
"""What a secret is replaced by in errors, bodies and stream lines."""

SECRET_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
"""Headers (lower case) whose values are credentials: kept secret like the API key."""

CREDENTIAL_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "cookie",
        "signature",
        "sig",
        "credential",
        "credentials",
        "jwt",
        "bearer",
    }
)
"""Words of a header or query parameter name (split at ``-``, ``_``, ``.``) that make its value a
credential: gateways name their keys as they like (``cf-aig-authorization``, ``Helicone-Auth``,
``x-amz-security-token``...)."""

KEY_QUALIFIERS = frozenset(
    {"api", "access", "subscription", "private", "secret", "client", "account", "master", "app"}
)
"""A ``key`` word after one of these is a credential (``x-goog-api-key``, ``x-portkey-api-key``,
``Ocp-Apim-Subscription-Key``); after others it is not (``X-Idempotency-Key``)."""

CREDENTIAL_QUERY_NAMES = frozenset({"key", "code"})
"""Query parameters whose whole name says they carry a credential (``?key=``; Azure Functions'
``?code=``)."""


def _name_words(name: str) -> list[str]:
    return [word for word in re.split(r"[^a-z0-9]+", name.lower()) if word]


def is_secret_header(name: str) -> bool:
    """Whether a header name says its value is a credential, in any case.

    Judged by whole words, not fragments: a harmless header that merely contains one
    (``Helicone-Session-Name``, ``x-session-affinity``, ``X-Idempotency-Key``) stays a plain
    header, shown and never scrubbed from answers, since a credential's value is also cut out
    of every answer the relay sends.

    >>> [is_secret_header(n) for n in ("Helicone-Auth", "x-goog-api-key", "x-request-source")]
    [True, True, False]
    >>> [is_secret_header(n) for n in ("X-Idempotency-Key", "Helicone-Session-Name", "Cookie")]
    [False, False, True]
    """
    lowered = name.lower()
    if lowered in SECRET_HEADER_NAMES:
        return True
    words = _name_words(lowered)
    if any(word in CREDENTIAL_WORDS for word in words):
        return True
    return any(
        word == "key" and i > 0 and words[i - 1] in KEY_QUALIFIERS for i, word in enumerate(words)
    )


def is_credential_query_name(name: str) -> bool:
    """Whether a base URL's query parameter carries a credential.

    ``?key=``, ``?access_token=``, Azure's ``?code=`` and ``?sig=`` do; ``?api-version=`` and
    ``?keyspace=`` do not.

    >>> [is_credential_query_name(n) for n in ("key", "code", "sig", "api-version", "keyspace")]
    [True, True, True, False, False]
    """
    return name.lower() in CREDENTIAL_QUERY_NAMES or is_secret_header(name)


def split_secret_headers(
    headers: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, SecretStr]]:
    """Split headers into plain ones and credentials (:func:`is_secret_header`, any case).

    Args:
        headers: the headers as given.

    Returns:
        ``(plain headers, credential headers as SecretStr)``, names as given.

    >>> plain, secret = split_secret_headers({"X-Api-Key": "sk-1", "x-team": "a"})
    >>> plain, secret
    ({'x-team': 'a'}, {'X-Api-Key': SecretStr('**********')})
    """
    plain: dict[str, str] = {}
    secret: dict[str, SecretStr] = {}
    for name, value in headers.items():
        if is_secret_header(name):
            secret[name] = SecretStr(value)
        else:
            plain[name] = value
    return plain, secret


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


def url_credentials(url: str) -> list[str]:
    """The credential-like parts of a URL: userinfo (user, password) and query values.

    >>> url_credentials("https://u:pw@relay.example.com/v1?key=k1&v=2")
    ['u', 'pw', 'k1', '2']
    """
    parts = _split(url)
    if parts is None:
        return []
    found = [p for p in (parts.username, parts.password) if p]
    found += [value for _name, value in parse_qsl(parts.query, keep_blank_values=False)]
    return found


def redact_url(url: str) -> str:
    """A URL with its userinfo and query values replaced by ``***`` (for showing it).

    >>> redact_url("https://user:KEY@relay.example.com:8443/v1?key=KEY&api-version=1#frag")
    'https://***@relay.example.com:8443/v1?key=***&api-version=***'
    >>> redact_url("http://127.0.0.1:8787/v1")
    'http://127.0.0.1:8787/v1'
    """
    parts = _split(url)
    if parts is None:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{name.partition('=')[0]}={REDACTED}" if "=" in name else REDACTED
        for name in parts.query.split("&")
        if name
    )
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return f"{shown}?{query}" if query else shown


# A filter on a logger sees only the records of that very logger, not its children's: every
# logger the SDKs and their HTTP libraries log requests or headers on is named. botocore signs
# Bedrock requests: ``botocore.auth`` logs the canonical request and its signed headers (the
# session token) at DEBUG; ``botocore.credentials`` and ``botocore.endpoint`` where credentials
# and requests come from.
_HTTP_LOGGER_ROOTS = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "openai",
    "anthropic",
    "botocore",
    "boto3",
)
_HTTP_LOGGERS = (
    *_HTTP_LOGGER_ROOTS,
    *(
        f"{core}.{part}"
        for core in ("httpcore", "httpcore2")
        for part in ("connection", "http11", "http2", "proxy", "socks", "connection_pool")
    ),
    "openai._base_client",
    "anthropic._base_client",
    *(
        f"botocore.{part}"
        for part in (
            "auth",
            "awsrequest",
            "client",
            "credentials",
            "endpoint",
            "hooks",
            "httpsession",
            "parsers",
            "regions",
            "retryhandler",
            "session",
            "utils",
        )
    ),
)
_MIN_HIDDEN = MIN_SECRET_CHARS  # shorter credentials ("u", "1"): every line in asterisks


class _HideCredentials(logging.Filter):
    """Writes ``***`` over registered URL credentials in the HTTP libraries' log records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: frozenset[str] = frozenset()

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's to report
            return True
        if any(secret in message for secret in secrets):
            for secret in sorted(secrets, key=len, reverse=True):
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        return True


_log_filter = _HideCredentials()
_log_filter_lock = threading.Lock()


def hide_in_http_logs(url: str | None, secrets: Iterable[str] = ()) -> None:
    """Keep a URL's credentials and ``secrets`` out of the HTTP libraries' and botocore's logs.

    See the module docstring. Registered secrets stay registered for the process (a filter
    cannot know when no client uses them any more); values shorter than ``MIN_SECRET_CHARS``
    are not, as writing over them would mangle every line.

    Args:
        url: a base URL (``None``: none); its userinfo and query values are registered.
        secrets: other values to hide: the transport's key, secret settings (Bedrock's secret
            key and session token, Vertex's token) and credential headers.
    """
    found = {c for c in (*url_credentials(url or ""), *secrets) if len(c) >= _MIN_HIDDEN}
    if not found or found <= _log_filter.secrets:
        return
    with _log_filter_lock:
        existing = [
            name
            for name in list(logging.root.manager.loggerDict)
            if name.partition(".")[0] in _HTTP_LOGGER_ROOTS
        ]
        for name in {*_HTTP_LOGGERS, *existing}:
            logger = logging.getLogger(name)
            if _log_filter not in logger.filters:
                logger.addFilter(_log_filter)
        _log_filter.secrets = _log_filter.secrets | found


_ENDPOINT_PATHS = ("/chat/completions", "/v1/messages")
"""Endpoints the SDKs append to a base URL (the OpenAI and the Anthropic one): a base URL
ending in one is a copy-paste of the full endpoint, which would be sent to ``.../v1/chat/
completions/chat/completions`` and answered 404."""

ANTHROPIC_HOST = "api.anthropic.com"
"""Anthropic's API host. Its OpenAI-compatible endpoint (``https://api.anthropic.com/v1/``)
answers ``api="openai"`` requests but ignores ``cache_control``: nothing is ever cached there."""


def check_base_url(
    base_url: str | None, *, allow_insecure_http: bool = False, api: str | None = None
) -> str:
    """Validate a relay base URL before anything is sent.

    A URL carrying credentials is refused, not redacted: a model keeps its base URL as given,
    and ``model_dump()``, ``model_dump_json()`` and ``pickle`` would hand them on in plain text
    (a redacted copy would no longer reach the relay). Userinfo (``user:pw@``) is refused
    besides because the HTTP library turns it into ``Authorization: Basic ...``, which replaces
    the API key. A query parameter named like a credential (:func:`is_secret_header`: ``?key=``,
    ``?access_token=``, ``?signature=``...) is refused; other query values (``?api-version=``)
    are settings, kept as given, and still redacted wherever the URL is shown. The message says
    what to move where, never the value.

    With the way in (``api``), the checks of :func:`check_base_url_for_api` run too, and a base
    URL ending in an endpoint gets the advice of that way in; without it, the advice covers
    both ``api='openai'`` and ``api='anthropic'``.

    Raises:
        RequestValidationError: if it is missing, not http(s), carries userinfo or a credential
            query parameter, ends in an endpoint path (``/chat/completions``, ``/v1/messages``),
            is plain ``http://`` to a host other than loopback without
            ``allow_insecure_http=True``, or (with ``api``) does not fit the way in.
    """
    if not base_url:
        msg = (
            f"no relay base URL: pass base_url=... or set {BASE_URL_ENV} "
            "(or OPENAI_BASE_URL), e.g. 'https://relay.example.com/v1'"
        )
        raise RequestValidationError(msg)
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        shown = redact_url(base_url)
        msg = f"base_url {shown!r} is not an http(s) URL such as 'https://relay.example.com/v1'"
        raise RequestValidationError(msg)
    _refuse_credentials_in(base_url, parsed.netloc, parsed.query)
    _refuse_endpoint_path(base_url, parsed.path, api)
    if (
        parsed.scheme == "http"
        and not allow_insecure_http
        and not is_loopback_host(parsed.hostname)
    ):
        msg = (
            f"base_url uses plain http:// to {parsed.hostname!r}: your API key would travel "
            "unencrypted. Use https://, or pass allow_insecure_http=True if you really mean it."
        )
        raise RequestValidationError(msg)
    if api is not None:
        check_base_url_for_api(base_url, api)
    return base_url


def check_base_url_for_api(base_url: str, api: str) -> None:
    """The checks of a base URL that depend on the way in (``api``).

    * A base URL ending in an endpoint path is refused with the base that way in needs.
    * ``api="anthropic"``: a base URL ending in ``/v1`` is refused: the SDK adds
      ``/v1/messages`` itself, so requests would go to ``.../v1/v1/messages`` (a 404).
    * ``api="openai"`` on Anthropic's own host: a warning, once. Its OpenAI-compatible
      endpoint works but ignores ``cache_control``, so no prompt is ever cached there; the
      native way in (``api="anthropic"``, base URL ``https://api.anthropic.com``) caches.

    Raises:
        RequestValidationError: as above (the message gives the base URL to use).
    """
    parsed = urlparse(base_url)
    path = parsed.path.rstrip("/")
    _refuse_endpoint_path(base_url, parsed.path, api)
    if api == "anthropic" and path.endswith("/v1"):
        root = redact_url(_strip_path_end(base_url, "/v1"))
        msg = (
            f"base_url {redact_url(base_url)!r} ends in /v1, but api='anthropic' adds "
            "/v1/messages itself (requests would go to .../v1/v1/messages and be answered "
            f"404): pass the base without /v1, base_url={root!r}; or, for the relay's "
            "OpenAI-compatible API at that URL, use api='openai'"
        )
        raise RequestValidationError(msg)
    host = (parsed.hostname or "").rstrip(".").lower()
    if api == "openai" and host == ANTHROPIC_HOST:
        warn_once(
            ("anthropic_openai_endpoint",),
            "Anthropic's OpenAI-compatible endpoint ignores cache_control: nothing is cached "
            "there, and every call pays the full input price. Use api='anthropic' (base_url "
            "https://api.anthropic.com, key in ANTHROPIC_API_KEY or api_key=) to have prompts "
            "cached.",
            UserWarning,
        )


def _strip_path_end(url: str, end: str) -> str:
    """``url`` without a trailing ``/`` and then ``end`` at the end of its path (query kept)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith(end):
        path = path[: len(path) - len(end)]
    return parts._replace(path=path).geturl()


def _add_path_end(url: str, end: str) -> str:
    """``url`` with ``end`` added to its path (query kept)."""
    parts = urlsplit(url)
    return parts._replace(path=parts.path.rstrip("/") + end).geturl()


def _refuse_endpoint_path(base_url: str, raw_path: str, api: str | None) -> None:
    """Refuse a base URL ending in an endpoint the SDK adds, saying the base to pass instead."""
    path = raw_path.rstrip("/")
    endpoint = next((e for e in _ENDPOINT_PATHS if path.endswith(e)), None)
    if endpoint is None:
        return
    base = _strip_path_end(base_url, endpoint)  # .../v1 for /chat/completions; the root
    if endpoint == "/v1/messages":
        root, root_v1 = redact_url(base), redact_url(_add_path_end(base, "/v1"))
    else:
        root, root_v1 = redact_url(_strip_path_end(base, "/v1")), redact_url(base)
    if endpoint == "/v1/messages":
        said = f"base_url ends in {endpoint!r}, Anthropic's Messages endpoint, which the SDK adds"
        fixes = {
            "anthropic": f"pass the base without /v1/messages, base_url={root!r}",
            "openai": (
                f"api='openai' speaks the OpenAI chat format: use api='anthropic' with "
                f"base_url={root!r}, or the relay's OpenAI-compatible base, usually ending in "
                f"/v1 (e.g. base_url={root_v1!r})"
            ),
            "": (
                f"for Anthropic's Messages API use api='anthropic' with base_url={root!r}; for "
                "a relay's OpenAI-compatible API (api='openai', the default) pass its base, "
                f"usually ending in /v1 (e.g. base_url={root_v1!r})"
            ),
        }
    else:
        said = f"base_url ends in the endpoint {endpoint!r}, which the SDK adds itself"
        fixes = {
            "openai": f"pass base_url={root_v1!r}",
            "anthropic": (
                f"api='anthropic' posts to /v1/messages itself: pass the base without /v1, "
                f"base_url={root!r}, or use api='openai' with base_url={root_v1!r}"
            ),
            "": (
                f"pass base_url={root_v1!r} (api='openai', the default); with api='anthropic' "
                f"pass the base without /v1, base_url={root!r}"
            ),
        }
    if api in ("bedrock", "vertex"):
        fix = (
            f"api={api!r} builds its own request paths: leave base_url unset for the SDK's "
            "regional endpoint, or pass the endpoint's root"
        )
    else:
        fix = fixes.get(api or "", fixes[""])
    msg = f"{said}: {fix}"
    raise RequestValidationError(msg)


def _refuse_credentials_in(base_url: str, netloc: str, query: str) -> None:
    """Refuse userinfo and credential query parameters in a base URL (see ``check_base_url``)."""
    if "@" in netloc:
        msg = (
            f"base_url {redact_url(base_url)!r} carries credentials before the host "
            "('user:password@'), which would be sent as 'Authorization: Basic ...' instead of "
            "your API key: remove them, and pass the key as api_key=... or a credential header "
            "in default_headers={'Authorization': 'Bearer ...'}"
        )
        raise RequestValidationError(msg)
    names = [
        name
        for name, _ in parse_qsl(query, keep_blank_values=True)
        if is_credential_query_name(name)
    ]
    if names:
        listed = ", ".join(repr(n) for n in dict.fromkeys(names))
        msg = (
            f"base_url {redact_url(base_url)!r} carries a credential in its query string "
            f"({listed}), which would be kept in plain text in model_dump() and pickles: remove "
            "it, and pass the key as api_key=... or as a header in default_headers (e.g. "
            "{'x-api-key': ...}; the relay's documentation names the header it reads)"
        )
        raise RequestValidationError(msg)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names the loopback interface only (``localhost``, ``127.x``, ``::1``).

    >>> is_loopback_host("127.0.0.2"), is_loopback_host("[::1]"), is_loopback_host("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def scrub_error(error: ClaudeRelayError, secret: str | None) -> ClaudeRelayError:
    """Replace ``secret`` by ``***`` in an error's arguments and body excerpt, in place.

    Args:
        error: the error.
        secret: the API key (nothing is done when it is empty, or shorter than any real key:
            a test key such as ``"k"`` would write ``***`` all over the message).

    Returns:
        The same error.
    """
    if not secret or len(secret) < _MIN_HIDDEN:
        return error
    if any(isinstance(a, str) and secret in a for a in error.args):
        error.args = tuple(
            a.replace(secret, REDACTED) if isinstance(a, str) else a for a in error.args
        )
    if isinstance(error, APIStatusError | APIResponseError) and secret in error.body_excerpt:
        error.body_excerpt = error.body_excerpt.replace(secret, REDACTED)
    return error


def _tls_contexts(client: Any) -> list[ssl.SSLContext]:
    """The SSL contexts an ``httpx``/``httpx2`` client's transports will use, where readable."""
    transports = [getattr(client, "_transport", None)]
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, Mapping):
        transports.extend(mounts.values())
    contexts = []
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        for holder in (transport, pool):
            for name in ("_ssl_context", "_proxy_ssl_context"):
                context = getattr(holder, name, None)
                if isinstance(context, ssl.SSLContext):
                    contexts.append(context)
    return contexts


def client_skips_tls_verification(client: Any) -> bool:
    """Say whether an HTTP client is known not to verify TLS certificates or host names.

    Reads the SSL contexts of ``httpx``/``httpx2`` clients (``verify=False``, or a context with
    ``CERT_NONE`` or without host-name checking). A client whose settings cannot be read is not
    known to skip verification.

    Args:
        client: the client (``None``: the SDK's own client, which verifies).

    Returns:
        ``True`` if some transport of the client does not verify.
    """
    if client is None:
        return False
    contexts = _tls_contexts(client)
    return any(c.verify_mode == ssl.CERT_NONE or not c.check_hostname for c in contexts)


def warn_if_unverified(base_url: str, *clients: Any) -> None:
    """Warn (``InsecureTransportWarning``) if an https relay's client skips TLS verification."""
    if urlparse(base_url).scheme != "https":
        return  # plain http (loopback or explicitly allowed): there is no TLS to verify
    if any(client_skips_tls_verification(c) for c in clients):
        warn_external(
            "the http_client given to ChatClaudeRelay does not verify TLS certificates "
            "(verify=False, CERT_NONE or check_hostname=False): anyone on the network path can "
            "impersonate the relay and read your API key and prompts. Pass a client that "
            "verifies (point verify= at your CA bundle for a private CA).",
            InsecureTransportWarning,
        )


def chain_mentions(exc: BaseException, secret: str) -> bool:
    """Whether ``secret`` appears in the message or arguments of ``exc`` or its chain."""
    if not secret:
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            text = f"{current}{current.args!r}{getattr(current, 'body', '')!r}"
        except Exception:  # a broken __str__: assume the worst
            return True
        if secret in text:
            return True
        current = current.__cause__ or current.__context__
    return False
