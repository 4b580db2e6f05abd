"""An incident's escalation state as JSON for the store: timedeltas as seconds, datetimes as
ISO 8601, the policy snapshot inside. A damaged record raises ValueError saying what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec

from receiver.core.model import MessageReason
from receiver.escalation.plan import (
    EscalationState,
    EscalationStatus,
    RunCause,
)
from receiver.escalation.policy import (
    Policy,
    Step,
    StepMode,
    Target,
    TargetKind,
)

_STATE_VERSION = 1


def state_to_dict(state: EscalationState) -> dict[str, Any]:
    """A JSON-ready form: timedeltas as seconds, datetimes as ISO 8601, the policy inside."""
    return _state_dict(state, _policy_to_dict(state.policy))


def state_to_stored(state: EscalationState) -> dict[str, Any]:
    """state_to_dict for the store, whose encoder (msgspec, keys sorted) writes the same text
    from it: the policy snapshot inside is its JSON, encoded once per Policy (msgspec.Raw).
    Every incident of a policy holds one Policy (Config.policy_for's, or the one _policy_of
    decoded), and it was built and encoded again at each write of each incident's state."""
    return _state_dict(state, _policy_json(state.policy))


def _state_dict(state: EscalationState, policy: Any) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "version": _STATE_VERSION,
        "policy": policy,
        "status": state.status.value,
        "run": state.run,
        "cycle": state.cycle,
        "next_step": state.next_step,
        "cycle_started_at": _iso(state.cycle_started_at),
        "last_fired_at": _iso(state.last_fired_at),
        "last_fired_step": state.last_fired_step,
        "last_fired_cycle": state.last_fired_cycle,
        "snoozed_until": _iso(state.snoozed_until),
        "cause": None if state.cause is None else {
            "reason": state.cause.reason.value, "actor": state.cause.actor,
            "to": state.cause.to},
        "turns": [list(turn) for turn in state.turns],
        "any_hour": state.any_hour,
    }
    if state.unacked_by:  # only an unack's run: every other state stays as it was
        encoded["unacked_by"] = state.unacked_by
    return encoded


