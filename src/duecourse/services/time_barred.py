"""The disclosure a US communication carries when its debt is time-barred (US-TBD-01).

Federal law forbids suing or threatening suit on a time-barred debt and requires no disclosure (12 CFR
1006.26(b)); some states and New York City require one (``rulepacks/us.toml [[disclosures]]``). For a
communication about an account, as of its date (a letter's date, the day an e-mail's action fell):

1. The customer's state (``region``) and ZIP code pick the pack's first entry whose place matches and
   that binds the account (``all``, or ``third_party`` for the accounts of ``[governor]
   third_party_products``). No entry: nothing to disclose here.
2. The debt's limitation period (``domain/limitation.py``: ``[governor] limitation_years`` and
   ``limitation_restarts_on_payment``) from the oldest unpaid due as of the date and the last payment on
   or before it. Nothing past due: the debt cannot be time-barred, nothing to disclose.
3. From the day the debt is time-barred, the entry's words in the communication's locale (California's
   other words once the debt may no longer be reported to the credit bureaus); the day before, none (a
   false "we will not sue you" is wrong too).

It fails closed (``DisclosureUnknown``: the communication is refused, naming the account, the state and
what to set) where an entry would bind the account but the answer is not known: no period set for the
state, a US customer with something past due but no state (or a region that is not a state code, like
"New York"), a ZIP code that cannot tell whether a city's rule applies, or no words in the
communication's locale.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duecourse.config import Config
from duecourse.domain.limitation import US_STATE_CODES, Limits, Period, add_years, period_of, state_of
from duecourse.domain.model import Account, Customer, Payment
from duecourse.letters import LetterError
from duecourse.letters.data import Disclosed
from duecourse.letters.settings import Issuer
from duecourse.rulepacks.packs import Disclosure, disclosures

RULE = "US-TBD-01"
# The channels that carry the words (in a box beside the amounts); a text message or a push notification
# cannot (a lock screen shows it, and two segments could not hold it): where the rule covers them, they
# are not sent and the action's next channel goes.
CARRIERS: tuple[str, ...] = ("letter", "email")
_ZIP = re.compile(r"(\d{5})(?:-\d{4})?")


class DisclosureUnknown(LetterError):
    """A communication about a debt that may need a time-barred disclosure, where whether it does cannot
    be known: it is not made (the rule fails closed)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """What a communication about one account says about the age of its debt, as of a day.

    Attributes:
        state: the customer's state ("" outside the US or when not known).
        disclosure: the pack's entry that binds the account where the customer lives (None: none).
        period: the debt's limitation period (None: nothing past due, or no period set where no entry
            needs one).
        text: the words the communication carries ("" unless the debt is time-barred and an entry binds).
        reporting_ends: when the debt may no longer be reported (only for an entry whose words change).
    """

    as_of: dt.date
    state: str = ""
    disclosure: Disclosure | None = None
    period: Period | None = None
    text: str = ""
    reporting_ends: dt.date | None = None

    @property
    def barred(self) -> bool:
        return self.period is not None and self.period.barred(self.as_of)

    def carried(self) -> Disclosed | None:
        """The letter data's disclosure (``letters.data.Disclosed``), or None when it carries none."""
        if not self.text or self.disclosure is None or self.period is None:
            return None
        return Disclosed(
            text=self.text,
            name=self.disclosure.name,
            rule=self.disclosure.rule,
            citation=self.disclosure.citation,
            channels=self.disclosure.channels,
            since=self.period.barred_on,
            reporting_ended=self.reporting_ends is not None and self.as_of >= self.reporting_ends,
        )


def zip5(postal_code: str) -> str | None:
    """The 5-digit ZIP code of a US postal code (``10001`` or ``10001-1234``), None when it is not one."""
    found = _ZIP.fullmatch(postal_code.strip())
    return found.group(1) if found else None


