"""Outgoing notifications: the Notifier interface, and its Apprise adapter.

Everything above this module speaks `Notifier`: send one Message to one Apprise URL and get a
Delivery back, never an exception. The Apprise adapter runs Apprise's blocking code on a
bounded worker pool of our own with a per-delivery timeout, so a hung endpoint never holds up
the event loop, the webhook endpoint, the timer loop or other deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from receiver.core.frozen import frozen

if TYPE_CHECKING:
    from apprise import AppriseAsset, AppriseResult, NotifyLogEntry



@frozen
class NotificationSettings:
    workers: int = 8
    timeout: timedelta = timedelta(seconds=10)
    retry_attempts: int = 3
    retry_backoff: timedelta = timedelta(seconds=2)
    retry_max_backoff: timedelta = timedelta(minutes=1)
    bundle_window: timedelta = timedelta(seconds=30)
    rate_limit: int = 10
    rate_window: timedelta = timedelta(minutes=10)
    templates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    max_hold: timedelta = timedelta(seconds=5)  # the longest a high-urgency page waits to bundle


class NotifyType(StrEnum):
    """Apprise's notify types: how a message is coloured and iconised where the service can."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@frozen(slots=True)
class Message:
    title: str
    body: str
    notify_type: NotifyType = NotifyType.INFO


class DeliveryStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"


@frozen(slots=True)
class Delivery:
    """The outcome of one attempt to deliver one message to one URL."""

    status: DeliveryStatus
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is DeliveryStatus.SUCCESS


class Notifier(Protocol):
    async def send(self, url: str, message: Message) -> Delivery:
        """Deliver `message` to `url`. Never raises for a failed delivery: it reports it."""
        ...

    async def close(self) -> None:
        """Stop taking deliveries and release the worker pool."""
        ...


# -- Apprise URLs: validation, masking ------------------------------------------------------

_SCHEME = re.compile(r"\s*([a-z0-9]{1,32})://", re.IGNORECASE)
# Apprise's privacy form hides passwords and tokens but prints custom headers (+Name=value)
# and extra GET parameters (-name=value) as given, and those often carry credentials.
_VERBATIM_PARAMS = re.compile(r"([?&](?:%2B|\+|-)[^=&#]*=)[^&#]*")
# Pieces of a URL that Apprise chose to hide are scrubbed from its error text by this split.
_URL_PIECES = re.compile(r"[:/@?&=#,;+\s]+")
_MIN_SECRET_CHARS = 3


