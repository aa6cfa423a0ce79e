"""``duecourse policy check``: what a strategist should know about the strategy before a run sends it.

``config check`` refuses what cannot work at all (an unknown channel, a stage no account can reach, a kind
with no words on its channel anywhere). This goes further, per jurisdiction, since a stage's actions
apply to every customer in that stage wherever they live:

- an action whose kind a jurisdiction does not use (a US validation notice for a customer in China):
  those customers get nothing from it (a warning: the run skips them, with the reason); a stage of a
  segment that takes only some jurisdictions is checked against those alone;
- an e-mail, SMS or push action whose kind has no words in the locale of a jurisdiction that uses it:
  every such message would fail when it is rendered (an error);
- an action whose preferred time is outside a jurisdiction's contact hours: the governor defers every
  such message to the next allowed moment (a warning: the time is not what it says);
- a collection stage without any action: its accounts are never contacted (a warning);
- an escalation task whose jurisdiction wants a notice first that no action sends (a warning);
- a legal review of US accounts with no statute of limitations set: none would ever be opened (US-TBD-01
  fails closed; a warning);
- an action sending the UK notice of sums in arrears, which the law plans anyway: extra letters on the
  days it falls apart from the law's (a warning);
- an action to third parties the customers named (``to = "contact"``) reaching a jurisdiction whose pack
  forbids contacting them (the UK, UK-CONC-04) and that ``[governor] third_party_contact_in`` does not
  open: those customers' contacts get nothing from it (a warning); where it is allowed, the reminder of
  its conditions (a note: only when the customer is unreachable, once only in the US); and reaching the US
  while ``[governor] third_party_products`` names products: those accounts' contacts get nothing from it
  without a ``[location_agent.US]`` (a warning, US-3P-01), and with one they are asked in its words (a
  note);
- letters, e-mails or texts reaching US customers while a state or a city of the US pack requires a
  disclosure on a time-barred debt and no statute of limitations is set for that state: every one about a
  debt past due to a customer there is refused until it is (US-TBD-01 fails closed; a warning);
- the rule packs themselves: every rule carries an id and a citation, and the US pack's disclosures load
  (an error otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

from duecourse.config import Config
from duecourse.domain.strategy import TASK_CHANNEL
from duecourse.letters.kinds import KINDS, LOCALE_OF
from duecourse.rulepacks.packs import (
    JURISDICTIONS,
    RulePackError,
    contact_hours,
    disclosures,
    task_rules,
    third_party_rules,
)
from duecourse.services.third_parties import COLLECTOR_CITATION, COLLECTOR_JURISDICTIONS, COLLECTOR_RULE

WORDED_CHANNELS = ("email", "sms", "push")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``policy check`` found: ``error`` (it will fail), ``warning`` (it will not do what it
    seems to) or ``note`` (what it will do, where the law narrows it), a code, and the message in words,
    naming the stage and action."""

    severity: str
    code: str
    message: str

    def line(self) -> str:
        return f"{self.severity}: {self.message} [{self.code}]"


def check_policy(config: Config) -> list[Finding]:
    """Every finding about ``config``'s strategy against the rule packs, errors first."""
    findings: list[Finding] = []
    findings += _rule_packs()
    findings += _actions(config)
    findings += _silent_stages(config)
    findings += _task_prerequisites(config)
    findings += _task_limitations(config)
    findings += _disclosure_limitations(config)
    findings += _statutory_kinds(config)
    findings += _third_parties(config)
    return sorted(findings, key=lambda f: f.severity != "error")


def _third_parties(config: Config) -> list[Finding]:
    """Actions to third parties the customers named, against each jurisdiction their stage reaches."""
    reach = _reach(config)
    opened = config.governor.third_party_contact_in
    found: list[Finding] = []
    for action in config.actions:
        if action.to != "contact":
            continue
        where = f"stage {action.stage}, action {action.name} ({action.channel} {action.kind} to contacts)"
        for jurisdiction in reach.get(action.stage, JURISDICTIONS):
            rules = third_party_rules(jurisdiction)
            if not rules.allowed and jurisdiction not in opened:
                found.append(
                    Finding(
                        "warning",
                        "policy.third_party_forbidden",
                        f"{where}: {jurisdiction} forbids contacting third parties ({rules.rule}, "
                        f"{rules.citation}); the contacts of customers there get nothing from it",
                    )
                )
                continue
            if jurisdiction in COLLECTOR_JURISDICTIONS and config.governor.third_party_products:
                products = ", ".join(config.governor.third_party_products)
                agent = config.location_agents.get(jurisdiction)
                if agent is None:
                    found.append(
                        Finding(
                            "warning",
                            "policy.third_party_collector",
                            f"{where}: in {jurisdiction} accounts of [governor] third_party_products "
                            f"({products}) are collected as a third party and no [location_agent."
                            f"{jurisdiction}] is set: their contacts get nothing from it "
                            f"({COLLECTOR_RULE}, {COLLECTOR_CITATION})",
                        )
                    )
                else:
                    found.append(
                        Finding(
                            "note",
                            "policy.third_party_collector",
                            f"{where}: in {jurisdiction} the contacts of accounts of [governor] "
                            f"third_party_products ({products}) are asked by {agent.name} in a collector's "
                            f"words, naming no employer ({COLLECTOR_RULE}, {COLLECTOR_CITATION})",
                        )
                    )
            conditions = f"only when the customer is unreachable for {rules.unreachable_days} days"
            if rules.once:
                conditions += f", once per contact ever ({rules.once_rule})"
            opened_by = " (opened by [governor] third_party_contact_in)" if not rules.allowed else ""
            found.append(
                Finding(
                    "note",
                    "policy.third_party_conditions",
                    f"{where}: in {jurisdiction}{opened_by} a contact gets it {conditions}, never after "
                    f"refusing ({rules.refused_rule}); the words never name the debt ({rules.rule})",
                )
            )
    return found


