"""Notifications through Prefect automations, installed by `lensflow up` on its server:

- reviewers, when a lensflow flow run pauses for approval (`prefect.flow-run.Paused`);
- engineers, when a lensflow flow run fails or crashes (scheduled and UI-triggered runs alike).

Each goes to a URL the user configures: an http(s) webhook (a JSON POST `{"subject", "body", "name"}`, Prefect's
Custom Webhook block) or any other Apprise URL (slack://, msteams://, mailto://, tgram://, ...; Prefect's Apprise
notification block). The server sends them, so they arrive whichever worker or machine ran the flow. Re-running
`lensflow up` replaces lensflow's automations and blocks, and removes them when the URL is unset."""

from __future__ import annotations

from collections.abc import Callable

FLOWS = ["retrain", "reindex", "promote", "evaluate"]
PREFIX = "lensflow-"
REVIEW_BODY = (
    "{{ flow.name }} run '{{ flow_run.name }}' waits for a reviewer: {{ flow_run|ui_url }}\n"
    "Approve or reject in that form, or from a terminal: lensflow review list"
)
FAILED_BODY = (
    "{{ flow.name }} run '{{ flow_run.name }}' ended {{ flow_run.state.name }}: {{ flow_run|ui_url }}\n"
    "{{ flow_run.state.message }}"
)


def notification_block(url: str, name: str):
    """A Prefect notification block for `url`: Custom Webhook for http(s), Apprise for any other scheme."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    if url.startswith(("http://", "https://")):
        return CustomWebhookNotificationBlock(
            name=name, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}", "name": "{{name}}"}
        )
    # SlackWebhook is Prefect's concrete Apprise block: it hands the URL to Apprise, whatever its service
    return SlackWebhook(url=url)


def install(reviewers_url: str | None, engineers_url: str | None, log: Callable[[str], None] = print) -> dict[str, str]:
    """Create (or replace) lensflow's notification blocks and automations on the current Prefect API.
    Returns {automation name: its id}."""
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    triggers = {
        "review-waiting": (
            reviewers_url,
            {"prefect.flow-run.Paused"},
            "lensflow: a promotion waits for review",
            REVIEW_BODY,
        ),
        "run-failed": (
            engineers_url,
            {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            "lensflow: a flow run failed",
            FAILED_BODY,
        ),
    }
    remove()
    made = {}
    for key, (url, events, subject, body) in triggers.items():
        if not url:
            continue
        name = PREFIX + key
        block = notification_block(url, name)
        block_id = block.save(name, overwrite=True)
        automation = Automation(
            name=name,
            description=f"lensflow up: {subject}",
            trigger=EventTrigger(
                expect=events,
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOWS},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[SendNotification(block_document_id=block_id, subject=subject, body=body)],
        ).create()
        made[name] = str(automation.id)
        log(f"notify          {key} -> {redacted(url)}")
    return made


def remove() -> None:
    """Delete lensflow's automations (by name prefix); their blocks are overwritten or left unused."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith(PREFIX):
                client.delete_automation(automation.id)


def redacted(url: str) -> str:
    """The URL's scheme and host only: webhook paths and Apprise URLs carry tokens."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/')[0].split('@')[-1]}/..."
