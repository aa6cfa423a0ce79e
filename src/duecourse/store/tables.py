"""The tables, as SQLAlchemy Core.

Money is ``BigInteger`` minor units (``*_minor``) in the account's product currency; dates are ``Date``;
instants are timezone-aware and stored in UTC (:class:`UtcDateTime`). Text columns are ``NOT NULL`` unless
they may be absent: an empty value is ``""``, as in the frames of ``engine/schema.py``. The column order of
the frame tables is the order of those frame schemas, so ``SELECT *`` reads a frame back as written.

The first migration (``migrations/versions/0001_initial.py``) creates these tables; a test holds the two
to each other.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware instant, stored in UTC; a naive datetime is refused.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the UTC wall time is stored and UTC is
    attached again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"a naive datetime cannot be stored as an instant: {value!r}")
        utc = value.astimezone(dt.UTC)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _text(name: str, *, nullable: bool = False) -> Column[str]:
    return Column(name, String, nullable=nullable)


def _money(name: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, BigInteger, nullable=nullable)


customers = Table(
    "customers",
    metadata,
    Column("customer_id", String, primary_key=True),
    _text("name"),
    _text("locale"),
    _text("timezone"),
    _text("jurisdiction"),
    _text("phone"),
    _text("email"),
    _text("address_line1"),
    _text("address_line2"),
    _text("city"),
    _text("region"),
    _text("postal_code"),
    _text("country"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String, primary_key=True),
    Column("customer_id", String, ForeignKey("customers.customer_id"), nullable=False),
    _text("product_code"),
    Column("opened_on", Date, nullable=False),
    Index(None, "customer_id"),
)

dues = Table(
    "dues",
    metadata,
    _text("account_id"),
    _text("due_id"),
    Column("due_date", Date, nullable=False),
    _money("amount_minor"),
    _text("component"),
    _money("minimum_minor", nullable=True),  # null: the whole amount is required
    Column("posted_on", Date, nullable=True),
    PrimaryKeyConstraint("account_id", "due_id"),
    Index(None, "account_id", "due_date"),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", String, primary_key=True),
    _text("account_id"),
    Column("paid_on", Date, nullable=False),
    _money("amount_minor"),
    Index(None, "account_id", "paid_on"),
)

snapshots = Table(
    "snapshots",
    metadata,
    _text("account_id"),
    Column("as_of", Date, nullable=False),
    _text("currency"),
    Column("days_past_due", Integer, nullable=False),
    Column("delinquency_days", Integer, nullable=False),
    _text("bucket"),
    _money("amount_past_due_minor"),
    _money("principal_past_due_minor"),
    _money("interest_past_due_minor"),
    _money("fee_past_due_minor"),
    _money("penalty_past_due_minor"),
    Column("oldest_unpaid_due_date", Date, nullable=True),  # null when nothing is past due
    Column("missed_dues", Integer, nullable=False),
    _text("stage"),
    Column("on_hold", Boolean, nullable=False),
    _money("outstanding_minor"),
    _money("credit_minor"),
    _money("penalty_interest_minor"),
    _money("card_interest_minor"),
    _money("late_fees_minor"),
    PrimaryKeyConstraint("as_of", "account_id"),
)

# One row per stage change: the stage an account entered and the day it entered it.
stage_history = Table(
    "stage_history",
    metadata,
    _text("account_id"),
    _text("stage"),
    Column("entered_on", Date, nullable=False),
    PrimaryKeyConstraint("account_id", "entered_on"),
)

runs = Table(
    "runs",
    metadata,
    Column("as_of", Date, primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("accounts", Integer, nullable=False),
    _text("status"),
    _text("engine"),
)

imports = Table(
    "imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _text("kind"),
    _text("file_name"),
    _text("sha256"),
    Column("rows_added", Integer, nullable=False),
    Column("rows_unchanged", Integer, nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    Index(None, "kind", "sha256"),
)

HOLD_SCOPES: tuple[str, ...] = ("customer", "account", "channel")

holds = Table(
    "holds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _text("scope"),
    Column("customer_id", String, ForeignKey("customers.customer_id"), nullable=False),
    _text("account_id", nullable=True),
    _text("channel", nullable=True),
    _text("kind"),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=True),  # null: until lifted
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The hold's id in the system it was imported from (``duecourse import holds``, migration 0013); null
    # for the holds recorded here (opt-outs, answers).
    Column("source_id", String, nullable=True),
    CheckConstraint("scope IN ('customer', 'account', 'channel')", name="scope"),
    Index(None, "customer_id"),
    Index("ux_holds_source_id", "source_id", unique=True),
)

# The governor's decision on every contact the strategy planned for a day (``engine/governor.py``):
# planned (goes out at ``scheduled_at``), deferred (goes out later: ``scheduled_at`` moved to the next
# allowed moment) or suppressed (not sent), with the rule that decided, its citation, the reason in words
# and the values it saw (JSON). A re-run of the day replaces the day's decisions; the outbox keeps
# what was already planned (the dispatcher checks again before sending).
DECISION_VERDICTS: tuple[str, ...] = ("planned", "deferred", "suppressed")

decisions = Table(
    "decisions",
    metadata,
    Column("day", Date, nullable=False),  # the run's day (as_of)
    Column("key", String, nullable=False),  # the outbox idempotency key the message has or would have
    _text("account_id"),
    _text("customer_id"),
    _text("stage"),
    _text("action"),
    _text("channel"),
    _text("kind"),
    _text("verdict"),
    Column("scheduled_at", UtcDateTime, nullable=True),  # null when suppressed
    _text("rule_id"),
    Column("citation", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("seen", Text, nullable=False),  # JSON: the values the rule looked at
    Column("decided_at", UtcDateTime, nullable=False),
    # Why the strategy (or the law, or a task's rule) wanted the contact that day, before the governor's
    # verdict: "stage M1 entered 2025-04-27; action mail (email overdue_reminder) falls today" (0008).
    Column("planned_because", Text, nullable=False, server_default=""),
    CheckConstraint("verdict IN ('planned', 'deferred', 'suppressed')", name="verdict"),
    PrimaryKeyConstraint("day", "key"),
    Index(None, "account_id", "day"),
)

# Champion/challenger: the arm of each account in each experiment, recorded the first time a run plans
# for the account (``domain/strategy.py::Experiment``); the recorded arm is kept for good.
assignments = Table(
    "assignments",
    metadata,
    _text("experiment"),
    _text("account_id"),
    _text("variant"),
    Column("assigned_on", Date, nullable=False),
    PrimaryKeyConstraint("experiment", "account_id"),
)

# Escalation tasks (actions with channel "task": agency placement, charge-off review, credit reporting,
# legal review), one row per planned task, keyed like the outbox (migration 0007). A task ``waiting`` for
# what the law wants first (services/tasks.py) becomes ``open`` on the run of the day it is ready; people
# (or the agency file) take it from there to ``done`` or ``cancelled``.
TASK_STATES: tuple[str, ...] = ("waiting", "open", "done", "cancelled")
tasks = Table(
    "tasks",
    metadata,
    _text("key"),  # account|stage|action|planned_on|task: a re-run of the day plans none twice
    _text("account_id"),
    _text("customer_id"),
    _text("stage"),
    _text("action"),
    _text("kind"),
    _text("state"),
    Column("planned_on", Date, nullable=False),
    Column("ready_on", Date, nullable=True),  # null: waiting for something that has not happened yet
    _text("rule_id"),  # what it waits for or what allowed it
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("state IN ('waiting', 'open', 'done', 'cancelled')", name="state"),
    PrimaryKeyConstraint("key"),
    Index(None, "state", "ready_on"),
    Index(None, "account_id"),
)

# The key of each stored kind: what makes two rows "the same row".
KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "accounts": ("account_id",),
    "dues": ("account_id", "due_id"),
    "payments": ("payment_id",),
    "snapshots": ("as_of", "account_id"),
    "stage_history": ("account_id", "entered_on"),
}

# One row per rendered letter, stored once: the PDF, the data it was made from and the version of the
# templates, so that any letter can be shown again byte for byte and reproduced from its data
# (migration 0002). ``reference`` is the opaque id printed on the letter and signed into its portal link.
letters = Table(
    "letters",
    metadata,
    Column("sha256", String, primary_key=True),
    _text("reference"),
    _text("account_id"),
    _text("customer_id"),
    _text("kind"),
    _text("locale"),
    Column("letter_date", Date, nullable=False),
    _text("template_version"),
    Column("pages", Integer, nullable=False),
    Column("data_json", Text, nullable=False),
    Column("pdf", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "account_id", "letter_date"),
    Index(None, "reference"),
)

# The print batches: one per posting date; a re-run for the date finds it and produces the same files.
letter_batches = Table(
    "letter_batches",
    metadata,
    Column("batch_date", Date, primary_key=True),
    Column("letters", Integer, nullable=False),
    Column("pages", Integer, nullable=False),
    _text("sha256"),  # of the merged PDF
    _text("manifest_sha256"),
    Column("created_at", UtcDateTime, nullable=False),
)

letter_batch_items = Table(
    "letter_batch_items",
    metadata,
    Column("batch_date", Date, ForeignKey("letter_batches.batch_date"), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("letter_sha256", String, ForeignKey("letters.sha256"), nullable=False),
    PrimaryKeyConstraint("batch_date", "sequence"),
)

# ------------------------------------------------------------------------------------------------- outbox
# The outbox (migration 0003): one row per planned message, keyed by its idempotency key (account, stage,
# action, date, channel), so that planning the same day twice or after a crash adds nothing. The row carries
# the exact bytes once rendered (``content``), the state, and what the account looked like at planning
# (``payments_seen``, ``paid_minor_seen``) so that a payment arriving since cancels the message before it
# goes. Every state change is appended to ``outbox_events`` with its reason.
OUTBOX_STATES: tuple[str, ...] = (
    "planned",
    "rendered",
    "sending",
    "sent",
    "delivered",
    "bounced",
    "failed",
    "cancelled",
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String, nullable=False, unique=True),
    _text("account_id"),
    _text("customer_id"),
    _text("stage"),
    _text("action"),
    _text("kind"),
    _text("channel"),
    _text("fallback"),  # the channels still to try, space-separated, in order ("" for none)
    Column("replaces_id", Integer, nullable=True),  # the message this one falls back from
    Column("planned_on", Date, nullable=False),
    Column("scheduled_at", UtcDateTime, nullable=False),  # not before
    _text("state"),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("claimed_by", BigInteger, nullable=True),  # the dispatcher worker holding it in "sending"
    _text("recipient"),
    Column("content", LargeBinary, nullable=True),
    Column("meta", Text, nullable=False),  # JSON: subject, encoding and segments, letter sha256, ...
    _text("provider_id"),
    Column("payments_seen", Integer, nullable=False),
    _money("paid_minor_seen"),
    Column("reason", Text, nullable=False),  # why it is in its state, in words
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    # A message to a third party the customer named (``third_parties``, migration 0012), not to the
    # customer: "" for every message to the customer.
    Column("contact_id", String, nullable=False, server_default=""),
    CheckConstraint(
        "state IN ('planned', 'rendered', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'cancelled')",
        name="state",
    ),
    Index(None, "state", "scheduled_at"),
    Index(None, "account_id"),
    Index(None, "provider_id"),
)

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("outbox.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    _text("from_state"),  # "" when the row was created
    _text("to_state"),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),  # JSON
    Index(None, "message_id"),
)

# A contact point found bad by delivery feedback (a hard bounce, an undeliverable number, a returned letter):
# not used again for that customer until the customer's contact details change.
bad_contact_points = Table(
    "bad_contact_points",
    metadata,
    Column("customer_id", String, nullable=False),
    _text("channel"),
    _text("address"),
    Column("reason", Text, nullable=False),
    Column("since", UtcDateTime, nullable=False),
    _text("source"),  # what told us: the outbox row and the feedback
    PrimaryKeyConstraint("customer_id", "channel", "address"),
)

# What a channel delivered to us (migration 0004): a customer's text (an SMS reply such as STOP) or an SMSC
# delivery receipt. Stored before the channel is told it arrived (SMPP deliver_sm_resp), so that nothing
# acknowledged can be lost; ``handled_at`` is set in the transaction that acted on it (an opt-out hold, a
# delivery recorded on the outbox), and rows still without it are handled when the dispatcher next runs.
inbound = Table(
    "inbound",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _text("channel"),
    _text("sender"),  # the customer's number (E.164 when numeric)
    _text("recipient"),  # our address it was sent to (a short code, a sender name)
    Column("text", Text, nullable=False),  # as decoded; a receipt's text as it came
    Column("received_at", UtcDateTime, nullable=False),
    _text("provider_id"),  # a receipt's message id; "" for a reply
    Column("handled_at", UtcDateTime, nullable=True),
    Column("detail", Text, nullable=False),  # JSON: kind (reply/receipt), opt_out, outcome, what handling did
    Index(None, "handled_at"),
)

# The opt-out links messages carry (migration 0009): the link's token signs ``subject``, an opaque hash of
# the customer and the channel (no personal data in the URL), and this table is how the receiver of a
# click or an RFC 8058 one-click POST finds whom it is for. Written when a message is composed.
opt_out_links = Table(
    "opt_out_links",
    metadata,
    _text("subject"),
    _text("customer_id"),
    _text("channel"),
    Column("created_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("subject"),
)

# Account attributes (migration 0010): values a strategy segment may choose by (``[attributes]``: a risk
# score, a branch), each in force from ``valid_from`` until the next value of the same attribute. A
# number is kept as its exact decimal text; "" means the account has no value from that day on.
account_attributes = Table(
    "account_attributes",
    metadata,
    _text("account_id"),
    _text("name"),
    Column("valid_from", Date, nullable=False),
    Column("value", Text, nullable=False),
    Column("imported_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("account_id", "name", "valid_from"),
)

# The customers' consent to be contacted by a channel (migration 0011), each from ``since`` until the
# next record of the same customer and channel: ``given`` true (consent) or false (withdrawn). Read where
# ``[governor] consent_required`` asks for it.
consents = Table(
    "consents",
    metadata,
    _text("customer_id"),
    _text("channel"),
    Column("since", Date, nullable=False),
    Column("given", Boolean, nullable=False),
    _text("source"),  # where it was given: a form, a call, the app ("" when not said)
    Column("imported_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("customer_id", "channel", "since"),
)

# Third parties the customers named (migration 0012): emergency, family, employer or reference contacts,
# from ``duecourse import contacts``. A contact may be asked to pass on a request that the customer get
# in touch, where and when the jurisdiction's pack allows it (``services/third_parties.py``); ``locale``
# and ``timezone`` are "" when they are the customer's. ``link_subject`` is what the contact's opt-out
# link signs (an opaque hash of the contact id).
third_parties = Table(
    "third_parties",
    metadata,
    Column("contact_id", String, primary_key=True),
    _text("customer_id"),
    _text("relation"),
    _text("name"),
    _text("phone"),
    _text("email"),
    _text("locale"),
    _text("timezone"),
    Column("agreed_on", Date, nullable=True),  # the day the customer named them, when known
    _text("link_subject"),
    Column("imported_at", UtcDateTime, nullable=False),
    Index(None, "customer_id"),
    Index(None, "link_subject"),
)

# A contact who asked to hear no more (a STOP reply from their number, their opt-out link): never
# contacted again (CN-COL-09: stop if the contact refuses).
third_party_stops = Table(
    "third_party_stops",
    metadata,
    Column("contact_id", String, primary_key=True),
    Column("stopped_at", UtcDateTime, nullable=False),
    Column("how", Text, nullable=False),
)