def _rule_packs() -> list[Finding]:
    found: list[Finding] = []
    for jurisdiction in JURISDICTIONS:
        try:
            hours = contact_hours(jurisdiction)
            disclosures(jurisdiction)
        except RulePackError as exc:
            found.append(Finding("error", "policy.rule_pack", str(exc)))
            continue
        if not hours.rule or not hours.citation:
            found.append(
                Finding(
                    "error",
                    "policy.no_citation",
                    f"rule pack {jurisdiction}: the contact hours carry no rule id or citation",
                )
            )
    return found


def _actions(config: Config) -> list[Finding]:
    from duecourse.channels.content import shipped_templates

    templates = shipped_templates()
    found: list[Finding] = []
    reach = _reach(config)
    for action in (*config.actions, *config.pre_due):
        where = f"stage {action.stage}, action {action.name} ({action.channel} {action.kind})"
        present = reach.get(action.stage, JURISDICTIONS)
        kind_used = KINDS[action.kind].jurisdictions if action.kind in KINDS else JURISDICTIONS
        used = tuple(j for j in present if j in kind_used)
        skipped = [j for j in present if j not in kind_used]
        if skipped:
            found.append(
                Finding(
                    "warning",
                    "policy.kind_not_used",
                    f"{where}: {action.kind} is not used in {', '.join(skipped)}; customers there in "
                    f"stage {action.stage} get nothing from this action",
                )
            )
        for channel in (action.channel, *action.fallback):
            if channel not in WORDED_CHANNELS:
                continue
            for jurisdiction in used:
                locale = LOCALE_OF[jurisdiction]
                if not templates.has(action.kind, locale, channel):
                    found.append(
                        Finding(
                            "error",
                            "policy.no_words",
                            f"{where}: there are no {channel} words for {action.kind} in {locale}: every "
                            f"such message to a customer in {jurisdiction} would fail when it is rendered",
                        )
                    )
        if action.at is None or action.channel == "letter":
            continue
        for jurisdiction in used:
            hours = contact_hours(jurisdiction)
            if action.channel in hours.channels and not hours.start <= action.at < hours.end:
                found.append(
                    Finding(
                        "warning",
                        "policy.outside_hours",
                        f"{where}: at {action.at:%H:%M} is outside the contact hours of {jurisdiction} "
                        f"({hours.describe()}, {hours.rule}, {hours.citation}); the governor defers every "
                        f"such message to {hours.start:%H:%M} the next day",
                    )
                )
    return found


def _task_prerequisites(config: Config) -> list[Finding]:
    """A task whose jurisdiction wants a notice first that no action of the strategy sends would wait
    for ever."""
    reach = _reach(config)
    sent = {action.kind for action in (*config.actions, *config.pre_due) if action.channel != TASK_CHANNEL}
    found: list[Finding] = []
    for action in config.actions:
        if action.channel != TASK_CHANNEL:
            continue
        for jurisdiction in reach.get(action.stage, JURISDICTIONS):
            for prerequisite in task_rules(jurisdiction).prerequisites:
                if prerequisite.task == action.kind and prerequisite.needs not in sent:
                    found.append(
                        Finding(
                            "warning",
                            "policy.task_waits",
                            f"stage {action.stage}, action {action.name} (task {action.kind}): in "
                            f"{jurisdiction} it waits for a {prerequisite.needs} ({prerequisite.rule}, "
                            f"{prerequisite.citation}), which no action of the strategy sends: it would "
                            "wait for ever",
                        )
                    )
    return found


