"""Why an account is where it is: the readable specification run on one account, told in words."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from duecourse.domain.delinquency import AccountSnapshot
from duecourse.domain.model import Account, Customer, Due, Payment
from duecourse.domain.money import format_amount
from duecourse.domain.terms import BucketSet, Product

BLOCK_WORDS = {
    "required": "instalment or minimum",
    "remainder": "balance above the minimum",
    "charges_due": "charge due now",
    "moved_to_charges": "taken back for a charge due now",
    "card_interest": "interest since posting",
    "credit": "credit",
}


def _range(bucket_set: BucketSet, name: str) -> str:
    for b in bucket_set.buckets:
        if b.name == name:
            return f"{b.min}–{b.max}" if b.max is not None else f"{b.min}+"
    return "0"


def explain_text(
    snap: AccountSnapshot,
    account: Account,
    customer: Customer | None,
    product: Product,
    bucket_set: BucketSet,
    dues: list[Due],
    payments: list[Payment],
    stage_entered_on: dt.date | None,
) -> str:
    """Plain text: dues, how each payment was allocated, charges with formulas, days, bucket and stage."""
    cur = product.currency

    def m(value: Decimal) -> str:
        return format_amount(value, cur)

    lines = [f"Account {account.account_id} ({product.code}, {product.kind}, {cur}) as of {snap.as_of}"]
    if customer is not None:
        lines.append(
            f"Customer {customer.customer_id} {customer.name} ({customer.jurisdiction}, {customer.locale})"
        )
    lines += [
        "",
        "Dues, in the order payments reach them (due date, then component order "
        f"{' > '.join(product.allocation_order)}):",
    ]
    lines.append(
        f"  {'due':<16} {'due date':<10}  {'component':<9} {'amount':>12} {'required':>12} "
        f"{'paid':>12} {'status'}"
    )
    for due in dues:
        paid_required, paid_remainder = snap.paid_by_due.get(due.due_id, (Decimal(0), Decimal(0)))
        paid = paid_required + paid_remainder
        unpaid_required = due.required - paid_required
        if due.due_date >= snap.as_of:
            status = "not yet due"
        elif unpaid_required > 0:
            status = f"PAST DUE {m(unpaid_required)} since {due.due_date + dt.timedelta(days=1)}"
        else:
            status = "paid" if paid >= due.amount else "minimum paid"
        lines.append(
            f"  {due.due_id:<16} {due.due_date!s:<10}  {due.component:<9} {m(due.amount):>12} "
            f"{m(due.required):>12} {m(paid):>12} {status}"
        )
    if not dues:
        lines.append("  (none)")
    lines += ["", f"Payments on or before {snap.as_of} (total {m(snap.paid_total)}), and where each went:"]
    by_payment: dict[str, list[str]] = {}
    paid_on = {p.payment_id: p.paid_on for p in payments}
    for a in snap.allocations:
        if a.block in ("required", "remainder"):
            when = "" if a.on == paid_on.get(a.payment_id) else f" (from credit, on {a.on})"
        else:
            when = "" if a.block == "credit" else f" as of {a.on}"
        by_payment.setdefault(a.payment_id, []).append(
            f"{m(a.amount)} → {a.target} ({a.component or 'credit'}, {BLOCK_WORDS[a.block]}){when}"
        )
    for p in payments:
        if p.paid_on > snap.as_of:
            continue
        lines.append(f"  {p.payment_id} on {p.paid_on}: {m(p.amount)}")
        lines += [f"      {t}" for t in by_payment.get(p.payment_id, [])]
    if not any(p.paid_on <= snap.as_of for p in payments):
        lines.append("  (none)")
    moved: dict[tuple[str, str, str], Decimal] = {}
    for a in snap.allocations:
        if not a.payment_id:
            moved[(a.block, a.target, a.component)] = (
                moved.get((a.block, a.target, a.component), Decimal(0)) + a.amount
            )
    if moved:
        lines.append(
            f"  As of {snap.as_of}, charges due now rank before what is not yet past due, so money is "
            "taken back from it:"
        )
        lines += [
            f"      {m(amount)} → {target} ({component}, {BLOCK_WORDS[block]})"
            for (block, target, component), amount in moved.items()
        ]
    lines += ["", "Charges accrued as of the date (each rounded once, half up to the minor unit):"]
    for c in snap.charges:
        shown = m(c.amount) if c.kind == "late_fee" else f"{c.amount.normalize():f} (exact)"
        lines.append(f"  {c.kind.replace('_', ' ')} on {c.due_id}: {shown} = {c.formula}")
    lines.append(
        f"  total: penalty interest {m(snap.penalty_interest)}, card interest {m(snap.card_interest)}, "
        f"late fees {m(snap.late_fees)}"
    )
    lines.append("")
    if snap.anchor_due_id:
        lines.append(
            f"Oldest unpaid due: {snap.anchor_due_id} due {snap.oldest_unpaid_due_date} → days past due "
            f"{snap.days_past_due} = {snap.as_of} − {snap.oldest_unpaid_due_date}"
        )
    else:
        lines.append("Nothing is past due: days past due 0.")
    lines.append(
        f"Delinquency days {snap.delinquency_days} = "
        f"max(0, {snap.days_past_due} − grace {product.grace_days})"
    )
    lines.append(f"Bucket {snap.bucket} (set {bucket_set.name}: {_range(bucket_set, snap.bucket)} days)")
    lines.append(f"Missed dues: {snap.missed_dues}")
    pd = snap.past_due
    lines.append(
        f"Amount past due {m(snap.amount_past_due)} = principal {m(pd['principal'])} + interest "
        f"{m(pd['interest'])} + fee {m(pd['fee'])} + penalty {m(pd['penalty'])}"
    )
    lines.append(f"Outstanding {m(snap.outstanding)}; credit {m(snap.credit)}")
    entered = f" (entered {stage_entered_on})" if stage_entered_on else ""
    if snap.segment_condition:
        lines.append(f"Segment {snap.segment}: {snap.segment_condition}")
    lines.append(f"Stage {snap.stage}{entered}: {snap.stage_condition}")
    if snap.on_hold:
        lines.append("On hold: an active hold stops contact.")
    return "\n".join(lines) + "\n"


def explain_json(snap: AccountSnapshot, stage_entered_on: dt.date | None) -> dict[str, Any]:
    cur = snap.currency
    return {
        "account_id": snap.account_id,
        "as_of": snap.as_of.isoformat(),
        "currency": cur,
        "days_past_due": snap.days_past_due,
        "delinquency_days": snap.delinquency_days,
        "bucket": snap.bucket,
        "segment": snap.segment,
        "segment_condition": snap.segment_condition,
        "stage": snap.stage,
        "stage_condition": snap.stage_condition,
        "stage_entered_on": stage_entered_on.isoformat() if stage_entered_on else None,
        "on_hold": snap.on_hold,
        "oldest_unpaid_due_date": snap.oldest_unpaid_due_date.isoformat()
        if snap.oldest_unpaid_due_date
        else None,
        "anchor_due_id": snap.anchor_due_id,
        "missed_dues": snap.missed_dues,
        "amount_past_due": format_amount(snap.amount_past_due, cur),
        "past_due": {k: format_amount(v, cur) for k, v in snap.past_due.items()},
        "outstanding": format_amount(snap.outstanding, cur),
        "credit": format_amount(snap.credit, cur),
        "charges": {
            "penalty_interest": format_amount(snap.penalty_interest, cur),
            "card_interest": format_amount(snap.card_interest, cur),
            "late_fees": format_amount(snap.late_fees, cur),
            "lines": [
                {
                    "kind": c.kind,
                    "due_id": c.due_id,
                    "amount": f"{c.amount.normalize():f}",
                    "formula": c.formula,
                }
                for c in snap.charges
            ],
        },
        "allocations": [
            {
                "payment_id": a.payment_id,
                "target": a.target,
                "component": a.component,
                "amount": format_amount(a.amount, cur),
                "block": a.block,
                "on": a.on.isoformat(),
            }
            for a in snap.allocations
        ],
    }
