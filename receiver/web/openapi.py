"""The OpenAPI 3.1 document of every route ackd serves, as data, at /api/v1/openapi.json.

Written by hand, beside the handlers it describes: tests/test_openapi.py holds it equal to the
routes registered on the application (a route added without its entry here fails there, and
the other way round) and checks it against the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from receiver.core.model import Action
from receiver.web.responses import ok

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: Schema | None = None, media: str = JSON) -> Schema:
    body: Schema = {"description": description}
    if schema is not None:
        body["content"] = {media: {"schema": schema}}
    return body


def _error(description: str) -> Schema:
    return _answer(description, _ref("Error"))


def _path(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _listed(words: Iterable[str], last: str) -> str:
    """`a, b, c or d` (`last` "or") or `a, b and c` ("and"), as the summaries write a list."""
    *rest, final = words
    return f"{', '.join(rest)} {last} {final}" if rest else final


def _body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _op(summary: str, responses: dict[str, Schema], *, tag: str, scope: str | None = None,
        parameters: list[Schema] | None = None, body: Schema | None = None) -> Schema:
    operation: Schema = {"summary": summary, "tags": [tag], "responses": responses}
    if scope is not None:
        operation["description"] = f"Needs an API token of scope `{scope}` (or wider)."
        operation["security"] = [{"bearer": []}]
        operation["responses"] = {
            **responses, "401": _error("no or a wrong token"),
            "403": _error("the token lacks the scope; `scope` names the one needed"),
        }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


ID = _path("id", "the incident's number", {"type": "integer", "minimum": 0})
NOT_FOUND = _error("no such incident (`field: id`)")
BAD = _error("a malformed request; `field` names what is wrong")
CONFLICT = _error("the incident's state does not allow it (`field: state`)")
HTML = _answer("an HTML page", {"type": "string"}, "text/html")
SEE_OTHER = _answer("redirect to the page to show next")
ROLE = _path("role", "commander, tech_lead, comms_lead or scribe",
             {"type": "string", "enum": ["commander", "tech_lead", "comms_lead", "scribe"]})
SCHEDULE = _path("name", "a schedule of the config")
TEAM = _path("name", "a team of the config")
WEEKS = _query("weeks", "how many weeks of shifts (1-52, default 4)",
               {"type": "integer", "minimum": 1, "maximum": 52})
ICS = _answer("an iCalendar file", {"type": "string"}, "text/calendar")
FEED = _answer("the feed's address", {"type": "object", "properties": {
    "url": {"type": "string", "description": "`{external_url}/feeds/{token}.ics`"}}})

# A step as the reports name it (incidents.facts.StepFired.name): the policy's own steps from
# "1", and "reassigned" for the person an incident was reassigned to, paged ahead of them.
STEP: Schema = {"type": "string", "pattern": "^([1-9][0-9]*|reassigned)$",
                "description": "the policy's step from \"1\", or \"reassigned\" for the person"
                               " the incident was reassigned to, paged ahead of the policy"}

# Where a config file is at fault or worth a look: a refusal's problems, a reload's warnings.
_LOCATED: Schema = {
    "file": {"type": "string"},
    "line": {"type": ["integer", "null"], "description": "null where no line says it"},
    "key": {"type": "string", "description": "the key's path (`route.policy`,"
            " `teams[0].name`), or in brackets what no key names: `(file)`, `(secrets)`,"
            " `(open incidents)`"},
    "message": {"type": "string"},
}

SCHEMAS: dict[str, Schema] = {
    "ReloadRefused": {
        "type": "object", "additionalProperties": False, "required": ["error", "problems"],
        "properties": {
            "error": {"const": "reload refused, the running config is kept"},
            "problems": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "required": ["file", "line", "key", "message"], "properties": _LOCATED}},
        },
    },
    "Reloaded": {
        "type": "object", "additionalProperties": False,
        "required": ["status", "changed", "config_hash", "warnings", "file_checks",
                     "open_incidents"],
        "properties": {
            "status": {"type": "string", "enum": ["reloaded", "started"],
                       "description": "`started` (GET only, before any reload took): the"
                       " start's checks of the config ackd started with, `changed` false"},
            "changed": {"type": "boolean", "description": "the file, the variables it reads"
                        " or its `*_file`s changed: the hashes differ"},
            "config_hash": {
                "type": "object", "additionalProperties": False,
                "required": ["before", "after"],
                "description": "the running config's hash (hex SHA-256, keyed by the link"
                               " secret) before and after; `ackd_config_hash` shows its"
                               " first 48 bits",
                "properties": {"before": {"type": "string"}, "after": {"type": "string"}},
            },
            "warnings": {"type": "array", "description": "what the file took with is worth a"
                         " look, each also logged as a WARNING", "items": {
                             "type": "object", "additionalProperties": False,
                             "required": ["file", "line", "key", "message", "kind"],
                             "properties": {
                                 **_LOCATED,
                                 "kind": {"type": "string", "enum": [
                                     "unrouted_team", "coverage_gap", "sms_not_short",
                                     "template_step_number", "unchecked",
                                     "config_regrouped", "config_unreached",
                                     "config_contact_lost", "config_message_lost",
                                     "config_queued_lost"],
                                     "description": "the log line's `event`: the file's own"
                                     " (as `ackd check-config` warns), or what it does to"
                                     " the open incidents (config_*)"},
                                 "incidents": {"type": "array", "items": {"type": "integer"},
                                               "maxItems": 1000,
                                               "description": "the incidents it is"
                                               " about (open ones, but for a queued"
                                               " notification's), the first 1,000"},
                                 "incident_count": {"type": "integer",
                                                    "description": "how many in all"},
                             }}},
            "file_checks": {
                "type": "object", "additionalProperties": False, "required": ["status"],
                "description": "the file's own checks (check-config's warnings): `checked`"
                               " (its warnings are in `warnings`), `running` (past the"
                               " answer's 5 s: its warnings go to the log, GET /-/reload"
                               " and `ackd_config_warnings` once done)",
                "properties": {
                    "status": {"type": "string", "enum": ["checked", "running"]},
                    "message": {"type": "string"},
                },
            },
            "open_incidents": {
                "type": "object", "additionalProperties": False, "required": ["status"],
                "description": "the look at what the new config does to the open incidents:"
                               " `checked` (its warnings are in `warnings`), `running` (past"
                               " the answer's 5 s, or behind an earlier reload's or the"
                               " start's look: its warnings go to the log, GET /-/reload and"
                               " `ackd_config_warnings` once done), `failed` (the log says"
                               " why), `unchanged` (the file is the running config and no"
                               " look of it is known: nothing swapped in, the open incidents"
                               " not looked at; `warnings` holds the file's own; else the"
                               " look of the reload that swapped it in, or of the start, is"
                               " this one's), `superseded` (a later reload swapped in"
                               " another config before this look ended), `skipped` (the"
                               " start did not look, `message` says why: more open incidents"
                               " than it looks at; the next reload looks)",
                "properties": {
                    "status": {"type": "string", "enum": [
                        "checked", "running", "failed", "unchanged", "superseded",
                        "skipped"]},
                    "message": {"type": "string"},
                },
            },
            "at": {"type": "string", "format": "date-time",
                   "description": "GET only: when the reload was asked (`started`: when"
                   " ackd started)"},
        },
    },
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "the field, header or parameter at fault"},
            "scope": {"type": "string", "description": "403: the scope the request needs"},
        },
    },
    "Incident": {
        "type": "object", "additionalProperties": True,
        "required": ["id", "team", "severity", "state", "opened_at"],
        "properties": {
            "id": {"type": "integer"}, "team": {"type": "string"},
            "severity": {"type": "string"},
            "state": {"type": "string", "enum": ["triggered", "acknowledged", "resolved"]},
            "summary": {"type": "string"}, "opened_at": {"type": "string"},
            "detection": {"type": "string", "enum": ["detected", "reported", "drill"]},
            "acknowledged_by": {"type": ["string", "null"],
                                "description": "who holds it: the last acknowledgement or"
                                               " takeover; null while triggered (again,"
                                               " after an unack: nobody holds it), and"
                                               " once resolved while triggered (resolved"
                                               " unacknowledged). The first, MTTA's, is on"
                                               " the timeline"},
            "acknowledged_at": {"type": ["string", "null"],
                                "description": "since when acknowledged_by holds it"},
            "resolved_by": {"type": ["string", "null"]},
        },
    },
    "IncidentDetail": {
        "allOf": [_ref("Incident"), {
            "type": "object",
            "properties": {
                "alerts": {"type": "array", "items": {"type": "object"}},
                "roles": _ref("Roles"),
                "timeline": {"type": "array", "items": _ref("Event")},
                "escalation": {
                    "type": "object",
                    "required": ["exhausted_at", "paged", "deferred_until", "held",
                                 "held_step", "held_cycle"],
                    "description": "exhausted_at: when the escalation ran out (every step"
                                   " and repeat paged, nobody acknowledged), while that"
                                   " stands; paged: whom it paged. deferred_until: while a"
                                   " low-urgency escalation waits for the team's working"
                                   " hours, when they begin; held: what waits (start: the"
                                   " run's first page; step: held_step of held_cycle, 0 the"
                                   " first pass; end: the end of the last step's wait)",
                    "properties": {
                        "exhausted_at": {"type": ["string", "null"]},
                        "paged": {"type": "array", "items": {"type": "string"}},
                        "deferred_until": {"type": ["string", "null"]},
                        "held": {"enum": ["start", "step", "end", None]},
                        "held_step": {"type": ["integer", "null"], "minimum": 1},
                        "held_cycle": {"type": ["integer", "null"], "minimum": 0},
                    },
                },
            },
        }],
    },
    "Roles": {
        "type": "object",
        "description": "the roles held now, by role",
        "additionalProperties": {
            "type": "object",
            "properties": {"user": {"type": "string"}, "since": {"type": "string"},
                           "by": {"type": "string"}},
        },
    },
    "Event": {
        "type": "object", "required": ["at", "kind", "actor", "detail"],
        "properties": {"at": {"type": "string"}, "kind": {"type": "string"},
                       "actor": {"type": "string"}, "detail": {"type": "object"}},
    },
    "Override": {"type": "object", "additionalProperties": True},
    "DrillReport": {
        "type": "object",
        "required": ["incident", "team", "severity", "policy", "state", "started_at", "steps",
                     "reached", "unreached", "acknowledged_by", "acknowledged_after_seconds",
                     "paged",
                     "answered"],
        "properties": {
            "incident": {"type": "integer"}, "team": {"type": "string"},
            "severity": {"type": "string"}, "policy": {"type": "string"},
            "state": {"type": "string", "enum": ["triggered", "acknowledged", "resolved"]},
            "started_at": {"type": "string"},
            "steps": {"type": "array", "description": "the steps fired, in order", "items": {
                "type": "object", "required": ["after_seconds", "step", "paged"],
                "properties": {"after_seconds": {"type": "number"}, "step": STEP,
                               "paged": {"type": "array", "items": {"type": "string"}}},
            }},
            "reached": {"type": "array", "description": "every message sent or failed",
                        "items": {
                "type": "object",
                "required": ["after_seconds", "step", "recipient", "channel", "reason",
                             "delivered"],
                "properties": {
                    "after_seconds": {"type": "number"},
                    "step": {"anyOf": [STEP, {"type": "null"}],
                             "description": "null: a message outside the steps (a note)"},
                    "recipient": {"type": "string"},
                    "channel": {"type": "string", "description": "the URL's scheme"},
                    "reason": {"type": "string"}, "delivered": {"type": "boolean"},
                    "error": {"type": "string"},
                },
            }},
            "unreached": {"type": "array", "description": "each step that reached nobody: it"
                          " paged nobody, or every page it sent failed", "items": {
                "type": "object", "required": ["after_seconds", "step", "why", "failed"],
                "properties": {
                    "after_seconds": {"type": "number"}, "step": STEP,
                    "why": {"type": "string", "description": "as the incident's log says it"},
                    "failed": {"type": "array", "items": {"type": "string"},
                               "description": "whose every page failed; empty when the"
                                              " step paged nobody"},
                },
            }},
            "acknowledged_by": {"type": ["string", "null"]},
            "acknowledged_after_seconds": {"type": ["number", "null"]},
            "paged": {"type": "array", "items": {"type": "string"},
                      "description": "everyone the drill paged by its acknowledgement"},
            "answered": {"type": "boolean", "description":
                         "someone the drill paged acknowledged it: false when nobody did, "
                         "and when whoever acknowledged was never paged by it"},
        },
    },
}

ROUTES: dict[str, dict[str, Schema]] = {
    "/api/v1/openapi.json": {
        "get": _op("this document", {"200": _answer("the OpenAPI document", {"type": "object"})},
                   tag="meta"),
    },
    "/api/v1/alerts": {
        "post": {
            **_op("Alertmanager's webhook (v4) or Grafana's (v1)", {
                "200": _answer("committed", {"type": "object"}),
                "400": BAD, "401": _error("bad credentials"),
                "413": _error("the body is too large"),
                "415": _error("an unknown Content-Encoding"),
                "503": _error("not ready or the store is in trouble: retry"),
            }, tag="alerts", body=_body({"type": "object"})),
            "description": "Bearer token and/or basic auth, as `webhook:` configures.",
        },
    },
    "/api/v1/incidents": {
        "post": _op("declare an incident no alert raised (customer-reported or observed)", {
            "201": _answer("the incident, escalating like any other; `detection`: reported",
                           _ref("Incident")),
            "400": BAD,
        }, tag="incidents", scope="respond", body=_body({
            "type": "object", "required": ["team", "severity", "summary"],
            "additionalProperties": False,
            "properties": {
                "team": {"type": "string"}, "severity": {"type": "string"},
                "summary": {"type": "string", "minLength": 1, "maxLength": 300},
                "source": {"type": "string", "enum": ["customer", "observed"],
                           "default": "observed"},
            },
        })),
        "get": _op("incidents, newest first", {
            "200": _answer("incidents", {"type": "object", "properties": {
                "incidents": {"type": "array", "items": _ref("Incident")}}}),
            "400": BAD,
        }, tag="incidents", scope="read", parameters=[
            _query("state", "open, triggered, acknowledged or resolved"),
            _query("team", "a team"), _query("severity", "a severity"),
            _query("limit", "at most this many (1-1000, default 100)", {"type": "integer"}),
            _query("before", "only incidents numbered below this", {"type": "integer"}),
        ]),
    },
    "/api/v1/incidents/{id}": {
        "get": _op("one incident with its alerts, roles and timeline", {
            "200": _answer("the incident", _ref("IncidentDetail")), "400": BAD,
            "404": NOT_FOUND,
        }, tag="incidents", scope="read", parameters=[ID]),
    },
    "/api/v1/incidents/{id}/{action}": {
        # Every action the responder knows (web/actions.act serves them all), named here
        # from the one list of them.
        "post": _op(_listed((action.verb for action in Action), "or"), {
            "200": _answer("the incident as it is now", _ref("Incident")), "400": BAD,
            "404": _error("no such incident or action"), "409": CONFLICT,
        }, tag="incidents", scope="respond", parameters=[
            ID, _path("action", _listed(Action, "or"),
                      {"type": "string", "enum": [action.value for action in Action]}),
        ], body=_body({"type": "object", "description": 'snooze: {"for": "30m"} or '
                       '{"until": ISO 8601 time with a zone, in the future}; '
                       f"{_listed((a for a in Action if a is not Action.SNOOZE), 'and')} "
                       "take no fields", "additionalProperties": False,
                       "maxProperties": 1,
                       "properties": {"for": {"type": "string"},
                                      "until": {"type": "string"}}}, required=False)),
    },
    "/api/v1/incidents/{id}/roles/{role}": {
        "put": _op("assign a role, or hand it over from whoever held it", {
            "200": _answer("every role held now", {"type": "object", "properties": {
                "id": {"type": "integer"}, "roles": _ref("Roles")}}),
            "400": BAD, "404": _error("no such incident (`field: id`) or role (`field: role`)"),
            "409": CONFLICT,
        }, tag="roles", scope="respond", parameters=[ID, ROLE], body=_body({
            "type": "object", "required": ["user"], "additionalProperties": False,
            "properties": {"user": {"type": "string", "description": "a user of the config"}},
        })),
        "delete": _op("nobody holds the role any more", {
            "200": _answer("every role held now", {"type": "object", "properties": {
                "id": {"type": "integer"}, "roles": _ref("Roles")}}),
            "400": BAD, "404": _error("no such incident (`field: id`) or role (`field: role`)"),
            "409": CONFLICT,
        }, tag="roles", scope="respond", parameters=[ID, ROLE]),
    },
    "/api/v1/incidents/{id}/reassign": {
        "post": _op("reassign to a team (its policy) or a person (paged first, the policy "
                    "behind them); escalation starts over. To yourself: no page, the "
                    "incident acknowledged by you (if nobody had) and yours", {
                        "200": _answer("the incident", _ref("Incident")), "400": BAD,
                        "404": NOT_FOUND, "409": CONFLICT,
                    }, tag="incidents", scope="respond", parameters=[ID], body=_body({
                        "type": "object", "additionalProperties": False,
                        "description": "exactly one of team and user",
                        "properties": {"team": {"type": "string"}, "user": {"type": "string"}},
                    })),
    },
    "/api/v1/incidents/{id}/responders": {
        "post": _op("page someone into the incident; its owner does not change", {
            "200": _answer("the incident", _ref("Incident")), "400": BAD, "404": NOT_FOUND,
            "409": CONFLICT,
        }, tag="incidents", scope="respond", parameters=[ID], body=_body({
            "type": "object", "required": ["user"], "additionalProperties": False,
            "properties": {"user": {"type": "string"}},
        })),
    },
    "/api/v1/incidents/{id}/severity": {
        "put": _op("raise (escalation starts over) or lower (no page) the severity", {
            "200": _answer("the incident", _ref("Incident")), "400": BAD, "404": NOT_FOUND,
            "409": CONFLICT,
        }, tag="incidents", scope="respond", parameters=[ID], body=_body({
            "type": "object", "required": ["severity"], "additionalProperties": False,
            "properties": {"severity": {"type": "string"}},
        })),
    },
    "/api/v1/incidents/{id}/notes": {
        "post": _op("a note on the timeline; from the communications lead, a status update", {
            "201": _answer("the event written (`kind`: note or status_update)", _ref("Event")),
            "400": BAD, "404": NOT_FOUND,
        }, tag="roles", scope="respond", parameters=[ID], body=_body({
            "type": "object", "required": ["text"], "additionalProperties": False,
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 4000}},
        })),
    },
    "/api/v1/incidents/{id}/postmortem": {
        "get": _op("the post-mortem draft, as Markdown", {
            "200": _answer("Markdown", {"type": "string"}, "text/markdown"), "400": BAD,
            "404": NOT_FOUND,
        }, tag="learning", scope="read", parameters=[ID]),
    },
    "/api/v1/reports": {
        "get": _op("MTTD, MTTA, MTTR and the other figures of the incidents opened since", {
            "200": _answer("the report", {"type": "object"}), "400": BAD,
        }, tag="learning", scope="read", parameters=[
            _query("since", "a duration such as 30d (the default)")]),
    },
    "/api/v1/drills": {
        "post": _op("start a drill: a marked test incident through the team's escalation", {
            "201": _answer("the drill's report", _ref("DrillReport")), "400": BAD,
        }, tag="learning", scope="admin", body=_body({
            "type": "object", "required": ["team"], "additionalProperties": False,
            "properties": {"team": {"type": "string"}, "severity": {"type": "string"}},
        })),
    },
    "/api/v1/drills/{id}": {
        "get": _op("who a drill reached, how, and how fast it was acknowledged", {
            "200": _answer("the drill's report", _ref("DrillReport")), "400": BAD,
            "404": _error("no such drill"),
        }, tag="learning", scope="read", parameters=[ID]),
    },
    "/api/v1/schedules/{name}/overrides": {
        "get": _op("the run-time overrides not yet ended", {
            "200": _answer("overrides", {"type": "object"}), "404": _error("no such schedule"),
        }, tag="on-call", scope="read", parameters=[SCHEDULE]),
        "post": _op("an override, a shift taken, or a swap", {
            "201": _answer("what was stored", {"type": "object", "properties": {
                "overrides": {"type": "array", "items": _ref("Override")}}}),
            "400": BAD, "404": _error("no such schedule"),
        }, tag="on-call", scope="respond", parameters=[SCHEDULE],
            body=_body({"type": "object"})),
    },
    "/api/v1/schedules/{name}/overrides/{id}": {
        "delete": _op("delete an override (a swap's leg deletes the swap)", {
            "200": _answer("the ids deleted", {"type": "object"}), "400": BAD,
            "404": _error("no such schedule or override"),
        }, tag="on-call", scope="respond", parameters=[
            SCHEDULE, _path("id", "the override's number", {"type": "integer"})]),
    },
    "/api/v1/schedules/{name}/oncall": {
        "get": _op("who is on call in each layer, until when, decided by what", {
            "200": _answer("the layers", {"type": "object"}), "400": BAD,
            "404": _error("no such schedule"),
        }, tag="on-call", scope="read", parameters=[SCHEDULE, _query("at", "an ISO time")]),
    },
    "/api/v1/teams/{name}/oncall": {
        "get": _op("who is on call for a team in each layer of its schedule, until when, "
                   "decided by what; naming the schedule and its zone", {
                       "200": _answer("the team, schedule, zone and layers", {"type": "object"}),
                       "400": BAD, "404": _error("no such team, or it has no schedule"),
                   }, tag="on-call", scope="read",
                   parameters=[TEAM, _query("at", "an ISO time")]),
    },
    "/api/v1/schedules/{name}/gaps": {
        "get": _op("each layer's first span with nobody on call in the next weeks, run-time "
                   "overrides included", {
                       "200": _answer("the gaps", {"type": "object"}), "400": BAD,
                       "404": _error("no such schedule"),
                   }, tag="on-call", scope="read", parameters=[SCHEDULE, WEEKS]),
    },
    "/api/v1/schedules/{name}.ics": {
        "get": _op("the schedule's shifts as a calendar", {
            "200": ICS, "400": BAD, "404": _error("no such schedule"),
        }, tag="on-call", scope="read", parameters=[SCHEDULE, WEEKS]),
    },
    "/api/v1/users/{name}.ics": {
        "get": _op("one person's shifts in every schedule as a calendar", {
            "200": ICS, "400": BAD, "404": _error("no such user"),
        }, tag="on-call", scope="read", parameters=[_path("name", "a user"), WEEKS]),
    },
    "/api/v1/users/{name}/feed": {
        "get": _op("the person's calendar feed address: subscribe to it in a calendar app "
                   "(no header needed)", {
                       "200": FEED, "404": _error("no such user (`field: user`)"),
                   }, tag="on-call", scope="read", parameters=[_path("name", "a user")]),
        "delete": _op("revoke the person's feed: a new address, every earlier one stops (the "
                      "person themselves, or admin)", {
                          "200": FEED, "404": _error("no such user (`field: user`)"),
                      }, tag="on-call", scope="respond", parameters=[_path("name", "a user")]),
    },
    "/api/v1/schedules/{name}/feed": {
        "get": _op("the schedule's calendar feed address (no header needed)", {
            "200": FEED, "404": _error("no such schedule"),
        }, tag="on-call", scope="read", parameters=[SCHEDULE]),
        "delete": _op("revoke the schedule's feed: a new address, every earlier one stops", {
            "200": FEED, "404": _error("no such schedule"),
        }, tag="on-call", scope="admin", parameters=[SCHEDULE]),
    },
    "/feeds/{token}.ics": {
        "get": _op("a calendar feed at its signed address, for calendar apps: no "
                   "Authorization header is read", {
                       "200": ICS, "400": BAD,
                       "403": _error("the address was revoked (`field: token`)"),
                       "404": _error("no such feed: forged, damaged, or its person or "
                                     "schedule is gone (`field: token`)"),
                   }, tag="on-call", scope=None, parameters=[
                       _path("token", "the signed token of the feed's address"), WEEKS]),
    },
    "/api/v1/heartbeats": {
        "get": _op("the heartbeats (dead man's switches) and when each last arrived", {
            "200": _answer("heartbeats", {"type": "object"}),
            "503": _error("the store is in trouble"),
        }, tag="heartbeats", scope="read"),
    },
    "/api/v1/heartbeats/{name}": {
        "post": _op("a heartbeat arrived (a job's `curl -X POST`; the body is not read)", {
            "200": _answer("recorded", {"type": "object"}),
            "404": _error("no such heartbeat (`field: name`)"),
            "503": _error("the store is in trouble"),
        }, tag="heartbeats", scope="heartbeat",
            parameters=[_path("name", "a heartbeat of the config")]),
    },
    "/api/v1/maintenance": {
        "get": _op("the maintenance windows (the config's and the API's)", {
            "200": _answer("windows", {"type": "object"}),
        }, tag="maintenance", scope="read"),
        "post": _op("a maintenance window: its incidents' pages are held while it lasts", {
            "201": _answer("the window", {"type": "object"}), "400": BAD,
        }, tag="maintenance", scope="respond", body=_body({"type": "object"})),
    },
    "/api/v1/maintenance/{id}": {
        "delete": _op("delete a window made through the API", {
            "200": _answer("deleted", {"type": "object"}), "400": BAD,
            "404": _error("no such window"),
        }, tag="maintenance", scope="respond",
            parameters=[_path("id", "the window's number", {"type": "integer"})]),
    },
    "/l/{token}": {
        "get": _op("a signed link's confirmation page (never acts)", {
            "200": HTML, "403": _answer("a forged, tampered or expired link")}, tag="links",
            parameters=[_path("token", "the signed token")]),
        "post": _op("a signed link's action, as its recipient", {
            "200": HTML, "403": _answer("a forged, tampered or expired link"),
            "409": _answer("nothing changed")}, tag="links",
            parameters=[_path("token", "the signed token")]),
    },
    "/-/healthy": {"get": _op("liveness", {"200": _answer("alive")}, tag="operations")},
    "/-/ready": {
        "get": _op("readiness: started, and the store reads and takes writes", {
            "200": _answer("ready; on PostgreSQL, `clock`: this replica's clock minus the"
                           " database's (never a reason to be unready)", {
                "type": "object", "required": ["status"], "properties": {
                    "status": {"const": "ready"},
                    "clock": {"type": "object", "properties": {
                        "offset_seconds": {"type": "number"},
                        "uncertainty_seconds": {"type": "number"},
                        "measured_at": {"type": "string", "format": "date-time"}}}}}),
            "503": _error("not ready; `error` says why (starting, stopping, the store)")},
            tag="operations"),
    },
    "/metrics": {
        "get": _op("Prometheus metrics", {
            "200": _answer("the text format", {"type": "string"}, "text/plain")},
            tag="operations"),
    },
    "/-/reload": {
        "post": _op("reload the config file, as SIGHUP does", {
            "200": _answer("the file took (swapped in whole): whether it changed anything,"
                           " and every warning its checks found within 5 s; what still runs"
                           " says so", _ref("Reloaded")),
            "409": _error("started without a config file"),
            "422": _answer("the file was refused, the running config kept; `problems` lists"
                           " file, line and key", _ref("ReloadRefused")),
        }, tag="operations", scope="admin"),
        "get": _op("the last reload that took (before any, the start's checks), its checks as"
                   " they stand now", {
            "200": _answer("as POST answered it, with the checks that ran past its answer"
                           " done or still running, and `at`; before any reload took, the"
                           " start's checks of the config ackd started with (`status`"
                           " `started`)", _ref("Reloaded")),
            "404": _error("ackd has not started"),
        }, tag="operations", scope="admin"),
    },
    "/": {"get": _op("the web page: open incidents and who is on call", {
        "200": HTML, "303": SEE_OTHER}, tag="web page")},
    "/incidents/{id}": {
        "get": _op("an incident's page", {"200": HTML, "303": SEE_OTHER, "404": HTML},
                   tag="web page", parameters=[ID]),
    },
    "/incidents/{id}/{action}": {
        "post": _op("a form's action on an incident (CSRF token required)", {
            "303": SEE_OTHER, "403": HTML, "409": HTML}, tag="web page",
            parameters=[ID, _path("action", "what the form does")]),
    },
    "/reports": {"get": _op("the reports as plain tables", {"200": HTML, "303": SEE_OTHER},
                            tag="web page", parameters=[_query("since", "e.g. 30d")])},
    "/declare": {"post": _op("declare an incident from the list's form (CSRF token required)", {
        "303": SEE_OTHER, "400": HTML, "403": HTML}, tag="web page")},
    "/login": {
        "get": _op("sign in with an API token", {"200": HTML}, tag="web page"),
        "post": _op("open a session", {"303": SEE_OTHER, "401": HTML, "403": HTML},
                    tag="web page"),
    },
    "/logout": {"post": _op("end the session", {"303": SEE_OTHER}, tag="web page")},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "ackd",
        "version": "1",
        "description": "On-call escalation for Prometheus Alertmanager: incidents, their "
                       "roles, notes and status cadence, on-call changes.",
    },
    "paths": ROUTES,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}


async def openapi(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json: open to all, as it holds no data."""
    return ok(DOCUMENT)
