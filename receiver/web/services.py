"""What the handlers reach: built by the daemon, stored on the aiohttp application, told of
each new config by the coordinator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from receiver.config.coordinator import Reloaded
from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.errors import ConfigError
from receiver.incidents.service import Incidents
from receiver.notify.links import Links
from receiver.store import Store
from receiver.telemetry.metrics import Metrics
from receiver.web.auth import FailureThrottle

if TYPE_CHECKING:
    from receiver.escalation.responder import Responder
    from receiver.heartbeats.service import Heartbeats
    from receiver.incidents.desk import IncidentDesk
    from receiver.maintenance.service import Maintenance
    from receiver.oncall.service import OnCallService


@dataclass
class Services:
    config: Config
    store: Store
    incidents: Incidents
    metrics: Metrics
    clock: Clock
    responder: Responder | None = None
    links: Links | None = None
    oncall: OnCallService | None = None
    desk: IncidentDesk | None = None  # roles, notes (the incident layer)
    # Reloads the config file ackd started with: what it changed and found, or the
    # ConfigError that refused it.
    reload: Callable[[], ConfigError | Reloaded] | None = None
    # The last reload that took (GET /-/reload): its checks as they stand now.
    last_reload: Callable[[], Reloaded | None] | None = None
    heartbeats: Heartbeats | None = None
    maintenance: Maintenance | None = None
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    ready: bool = False
    draining: bool = False

    def use_config(self, config: Config) -> None:
        """A new config (a reload): handlers see it, and links are signed with its secret."""
        self.config = config
        self.links = links_for(config)


def links_for(config: Config) -> Links:
    return Links(config.link_secret, config.external_url, config.link_ttl)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