def state_from_dict(data: Mapping[str, Any]) -> EscalationState:
    """Inverse of state_to_dict; a damaged record raises ValueError saying what is wrong."""
    try:
        if data["version"] != _STATE_VERSION:
            raise ValueError(f"unsupported version {data['version']!r}")
        return EscalationState(
            policy=_policy_of(data["policy"]),
            status=EscalationStatus(data["status"]),
            run=int(data["run"]),
            cycle=int(data["cycle"]),
            next_step=int(data["next_step"]),
            cycle_started_at=_from_iso(data["cycle_started_at"]),
            last_fired_at=_from_iso(data["last_fired_at"]),
            last_fired_step=_optional_int(data["last_fired_step"]),
            last_fired_cycle=_optional_int(data["last_fired_cycle"]),
            snoozed_until=_from_iso(data["snoozed_until"]),
            cause=_cause_from_dict(data.get("cause")),  # states written before it: none
            turns=tuple((int(step), int(target))  # states written before them: none
                        for step, target in data.get("turns", ())),
            any_hour=bool(data.get("any_hour", False)),  # states written before it: no
            unacked_by=str(data.get("unacked_by", "")),  # states written before it: nobody
        )
    except KeyError as exc:
        raise ValueError(f"stored escalation state lacks the key {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"stored escalation state is malformed: {exc}") from exc


def _cause_from_dict(data: Mapping[str, Any] | None) -> RunCause | None:
    if data is None:
        return None
    return RunCause(MessageReason(data["reason"]), str(data["actor"]), str(data["to"]))


def _policy_to_dict(policy: Policy) -> dict[str, Any]:
    encoded = {
        "name": policy.name,
        "steps": [
            {
                "delay": s.delay.total_seconds(),
                "targets": [_target_to_dict(t) for t in s.targets],
                "mode": s.mode.value,
                "relative_to_previous": s.relative_to_previous,
                "severities": sorted(s.severities) if s.severities is not None else None,
            }
            for s in policy.steps
        ],
        "repeat": policy.repeat,
        "repeat_after": policy.repeat_after.total_seconds(),
        "reack_after": _seconds(policy.reack_after),
    }
    if policy.ahead:  # only a reassignment's: every other snapshot stays as it was
        encoded["ahead"] = policy.ahead
    return encoded


def _target_to_dict(target: Target) -> dict[str, Any]:
    encoded = {"kind": target.kind.value, "name": target.name, "layer": target.layer}
    if target.team is not None:  # only a team's own schedule or lead: the others stay as they were
        encoded["team"] = target.team
    return encoded


def _policy_json(policy: Policy) -> msgspec.Raw:
    """The policy's snapshot as JSON, keys sorted, remembered by the Policy's identity (the
    memo holds the Policy, so its id is not another's meanwhile)."""
    found = _POLICY_JSON.get(id(policy))
    if found is None or found[0] is not policy:
        if len(_POLICY_JSON) >= _POLICIES_KEPT:
            _POLICY_JSON.clear()  # as _POLICIES
        found = _POLICY_JSON[id(policy)] = (
            policy, msgspec.Raw(_SORTED.encode(_policy_to_dict(policy))))
    return found[1]


_SORTED = msgspec.json.Encoder(order="sorted")  # the store's order (store/codec.dumps)
_POLICY_JSON: dict[int, tuple[Policy, msgspec.Raw]] = {}


def _policy_of(data: Mapping[str, Any]) -> Policy:
    """The policy a stored snapshot holds. Every incident of a policy holds the same snapshot
    and a Policy is immutable, so each is decoded once (by its JSON, keys sorted), not at each
    deadline and resolution: 8 of the 11 us a state took to decode."""
    key = _SNAPSHOT_KEY.encode(data)
    found = _POLICIES.get(key)
    if found is None:
        if len(_POLICIES) >= _POLICIES_KEPT:
            _POLICIES.clear()  # a config that changes its policies this often: start afresh
        found = _POLICIES[key] = _policy_from_dict(data)
    return found


_SNAPSHOT_KEY = msgspec.json.Encoder(order="deterministic")
_POLICIES: dict[bytes, Policy] = {}
_POLICIES_KEPT = 256


def _policy_from_dict(data: Mapping[str, Any]) -> Policy:
    reack = data["reack_after"]
    return Policy(
        name=str(data["name"]),
        steps=tuple(_step_from_dict(s) for s in data["steps"]),
        repeat=int(data["repeat"]),
        repeat_after=timedelta(seconds=data["repeat_after"]),
        reack_after=timedelta(seconds=reack) if reack is not None else None,
        ahead=int(data.get("ahead", 0)),  # snapshots written before it: none
    )


def _step_from_dict(data: Mapping[str, Any]) -> Step:
    severities = data["severities"]
    return Step(
        delay=timedelta(seconds=data["delay"]),
        targets=tuple(
            Target(TargetKind(t["kind"]), str(t["name"]), str(t["layer"]),
                   _optional_str(t.get("team")))  # snapshots written before it: none
            for t in data["targets"]
        ),
        mode=StepMode(data["mode"]),
        relative_to_previous=bool(data["relative_to_previous"]),
        severities=frozenset(severities) if severities is not None else None,
    )


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def _iso(value: datetime | None) -> str | None:
    """`value.isoformat()`, remembered for UTC instants: a state's times are written again at
    each change of it (a new incident's first and last step share one; a resolution writes
    those it read), and the text of an aware datetime costs 12,000 instructions, its
    look-up here 4,000 (the datetime's hash, computed once per object)."""
    if value is None:
        return None
    return _utc_iso(value) if value.tzinfo is UTC else value.isoformat()


@lru_cache(maxsize=1024)
def _utc_iso(when: datetime) -> str:
    return when.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return parsed


def _optional_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _optional_str(value: Any) -> str | None:
    return str(value) if value is not None else None
