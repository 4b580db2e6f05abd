"""The HTTP side: where ackd listens, who may post webhooks and call the API, the links'
secret, and the webhook's limits."""

from __future__ import annotations

from receiver.config.build.builder import Builder
from receiver.config.model import WebhookAuth
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.access import Principal, PrincipalKind, Scope
from receiver.core.limits import WebhookLimits


def listen(b: Builder) -> tuple[str, int] | None:
    text = b.spec.listen
    return b.attempt(("listen",), lambda: parse_listen(text))


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        raise ValueError(f"listen must be HOST:PORT, got {text!r}")
    if not 0 < int(port) < 65536:
        # 127.0.0.1:99999 is HOST:PORT to whoever wrote it: say what is wrong with it.
        raise ValueError(f"listen must be HOST:PORT with a port from 1 to 65535, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def webhook_auth(b: Builder) -> WebhookAuth:
    webhook = b.spec.webhook
    return WebhookAuth(
        bearer_token=b.secret(("webhook",), "bearer_token", webhook.bearer_token,
                              webhook.bearer_token_file),
        basic_username=webhook.basic_auth.username if webhook.basic_auth else None,
        basic_password=_basic_password(b),
    )


def _basic_password(b: Builder) -> str | None:
    basic = b.spec.webhook.basic_auth
    if basic is None:
        return None
    password = b.secret(("webhook", "basic_auth"), "password", basic.password,
                        basic.password_file)
    if password is None:
        b.fail(("webhook", "basic_auth"), "needs password or password_file")
    return password


def api_tokens(b: Builder) -> dict[str, Principal]:
    """Every API token -> who it acts as: the users' own, then the scripts' named ones."""
    tokens: dict[str, Principal] = {}
    users = {u.name for u in b.spec.users}
    for i, user in enumerate(b.spec.users):
        value = b.secret(("users", i), "token", user.token, user.token_file)
        if value is not None:
            _add_token(b, tokens, ("users", i), value,
                       Principal(user.name, Scope(user.scope), PrincipalKind.USER))
    for i, token in enumerate(b.spec.api.tokens):
        value = b.secret(("api", "tokens", i), "token", token.token, token.token_file)
        if value is None:
            b.fail(("api", "tokens", i), "needs token or token_file")
            continue
        if token.name in users:
            # The timeline names the actor: a script must not pass for a person.
            b.fail(("api", "tokens", i, "name"),
                   f"{token.name!r} is a user's name; give the script its own")
            continue
        _add_token(b, tokens, ("api", "tokens", i), value,
                   Principal(token.name, Scope(token.scope), PrincipalKind.TOKEN))
    return tokens


def _add_token(
    b: Builder, tokens: dict[str, Principal], at: KeyPath, value: str, principal: Principal
) -> None:
    if not value:
        b.fail((*at, "token"), "is empty")
    elif value in tokens:
        b.fail(at, f"the same token is given twice (also {tokens[value].describe()})")
    else:
        tokens[value] = principal


def link_secret(b: Builder) -> str | None:
    links = b.spec.links
    return b.secret(("links",), "secret", links.secret, links.secret_file)


def webhook_limits(b: Builder) -> WebhookLimits:
    webhook = b.spec.webhook
    return WebhookLimits(webhook.max_alerts, webhook.max_labels, webhook.max_groups)