def notice_for(
    *,
    account_id: str,
    customer: Customer,
    third_party: bool,
    oldest_unpaid_due_date: dt.date | None,
    last_paid_on: dt.date | None,
    as_of: dt.date,
    limits: Limits,
    locale: str,
    creditor: str,
    entries: Sequence[Disclosure] | None = None,
) -> Notice:
    """The ``Notice`` of a communication about ``account_id`` as of ``as_of`` (see the module's steps);
    ``DisclosureUnknown`` where it cannot be known. ``entries``: the pack's (``disclosures("US")``)."""
    if customer.jurisdiction != "US":
        return Notice(as_of)
    entries = disclosures("US") if entries is None else entries
    state = state_of(customer.region)
    if oldest_unpaid_due_date is None:
        return Notice(as_of, state)  # nothing past due: not time-barred
    if not entries:
        return Notice(as_of, state, None, period_of(state, oldest_unpaid_due_date, last_paid_on, limits))
    who = f"account {account_id} (customer {customer.customer_id})"
    if not state:
        raise DisclosureUnknown(
            f"{who}: the customer has no state (region), so whether a state's disclosure on a time-barred "
            f"debt applies ({RULE}) is unknown; nothing about the debt goes out until the customer's "
            "region is set"
        )
    if state not in US_STATE_CODES:
        raise DisclosureUnknown(
            f"{who}: the customer's region {customer.region!r} is not a US state code (like NY), so whether "
            f"a state's disclosure on a time-barred debt applies ({RULE}) is unknown; nothing about the debt "
            "goes out until the customer's region is a state code"
        )
    chosen = _entry(entries, state, customer.postal_code, third_party, who)
    period = period_of(state, oldest_unpaid_due_date, last_paid_on, limits)
    if chosen is None:
        return Notice(as_of, state, None, period)
    if period is None:
        raise DisclosureUnknown(
            f"{who}: the customer lives in {chosen.place} ({state}), where a communication about a "
            f"time-barred debt must carry a disclosure ({chosen.rule}: {chosen.citation}), and no statute "
            f"of limitations is set for {state}: whether the debt is time-barred on {as_of} is unknown, "
            f"so nothing about it goes out; set [governor] limitation_years.{state} (with counsel)"
        )
    if not period.barred(as_of):
        return Notice(as_of, state, chosen, period)
    texts, ends = chosen.texts, None
    if chosen.reporting_years:
        began = oldest_unpaid_due_date + dt.timedelta(days=1)
        ends = add_years(began + dt.timedelta(days=chosen.reporting_delay_days), chosen.reporting_years)
        if as_of >= ends:
            texts = chosen.texts_after_reporting
    words = texts.get(locale)
    if words is None:
        raise DisclosureUnknown(
            f"{who}: the debt is time-barred since {period.barred_on} and {chosen.place} requires a "
            f"disclosure ({chosen.rule}: {chosen.citation}), which has no {locale} words in "
            f"rulepacks/us.toml (only {', '.join(sorted(texts))}): write in one of those or add the words"
        )
    return Notice(as_of, state, chosen, period, words.replace("{creditor}", creditor), ends)


def _entry(
    entries: Sequence[Disclosure], state: str, postal_code: str, third_party: bool, who: str
) -> Disclosure | None:
    """The first entry whose place is the customer's and that binds the account."""
    code = zip5(postal_code)
    for entry in entries:
        if entry.state != state or (entry.binds == "third_party" and not third_party):
            continue
        if not entry.is_city():
            return entry
        if code is None:
            raise DisclosureUnknown(
                f"{who}: the customer's ZIP code {postal_code!r} cannot tell whether they live in "
                f"{entry.place}, whose rule requires a disclosure on a time-barred debt ({entry.rule}: "
                f"{entry.citation}); nothing about the debt goes out until the postal_code is a ZIP code"
            )
        if entry.covers_zip(code):
            return entry
    return None


def creditor_of(issuer: Issuer | None) -> str:
    """The name a disclosure gives as the one who may report the debt: the collector's when an agency
    collects, else the creditor's."""
    if issuer is None:
        return ""
    return issuer.collector or issuer.legal_name


def notice_of(
    config: Config,
    account: Account,
    customer: Customer,
    oldest_unpaid_due_date: dt.date | None,
    payments: Sequence[Payment],
    as_of: dt.date,
    locale: str,
) -> Notice:
    """``notice_for`` with what the configuration says: the periods, the third-party products, the
    issuer's name."""
    paid = [p.paid_on for p in payments if p.paid_on <= as_of]
    governor = config.governor
    return notice_for(
        account_id=account.account_id,
        customer=customer,
        third_party=account.product_code in governor.third_party_products,
        oldest_unpaid_due_date=oldest_unpaid_due_date,
        last_paid_on=max(paid) if paid else None,
        as_of=as_of,
        limits=Limits(dict(governor.limitation_years), frozenset(governor.limitation_restarts_on_payment)),
        locale=locale,
        creditor=creditor_of(config.issuers.get(customer.jurisdiction)),
    )


