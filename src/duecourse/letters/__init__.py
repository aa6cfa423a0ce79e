"""Letters a customer cannot misread: data built from the account, templates, PDF, the clarity lint.

``kinds`` says which kinds exist, where each is used and what fields its data carries; ``data`` builds
that data from an account's snapshot as of the letter date; ``render`` turns it into typst markup through
Jinja2 templates (checked at load against the fields) and into PDF; ``lint`` renders every template with
sample accounts and checks the result against the checklists in ``checklists.toml``; ``token`` signs the
portal link in the QR code.

Exceptions::

    DuecourseError
     └── LetterError               a letter that cannot be made as asked
          ├── KindNotUsed          a kind the customer's jurisdiction does not use
          └── TemplateError        a template that refers to a field its kind does not provide, or fails
"""

from __future__ import annotations

from duecourse.domain.errors import DuecourseError


class LetterError(DuecourseError):
    """A letter that cannot be made as asked."""


class KindNotUsed(LetterError):
    """A letter kind that the customer's jurisdiction does not use."""


class TemplateError(LetterError):
    """A template that is wrong: an unknown field, a syntax error, or typst refusing its markup."""