def _task_limitations(config: Config) -> list[Finding]:
    """A task that a limitation concerns (US: legal review, US-TBD-01) in a jurisdiction without any
    period set would never be opened (it fails closed)."""
    reach = _reach(config)
    years = config.governor.limitation_years
    found: list[Finding] = []
    for action in config.actions:
        if action.channel != TASK_CHANNEL:
            continue
        for jurisdiction in reach.get(action.stage, JURISDICTIONS):
            for limitation in task_rules(jurisdiction).limitations:
                if limitation.task == action.kind and not years:
                    found.append(
                        Finding(
                            "warning",
                            "policy.no_limitation",
                            f"stage {action.stage}, action {action.name} (task {action.kind}): in "
                            f"{jurisdiction} it is not opened on a time-barred debt ({limitation.rule}, "
                            f"{limitation.citation}), and no statute of limitations is set ([governor] "
                            "limitation_years): none would ever be opened",
                        )
                    )
    return found


def _disclosure_limitations(config: Config) -> list[Finding]:
    """A state (or a city of it) requiring a disclosure on a time-barred debt, reached by the strategy's
    letters, e-mails or texts, with no statute of limitations set for the state: whether a debt there is
    time-barred cannot be known, so every communication about a debt past due is refused (it fails
    closed)."""
    reach = _reach(config)
    sent = [
        action
        for action in (*config.actions, *config.pre_due)
        if action.channel != TASK_CHANNEL
        and action.to != "contact"
        and "US" in reach.get(action.stage, JURISDICTIONS)
        and (action.kind not in KINDS or "US" in KINDS[action.kind].jurisdictions)
    ]
    try:
        entries = disclosures("US")
    except RulePackError:
        return []  # reported by _rule_packs
    if not sent:
        return []
    third_party = bool(config.governor.third_party_products)
    binding = [d for d in entries if d.binds == "all" or third_party]
    found: list[Finding] = []
    for state in sorted({d.state for d in binding} - set(config.governor.limitation_years)):
        mine = [d for d in binding if d.state == state]
        places = " and ".join(d.place for d in mine)
        cited = "; ".join(dict.fromkeys(f"{d.rule}: {d.citation}" for d in mine))
        found.append(
            Finding(
                "warning",
                "policy.no_limitation_disclosure",
                f"{places} {'require' if len(mine) > 1 else 'requires'} a disclosure in communications "
                f"about a time-barred debt ({cited}), and "
                f"no statute of limitations is set for {state} ([governor] limitation_years.{state}): every "
                f"letter, e-mail or text about a debt past due to a customer there is refused until one is "
                f"(stages {', '.join(dict.fromkeys(a.stage for a in sent))})",
            )
        )
    return found


def _statutory_kinds(config: Config) -> list[Finding]:
    """An action sending the UK notice of sums in arrears, which the law plans anyway
    (``services/statutory.py``): on the day both fall, the strategy's takes the place of the law's, but on
    other days it sends one more notice than the law asks for. (The US validation notice is not reported:
    the law plans it only for accounts of ``[governor] third_party_products``; for the institution's own
    accounts the strategy's action is the only one.)"""
    from duecourse.services.statutory import NOSIA_KIND

    return [
        Finding(
            "warning",
            "policy.statutory_kind",
            f"stage {action.stage}, action {action.name} ({action.channel} {action.kind}): the UK notice "
            "of sums in arrears is planned by law when the arrears trigger it and every six months after "
            "(UK-NOSIA-01/02); this action sends one more whenever it falls on another day (a letter "
            "the law does not ask for, and its cost); leave it out unless an extra notice is meant",
        )
        for action in config.actions
        if action.kind == NOSIA_KIND
    ]


def _reach(config: Config) -> dict[str, tuple[str, ...]]:
    """The jurisdictions whose customers can be on each stage (a stage left out: every jurisdiction).

    A segment's stages reach the jurisdictions its ``when`` names (all when it names none), less those
    an earlier segment takes whole (one that asks for nothing but the jurisdiction); the default stages
    reach what no segment takes whole.
    """
    reach: dict[str, tuple[str, ...]] = {}
    taken: set[str] = set()
    for segment in config.terms.segments:
        when = segment.when
        mine = tuple(j for j in (when.jurisdictions or JURISDICTIONS) if j not in taken)
        reach |= {stage.name: mine for stage in segment.stages}
        whole = not when.products and when.min_amount_past_due is None and when.min_balance is None
        if whole:
            taken |= set(when.jurisdictions)
    left = tuple(j for j in JURISDICTIONS if j not in taken)
    reach |= {stage.name: left for stage in config.terms.stages}
    return reach


def _silent_stages(config: Config) -> list[Finding]:
    with_actions = {action.stage for action in config.actions}
    return [
        Finding(
            "warning",
            "policy.silent_stage",
            f"stage {stage.name} has no actions: its accounts are never contacted by the strategy",
        )
        for stage in config.terms.all_stages()
        if stage.name not in with_actions
    ]
