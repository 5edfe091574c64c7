"""Failure and lateness alerts through the routes of the site config (e-mail, Slack webhook, webhook).

Why one notifier for all routes: every alert carries the same facts (DAG, task, window, try,
log URL, the error's last line) whatever the channel, and a route that fails to deliver must not
hide the others or crash the callback. With no route configured the alert is logged, never lost
silently and never raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str
    fields: dict[str, Any]


def _last_line(error: object) -> str:
    lines = [line for line in str(error or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no error message)"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def failure_alert(context: dict[str, Any]) -> Alert:
    """What an operator needs to act on a failed task, from the callback context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    fields = {
        "event": "task_failed",
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": getattr(ti, "run_id", context.get("run_id")),
        "window_start": _iso(context.get("data_interval_start")),
        "window_end": _iso(context.get("data_interval_end")),
        "try_number": getattr(ti, "try_number", None),
        "log_url": getattr(ti, "log_url", None),
        "error": _last_line(context.get("exception")),
    }
    subject = f"[xdmod-usage] {dag_id}.{task_id} failed for {fields['window_start'] or 'no window'}"
    text = "\n".join(f"{key}: {value}" for key, value in fields.items())
    return Alert(subject, text, fields)


def lateness_alert(dag_id: str, deadline: str, context: dict[str, Any]) -> Alert:
    run = context.get("dag_run")
    fields = {
        "event": "deadline_missed",
        "dag_id": dag_id,
        "run_id": getattr(run, "run_id", None),
        "deadline": deadline,
        "window_start": _iso(getattr(run, "data_interval_start", None)),
        "window_end": _iso(getattr(run, "data_interval_end", None)),
    }
    subject = f"[xdmod-usage] {dag_id} is late: not done {deadline} after it was queued"
    return Alert(subject, "\n".join(f"{key}: {value}" for key, value in fields.items()), fields)


def _send_email(route: dict[str, Any], alert: Alert) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=route.get("conn_id") or "smtp_default") as hook:
        hook.send_email_smtp(
            to=route["to"],
            subject=alert.subject,
            html_content=f"<pre>{_html_escape(alert.text)}</pre>",
            from_email=route.get("sender") or "xdmod-usage@localhost",
        )


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)


def _send_slack(route: dict[str, Any], alert: Alert) -> None:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    SlackWebhookHook(slack_webhook_conn_id=route["conn_id"]).send(text=f"*{alert.subject}*\n```{alert.text}```")


def _send_webhook(route: dict[str, Any], alert: Alert) -> None:
    from airflow.providers.http.hooks.http import HttpHook

    HttpHook(method="POST", http_conn_id=route["conn_id"]).run(json={"subject": alert.subject, **alert.fields})


_SENDERS = {"email": _send_email, "slack": _send_slack, "webhook": _send_webhook}


def deliver(routes: list[dict[str, Any]], alert: Alert) -> list[str]:
    """Send to every route; a failing route is logged and the others still get the alert."""
    log.warning("ALERT %s\n%s", alert.subject, alert.text)
    if not routes:
        log.warning("no alert route configured: the alert above is only in this log")
        return []
    delivered = []
    for route in routes:
        try:
            _SENDERS[route["type"]](route, alert)
            delivered.append(route["type"])
        except Exception:
            log.exception("alert route %s (%s) failed", route["type"], route.get("conn_id") or route.get("to"))
    return delivered


class UsageFailureNotifier(BaseNotifier):
    """on_failure_callback for every task: one alert to every configured route."""

    template_fields = ()

    def __init__(self, routes: list[dict[str, Any]]) -> None:
        super().__init__()
        self.routes = routes

    def notify(self, context: dict[str, Any]) -> None:
        deliver(self.routes, failure_alert(context))


async def deadline_missed(routes: list[dict[str, Any]], dag_id: str, deadline: str, **context: Any) -> None:
    """DeadlineAlert callback (run by the triggerer): the DAG run is late. Delivery runs in a thread
    so the hooks' blocking I/O never stalls the triggerer's event loop."""
    import asyncio

    await asyncio.to_thread(deliver, routes, lateness_alert(dag_id, deadline, context.get("context", context)))
