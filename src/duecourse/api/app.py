"""The HTTP service (``duecourse serve``): what the outside world sends back to us.

- ``GET /opt-out/{channel}/{token}``: the page an opt-out link opens (a link scanner or a preview may
  fetch it, so it changes nothing): whom it is from, what stopping means, and one button.
- ``POST /opt-out/{channel}/{token}``: the opt-out itself, from that button or from the mail client's
  one-click unsubscribe (RFC 8058: ``List-Unsubscribe=One-Click`` posted to the ``List-Unsubscribe`` URL).
  The customer's channel is held from now on (12 CFR 1006.6(e), 1006.14(h); US-ELEC-01); a second post
  changes nothing and says so.
- ``POST /callbacks/sms/receipts`` and ``POST /callbacks/sms/replies``: an HTTP SMS gateway's delivery
  callbacks and the customers' texts (a JSON object or an array of them; the fields are
  ``[channels.sms]``'s ``receipt_id_field``, ``receipt_status_field``, ``reply_from_field``,
  ``reply_to_field``, ``reply_text_field``). The gateway proves itself with the token in the environment
  variable ``[channels.sms] callback_token_env`` (``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` for
  gateways that can only set a URL). What is posted is stored durably before the answer (all or, when
  an item is bad, none: a 400 that names each bad item), then acted on: a receipt moves its message to
  delivered or bounced, a STOP/退订 reply becomes an opt-out hold.
- ``GET /healthz``.

Thin: the work is in ``services/feedback.py``. The clock is a parameter (``create_app(app, clock=)``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import json
import os
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from duecourse.bootstrap import App
from duecourse.domain.errors import ProblemsError
from duecourse.services import feedback

OPT_OUT_CHANNELS = ("email", "sms", "push", "contact")  # contact: a third party the customer named

# The words of the opt-out pages, per language (the customer's locale; English for any other).
_CHANNEL_WORDS = {
    "zh": {"email": "电子邮件", "sms": "短信", "push": "应用推送通知"},
    "en": {"email": "e-mails", "sms": "text messages", "push": "app notifications"},
}
_BY_WORDS = {
    "zh": {"email": "电子邮件", "sms": "短信", "push": "应用推送通知"},
    "en": {"email": "e-mail", "sms": "text message", "push": "app notification"},
}
_WORDS = {
    "zh": {
        "lang": "zh-CN",
        "title": "退订{issuer}的{what}",
        "ask": "您是否不再接收{issuer}发送的{what}？确认后，我们将不再通过{by}就您的账户与您联系。"
        "我们仍可能依法通过信函等其他方式与您联系。",
        "button": "确认退订{what}",
        "already": "您已退订{issuer}的{what}，我们不会再通过{by}与您联系。",
        "done": "退订成功：您将不再收到{issuer}的{what}。我们仍可能依法通过信函等其他方式与您联系。",
        "bad": "无法处理此退订链接：{reason}。如需退订，请致电我们的客服热线或回复短信“TD”。",
    },
    "en": {
        "lang": "en",
        "title": "Stop {what} from {issuer}",
        "ask": "Do you want to stop getting {what} from {issuer}? If you do, we will not contact you about "
        "your account by {by} again. We may still contact you in other ways, such as by post, where the "
        "law allows it.",
        "button": "Stop {what}",
        "already": "You have already asked {issuer} to stop {what}: we will not contact you by {by}.",
        "done": "Done: {issuer} will not send you {what} any more. We may still contact you in other ways, "
        "such as by post, where the law allows it.",
        "bad": "We cannot use this opt-out link: {reason}. To stop messages, call us or reply STOP to a "
        "text.",
    },
}

# The page of a third party's opt-out link (``services/third_parties.py``): nothing about the customer.
_CONTACT_WORDS = {
    "zh": {
        "lang": "zh-CN",
        "title": "不再接收{issuer}的消息",
        "ask": "您是否希望{issuer}不再联系您？确认后，我们不会再联系您。",
        "button": "确认",
        "already": "您已告知{issuer}不再联系您，我们不会再联系您。",
        "done": "好的：{issuer}不会再联系您。",
    },
    "en": {
        "lang": "en",
        "title": "Stop messages from {issuer}",
        "ask": "Do you want {issuer} to stop contacting you? If you do, we will not contact you again.",
        "button": "Stop messages",
        "already": "You have already asked {issuer} not to contact you: we will not.",
        "done": "Done: {issuer} will not contact you again.",
    },
}


def _language(locale: str) -> str:
    return "zh" if locale.startswith("zh") else "en"


def _page(language: str, title: str, body: str, status: int = 200) -> HTMLResponse:
    words = _WORDS[language]
    text = (
        f'<!doctype html>\n<html lang="{words["lang"]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;max-width:34em;margin:3em auto;"
        "padding:0 1em;line-height:1.6;color:#1a1a1a}button{font-size:1.1em;padding:.6em 1.4em;"
        "border:0;border-radius:.3em;background:#1d4f91;color:#fff;cursor:pointer}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def _bad_link(reason: str, status: int) -> HTMLResponse:
    # The customer is not known: both languages.
    parts = [f"<p>{html.escape(_WORDS[lang]['bad'].format(reason=reason))}</p>" for lang in ("en", "zh")]
    return _page("en", "Opt-out link / 退订链接", "".join(parts), status)


def _link_texts(link: feedback.OptOutLink) -> tuple[str, dict[str, str]]:
    language = _language(link.locale)
    if link.channel == feedback.CONTACT_LINK:  # a third party: not a word about anyone's account
        issuer = link.issuer or ("我们" if language == "zh" else "us")
        return language, {key: value.format(issuer=issuer) for key, value in _CONTACT_WORDS[language].items()}
    what = _CHANNEL_WORDS[language][link.channel]
    issuer = link.issuer or ("我们" if language == "zh" else "us")
    by = _BY_WORDS[language][link.channel]
    return language, {
        key: value.format(what=what, by=by, issuer=issuer, reason="")
        for key, value in _WORDS[language].items()
    }


def _callback_token(app: App) -> str | None:
    """The token the gateway's callbacks must carry; None when callbacks are not configured."""
    settings = app.config.channels.get("sms")
    if settings is None:
        return None
    name = settings.values.get("callback_token_env")
    if not name:
        return None
    return os.environ.get(str(name), "")