def covered_but_not_carried(data: dict[str, Any], channel: str) -> str:
    """Why a message of ``channel`` with this letter data is not sent ("" when it may be): its debt is
    time-barred and the rule covers the channel, which cannot carry the words."""
    disclosure = data.get("disclosure") or {}
    if not disclosure.get("text") or channel in CARRIERS or channel not in disclosure.get("channels", []):
        return ""
    return (
        f"the debt is time-barred since {disclosure['since']} and the disclosure {disclosure['name']} "
        f"({disclosure['rule']}: {disclosure['citation']}) is required in every {channel} about it, which "
        f"cannot carry it: not sent by {channel}"
    )


def explain(notice: Notice | DisclosureUnknown, customer: Customer | None) -> tuple[str, dict[str, Any]]:
    """The ``explain`` section of a US account: whether its debt is time-barred, since when, and which
    disclosure its letters and e-mails carry (text and JSON)."""
    if customer is None or customer.jurisdiction != "US":
        return "", {}
    title = f"Time-barred debt ({RULE}, 12 CFR 1006.26(b): no suit and no threat of suit once it is):"
    if isinstance(notice, DisclosureUnknown):
        return f"\n{title}\n  refused: {notice}\n", {"refused": str(notice)}
    lines = [title]
    data: dict[str, Any] = {"state": notice.state, "time_barred": notice.barred}
    period = notice.period
    if period is None:
        if notice.disclosure is None and notice.state:
            lines.append(
                f"  no period is set for {notice.state} ([governor] limitation_years), and no state or city "
                f"rule in rulepacks/us.toml requires a disclosure there: letters and e-mails carry none"
            )
        else:
            lines.append("  nothing is past due: the debt is not time-barred")
        return "\n" + "\n".join(lines) + "\n", data
    data |= {
        "limitation_years": period.years,
        "period_from": period.start.isoformat(),
        "time_barred_on": period.barred_on.isoformat(),
    }
    when = "since" if notice.barred else "from"
    lines.append(f"  time-barred {when} {period.barred_on} ({period.describe()})")
    entry = notice.disclosure
    if entry is None:
        why = _not_binding(notice.state, customer.postal_code)
        lines.append(
            f"  no state or city rule in rulepacks/us.toml requires a disclosure in {notice.state} for this "
            f"account{f' ({why})' if why else ''}: letters and e-mails carry none"
        )
        return "\n" + "\n".join(lines) + "\n", data
    data["disclosure"] = {
        "name": entry.name,
        "place": entry.place,
        "rule": entry.rule,
        "citation": entry.citation,
        "wording": entry.wording,
        "channels": list(entry.channels),
        "carried": bool(notice.text),
    }
    if notice.reporting_ends is not None:
        data["disclosure"]["reporting_ends"] = notice.reporting_ends.isoformat()
    rule = f"disclosure {entry.name} of {entry.place} ({entry.rule}: {entry.citation})"
    if not notice.text:
        lines.append(f"  not time-barred yet: letters and e-mails carry no disclosure until then ({rule})")
        return "\n" + "\n".join(lines) + "\n", data
    held = [c for c in entry.channels if c not in CARRIERS and c != "call"]
    lines.append(f"  letters and e-mails carry the {rule}, in a box beside the amounts")
    if entry.wording == "to_confirm":
        lines.append("  its words are the institution's, to confirm with counsel (rulepacks/us.toml)")
    if held:
        lines.append(f"  not sent by {', '.join(held)}: the rule covers them and they cannot carry it")
    lines += [f"  | {line}" for line in notice.text.splitlines() if line.strip()]
    return "\n" + "\n".join(lines) + "\n", data


def _not_binding(state: str, postal_code: str) -> str:
    """Why the pack's entries for ``state`` do not bind an account there ("" when it has none)."""
    code = zip5(postal_code) or postal_code
    why = []
    for entry in disclosures("US"):
        if entry.state != state:
            continue
        if entry.is_city() and not entry.covers_zip(code):
            why.append(f"{entry.place}: ZIP code {code} is outside it")
        elif entry.binds == "third_party":
            why.append(
                f"{entry.place}: binds accounts collected as a third party only ([governor] "
                "third_party_products)"
            )
    return "; ".join(why)