def scheme(url: str) -> str:
    """The URL's scheme in lower case (a bounded metric label), or "unknown"."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else "unknown"


@functools.lru_cache(maxsize=4096)
def channel_kind(url: str) -> str:
    """The channel kind for metric labels: the URL's scheme (slack, mailtos, json...), except
    for a service's own https:// webhook URL (Slack's, a Teams workflow's), which Apprise
    takes as it is: then the service's scheme, so `https` does not lump them together. Cached
    like `mask`: the URLs come from config."""
    kind = scheme(url)
    if kind not in ("http", "https"):
        return kind
    plugin = _instantiate(url)
    names = plugin and (plugin.secure_protocol or plugin.protocol)
    if isinstance(names, tuple | list):
        names = names[0] if names else None
    return str(names).lower() if names else kind


class _HeldPerThread(logging.Filter):
    """Holds Apprise's records from a thread inside `holding()`; other threads log as ever.
    Checking a config's URL: its "ERROR apprise: Unparseable URL ..." came before
    check-config's own line, which names the file, line and key, so a URL found unusable
    drops them and a usable one lets them out afterwards (a warning about a URL that works is
    Apprise's to give). A delivery: its caller's one line for the attempt carries Apprise's
    reason, so a failed delivery's records go out at DEBUG (`_let_out`)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        held: list[logging.LogRecord] | None = getattr(self.held, "records", None)
        if held is None:
            return True
        held.append(record)
        return False

    @contextlib.contextmanager
    def holding(self) -> Iterator[list[logging.LogRecord]]:
        records: list[logging.LogRecord] = []
        self.held.records = records
        try:
            yield records
        finally:
            self.held.records = None


_APPRISE_LOG = logging.getLogger("apprise")
_HELD = _HeldPerThread()
_APPRISE_LOG.addFilter(_HELD)


def validate_url(url: str) -> str | None:
    """None if Apprise can send to `url`, else a short reason that never quotes the URL."""
    with _HELD.holding() as records:
        plugin = _learn_secrets(url)
    if plugin is not None:
        for record in records:
            _APPRISE_LOG.handle(record)
        return None
    match = _SCHEME.match(url)
    if match is None:
        return "Apprise cannot use this URL: it has no scheme (expected scheme://...)"
    name = match.group(1).lower()
    plugins = _plugins()
    if name not in plugins:
        return f"Apprise cannot use this URL: unknown scheme {name!r}"
    service = plugins[name].service_name
    return f"Apprise cannot use this URL: {service} rejected its host, path or parameters"


# Ten 160-character segments: the longest text SMS gateways join into one message (Twilio's
# limit). Apprise gives SMS plugins a body limit up to this (160 mostly; SMSEagle 1200).
_SMS_MAXLEN = 1600


@functools.lru_cache(maxsize=4096)
def sms_limit(url: str) -> int | None:
    """The most characters Apprise sends to `url` in one message when `url` is a text
    message to a phone (SMS), else None. Decided from Apprise's own metadata for the plugin
    as built for this URL (Twilio, Amazon SNS and Notifyre send SMS or another kind by the
    URL's form): it addresses phone numbers (a `target_phone...` template token), it sends
    no title (title_maxlen 0: Apprise folds the title into the body) and its body_maxlen is
    at most ten SMS segments. WhatsApp's plugins answer to this too: a contact that sets
    `short: false` says which it wants. Cached like `mask`: the URLs come from config."""
    plugin = _learn_secrets(url)
    if plugin is None:
        return None
    tokens = getattr(plugin, "template_tokens", None) or {}
    if not any(str(name).startswith("target_phone") for name in tokens):
        return None
    try:
        title, body = int(plugin.title_maxlen), int(plugin.body_maxlen)
    except (TypeError, ValueError):
        return None
    return body if title == 0 and 0 < body <= _SMS_MAXLEN else None


@functools.lru_cache(maxsize=4096)
def mask(url: str) -> str:
    """`url` with its credentials hidden, safe for logs, API output and the timeline.
    Cached: masking builds an Apprise plugin (about 0.5 ms), and the same few URLs are masked
    for every delivery; the URLs come from config, so the cache stays small."""
    plugin = _learn_secrets(url)
    if plugin is None:
        return f"{scheme(url)}://***"
    return _masked(plugin)


def _masked(plugin: Any) -> str:
    return _VERBATIM_PARAMS.sub(r"\1***", str(plugin.url(privacy=True)))


def _instantiate(
    url: str, asset: AppriseAsset | None = None, socket_timeout: float | None = None
) -> Any:
    """Apprise's plugin for `url`, or None. `socket_timeout` fills in cto/rto the URL omits;
    without `asset`, Apprise's default one."""
    _load_apprise()
    from apprise import Apprise, AppriseAsset
    from apprise.plugins import url_to_dict

    # Apprise ships py.typed but leaves this one untyped; pin the signature we rely on.
    to_dict: Callable[..., dict[str, Any] | None] = url_to_dict
    try:
        results = to_dict(url, secure_logging=True)
        if results is None:
            return None
        if socket_timeout is not None:
            for key in ("cto", "rto"):
                results.setdefault(key, str(socket_timeout))
        return Apprise.instantiate(results, asset=AppriseAsset() if asset is None else asset)
    except Exception:  # a plugin that crashes on this URL cannot use it
        return None


def _scrub(text: str, url: str, masked: str) -> str:
    """`text` without any piece of `url` that Apprise's privacy form hides."""
    for piece in _hidden_pieces(url, masked):
        text = text.replace(piece, "***")
    return text


def _hidden_pieces(url: str, masked: str) -> list[str]:
    """The pieces of `url` its masked form hides, longest first."""
    shown = unquote(masked)
    pieces = {p for p in _URL_PIECES.split(unquote(url)) if len(p) >= _MIN_SECRET_CHARS}
    return sorted(pieces - {p for p in pieces if p in shown}, key=len, reverse=True)


# -- what Apprise and the HTTP library below it log ---------------------------------------

class _SecretsFilter(logging.Filter):
    """Masks the secret pieces of every Apprise URL ackd has seen in the log records of
    Apprise and urllib3. At DEBUG, Apprise prints the URL it posts to (a Slack webhook's
    tokens are its path), the URL it loaded with `+header` and `-param` values as given, and
    urllib3 prints each request's path and query. A filter on those loggers runs in the
    thread that logs, before any handler (ours, or Apprise's own capture of a send's logs)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._held: list[frozenset[str]] = []
        self._pieces: tuple[str, ...] = ()  # what filter() masks: known and held, longest first

    def learn(self, pieces: Iterable[str]) -> None:
        with self._lock:
            self._known.update(_with_quoted(pieces))
            self._publish()

    @contextlib.contextmanager
    def holding(self, pieces: Iterable[str]) -> Iterator[None]:
        """Mask `pieces` too while the block runs (Apprise logs while it parses a URL, before
        we know which of its pieces are secret)."""
        held = frozenset(_with_quoted(pieces))
        with self._lock:
            self._held.append(held)
            self._publish()
        try:
            yield
        finally:
            with self._lock:
                self._held.remove(held)
                self._publish()

    def _publish(self) -> None:
        every = self._known.union(*self._held)
        # Longest first, so a secret is masked whole before any shorter piece inside it.
        self._pieces = tuple(sorted(every, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        pieces = self._pieces
        if not pieces:
            return True
        text = masked = record.getMessage()
        for piece in pieces:
            if piece in masked:
                masked = masked.replace(piece, "***")
        if masked is not text:
            record.msg, record.args = masked, ()
        return True


def _with_quoted(pieces: Iterable[str]) -> set[str]:
    return {form for piece in pieces for form in (piece, quote(piece, safe=""))}


_SECRETS = _SecretsFilter()


# -- Apprise, loaded on first use ------------------------------------------------------------

_loading = threading.Lock()
_loaded = False


def _load_apprise() -> None:
    """Import Apprise and all its plugins, once, before anything here touches it.

    Not on this module's import: Apprise with its 130 plugins (requests, urllib3, oauthlib...)
    is most of a second of CPU, which the commands that check no URL (`ackd ack 12`, a
    config without contacts) need not pay; the config loader reaches it at its first contact,
    the daemon when it makes its AppriseNotifier, before any worker thread exists. Apprise
    would import its plugins on first use from whichever thread gets there first: here it is
    under a lock, with the warning filters changed, which the e-mail plugin needs (it pulls
    in the stdlib's deprecated imghdr, whose DeprecationWarning says nothing about our code).
    Then the secrets filter goes on the loggers Apprise and urllib3 brought."""
    global _loaded
    if _loaded:
        return
    with _loading:
        if _loaded:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _manager().load_modules()
        # Apprise logs through one logger; urllib3 through one per module, none through its
        # parent.
        for name in ("apprise", *(n for n in list(logging.root.manager.loggerDict)
                                  if n == "urllib3" or n.startswith("urllib3."))):
            logging.getLogger(name).addFilter(_SECRETS)
        _loaded = True


def _plugins() -> Any:
    """Apprise's plugins by scheme, all loaded."""
    _load_apprise()
    return _manager()


def _manager() -> Any:
    """Apprise's NotificationManager (a singleton), which Apprise leaves untyped."""
    from apprise import NotificationManager

    manager: Callable[[], Any] = NotificationManager
    return manager()


@functools.lru_cache(maxsize=4096)
def learn_secrets(url: str) -> None:
    """From now on, the pieces of `url` that its masked form hides never reach a log line.
    Every URL ackd validates, masks or sends to passes here first. Cached: once is enough."""
    _learn_secrets(url)


def _learn_secrets(url: str) -> Any:
    """learn_secrets, returning the Apprise plugin for `url` (or None) it built to learn them:
    validate_url and mask need that very plugin, and building it again cost each contact a
    second parse of its URL at every config load (about 0.5 ms a contact)."""
    with _SECRETS.holding(_hidden_pieces(url, f"{scheme(url)}://")):
        plugin = _instantiate(url)
        masked = _masked(plugin) if plugin is not None else f"{scheme(url)}://***"
        _SECRETS.learn(_hidden_pieces(url, masked))
    return plugin


# -- the Apprise adapter ---------------------------------------------------------------------

# Apprise's own socket timeouts sit a little beyond ours, so our deadline reports TIMEOUT
# first and the stuck worker is released soon after instead of after Apprise's defaults.
_SOCKET_TIMEOUT_FACTOR = 1.25


class AppriseNotifier:
    """Delivers through Apprise on a bounded thread pool of our own, one URL per call.

    Apprise's `notify()` blocks, and `async_notify()` borrows a process-wide pool that hung
    endpoints can fill. Here each delivery runs Apprise inline (no Apprise service timeout,
    no Apprise pool) on one of our `workers` threads, bounded by `timeout`. A timed-out
    worker may stay blocked in a socket call; the cto/rto we add to URLs that do not set
    them release it shortly after, so hung endpoints cannot starve the pool for long.
    """

    def __init__(self, workers: int, timeout: timedelta) -> None:
        if workers < 1:
            raise ValueError(f"notification workers must be at least 1, got {workers}")
        if timeout <= timedelta(0):
            raise ValueError(f"notification timeout must be positive, got {timeout}")
        self._timeout = timeout.total_seconds()
        self._socket_timeout = round(self._timeout * _SOCKET_TIMEOUT_FACTOR, 3)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ackd-notify")
        _load_apprise()  # here, on the daemon's thread, not in the first worker that sends
        from apprise import AppriseAsset

        self._asset = AppriseAsset(service_timeout=0, async_mode=False)
        self._closed = False

    async def send(self, url: str, message: Message) -> Delivery:
        started = time.monotonic()
        if self._closed:
            return Delivery(DeliveryStatus.FAILURE, 0.0, "the notifier is closed")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, self._deliver, url, message)
            status, error = await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            # The worker's late result, if one ever comes, is dropped with the future.
            status, error = DeliveryStatus.TIMEOUT, f"no answer within {self._timeout:g}s"
        except RuntimeError:
            # The pool was shut down between the check above and the submit.
            status, error = DeliveryStatus.FAILURE, "the notifier is closed"
        # Not logged here: the caller's line names what the delivery was for (the incident,
        # the person, the attempt), which a second line from here could not.
        return Delivery(status, time.monotonic() - started, error)

    async def close(self) -> None:
        """Stop taking deliveries; queued ones are cancelled, hung workers are not awaited."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _deliver(self, url: str, message: Message) -> tuple[DeliveryStatus, str]:
        """One blocking Apprise delivery, on a worker thread."""
        from apprise import Apprise, NotifyFormat  # loaded since __init__
        from apprise import NotifyType as AppriseNotifyType

        learn_secrets(url)
        plugin = _instantiate(url, self._asset, self._socket_timeout)
        if plugin is None:
            return DeliveryStatus.FAILURE, f"Apprise cannot use this URL ({scheme(url)}://)"
        # Apprise logs a failure as a WARNING of its own, and the dispatcher's line for the
        # attempt carries Apprise's reason (`_outcome`): held here, they would say it twice.
        with _HELD.holding() as records:
            try:
                apprise = Apprise(asset=self._asset)
                apprise.add(plugin)
                with apprise.notify(
                    body=message.body,
                    title=message.title,
                    notify_type=AppriseNotifyType(message.notify_type.value),
                    body_format=NotifyFormat.TEXT,
                ) as result:
                    status, error = _outcome(result, _last_held_problem(records))
            except Exception as exc:  # a crashing plugin is a failed delivery
                status, error = DeliveryStatus.FAILURE, f"{type(exc).__name__}: {exc}"
        _let_out(records, failed=status is not DeliveryStatus.SUCCESS)
        return status, _scrub(error, url, _masked(plugin))


def _let_out(records: list[logging.LogRecord], *, failed: bool) -> None:
    """Apprise's log lines of one delivery, held while it ran: as they were, except that a
    failed delivery's warnings and errors go at DEBUG, for whoever wants Apprise's detail.
    The caller's one line for the attempt says why it failed (`_outcome` takes Apprise's
    last problem); three WARNING lines for one refused POST buried the one that mattered.
    They pass the secrets filter now, as they go out (handle() runs the filters again)."""
    for record in records:
        if failed and record.levelno >= logging.WARNING:
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        if _APPRISE_LOG.isEnabledFor(record.levelno):
            _APPRISE_LOG.handle(record)


def _outcome(result: AppriseResult, held: str = "") -> tuple[DeliveryStatus, str]:
    """Our status for the one URL in `result`, with Apprise's reason when it failed: from
    the logs Apprise captured for it, or else `held`, the last problem Apprise logged while
    its lines were held (its capture sits behind the hold and sees none of them)."""
    from apprise import AppriseResultStatus  # loaded: `result` is Apprise's

    services = list(result)
    if not services:
        reason = (_last_problem(result.call_logs()) or held
                  or f"status {result.status.name}")
        return DeliveryStatus.FAILURE, f"Apprise did not send: {reason}"
    service = services[0]
    if service.status == AppriseResultStatus.SUCCESS:
        return DeliveryStatus.SUCCESS, ""
    if service.status == AppriseResultStatus.TIMEOUT:
        return DeliveryStatus.TIMEOUT, f"{service.name}: Apprise stopped waiting"
    reason = _last_problem(service.logs()) or held or "reported failure"
    return DeliveryStatus.FAILURE, f"{service.name}: {reason}"


def _last_held_problem(records: list[logging.LogRecord]) -> str:
    problems = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    return problems[-1] if problems else ""


def _last_problem(entries: Iterable[NotifyLogEntry]) -> str:
    problems = [e.message for e in entries if e.level in ("WARNING", "ERROR", "CRITICAL")]
    return problems[-1] if problems else ""
