"""Scheduling policies: pure functions of (now, queue view, worker view, profile).

`make_policy(spec, profile, **params)` builds one from a command-line spec. Callers may pass
every common parameter (bucket_ms, max_batch, workers, ...) with every spec: each policy takes
the keyword arguments its constructor names; a parameter no policy knows is an error.
"""
from __future__ import annotations

import inspect

from models.profile_format import Profile
from server.sched.policies.base import Policy
from server.sched.policies.baselines import Fixed, MaxAcc, MaxBatch
from server.sched.policies.gears import Gears, StaticCascade
from server.sched.policies.infaas import InFaaS
from server.sched.policies.slackfit import SlackFit
from server.sched.policies.slackfit_paper import SlackFitPaper

# name -> (class, takes "<name>:<arg>"). A class with an argument gets it as its second
# positional parameter, after the profile. A new policy (e.g. "gears:<plan.json>") goes here.
POLICIES: dict[str, tuple[type, bool]] = {
    "slackfit": (SlackFit, False),
    "slackfit-paper": (SlackFitPaper, False),   # the paper's bucket rule, as it states it
    "fixed": (Fixed, True),
    "maxacc": (MaxAcc, False),
    "maxbatch": (MaxBatch, False),
    "infaas": (InFaaS, False),
    "gears": (Gears, True),              # gears:<plan.json>, from `python -m loadgen gears plan`
    "cascade": (StaticCascade, True),    # cascade:<s1>@<t1>,<s2>: one static cascade
}


def _keywords(cls: type) -> set[str]:
    return {n for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is p.KEYWORD_ONLY}


def make_policy(spec: str, profile: Profile, **params) -> Policy:
    """Build a policy from "slackfit", "slackfit-paper", "fixed:<subnet>", "maxacc", "maxbatch", "infaas",
    "gears:<plan.json>" or "cascade:<s1>@<t1>,<s2>".
    Parameters set to None are left at the policy's default."""
    name, sep, arg = spec.strip().partition(":")
    name = name.lower()
    if name not in POLICIES:
        forms = [n + ":<arg>" if a else n for n, (_, a) in POLICIES.items()]
        raise ValueError(f"unknown policy {spec!r}; expected one of {', '.join(forms)}")
    cls, takes_arg = POLICIES[name]
    if takes_arg and not arg:
        raise ValueError(f"policy {name!r} needs an argument: {name}:<...>"
                         + (f", a subnet of {[s.name for s in profile.subnets]}"
                            if cls is Fixed else ""))
    if not takes_arg and sep:
        raise ValueError(f"policy {name!r} takes no argument (got {spec!r})")
    known = set().union(*(_keywords(c) for c, _ in POLICIES.values()))
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown policy parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    mine = _keywords(cls)
    kw = {k: v for k, v in params.items() if k in mine and v is not None}
    return cls(profile, arg, **kw) if takes_arg else cls(profile, **kw)


def policy_specs(profile: Profile) -> list[str]:
    """Every policy a comparison runs on this profile: slackfit, each fixed subnet (least
    accurate first), maxacc, maxbatch, infaas, slackfit-paper."""
    return (["slackfit"] + [f"fixed:{s.name}" for s in profile.subnets]
            + ["maxacc", "maxbatch", "infaas", "slackfit-paper"])


__all__ = ["POLICIES", "make_policy", "policy_specs"]