def create_app(app: App, clock: Callable[[], dt.datetime] | None = None) -> FastAPI:
    """The HTTP service over ``app`` (its database and configuration); ``clock`` gives the time
    (default: the system's, in UTC)."""
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    api = FastAPI(title="duecourse", docs_url=None, redoc_url=None)

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/opt-out/{channel}/{token}", response_class=HTMLResponse)
    def opt_out_page(channel: str, token: str) -> HTMLResponse:
        if channel not in OPT_OUT_CHANNELS:
            return _bad_link(f"unknown channel {channel!r}", 404)
        try:
            link = feedback.read_opt_out_link(app, channel, token)
        except feedback.OptOutLinkError as error:
            return _bad_link(str(error), 400)
        language, words = _link_texts(link)
        if link.opted_out:
            return _page(language, words["title"], f"<p>{html.escape(words['already'])}</p>")
        form = (
            f"<p>{html.escape(words['ask'])}</p>"
            '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{html.escape(words["button"])}</button></form>'
        )
        return _page(language, words["title"], form)

    @api.post("/opt-out/{channel}/{token}", response_class=HTMLResponse)
    def opt_out(channel: str, token: str) -> HTMLResponse:
        # Any POST to the link opts out: RFC 8058's body is "List-Unsubscribe=One-Click", our page's button
        # posts the same; a client that posts something else still means to stop.
        if channel not in OPT_OUT_CHANNELS:
            return _bad_link(f"unknown channel {channel!r}", 404)
        try:
            link, added = feedback.opt_out_by_link(app, channel, token, now(), "the opt-out link")
        except feedback.OptOutLinkError as error:
            return _bad_link(str(error), 400)
        language, words = _link_texts(link)
        return _page(language, words["title"], f"<p>{html.escape(words['done' if added else 'already'])}</p>")

    @api.post("/callbacks/sms/{what}")
    async def sms_callback(what: str, request: Request) -> JSONResponse:
        if what not in feedback.GATEWAY_POSTS:
            return JSONResponse({"error": f"unknown callback {what!r}: receipts or replies"}, 404)
        expected = _callback_token(app)
        if expected is None:
            return JSONResponse(
                {"error": "SMS callbacks are not configured ([channels.sms] callback_token_env)"}, 404
            )
        if not expected:
            return JSONResponse({"error": "the callback token's environment variable is not set"}, 503)
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"error": "a valid token is required (Authorization: Bearer TOKEN)"}, 401)
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            return JSONResponse({"problems": [{"source": "body", "message": f"not JSON: {error}"}]}, 400)
        payloads = body if isinstance(body, list) else [body]
        try:
            result = feedback.receive_gateway_posts(app, what, payloads, now())
        except ProblemsError as error:
            return JSONResponse({"problems": [p.as_dict() for p in error.problems]}, 400)
        handled = result.handled
        return JSONResponse(
            {
                "stored": result.stored,
                "handled": handled.handled,
                "opt_out_holds": handled.opt_out_holds,
                "contacts_stopped": handled.contacts_stopped,
                "delivered": handled.feedback.delivered,
                "bounced": handled.feedback.bounced,
                "waiting": handled.waiting,
            }
        )

    return api
