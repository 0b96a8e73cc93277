#!/usr/bin/env python3
"""A service integrating with Closeloop over NATS, with nothing but a NATS client.

Needs `python3 -m pip install nats-py cryptography`. Settings (environment):
  NATS_URL                 nats://127.0.0.1:4222
  CLOSELOOP_PREFIX         closeloop.v1 (serve's --subject-prefix)
  CLOSELOOP_EVENTS_STREAM  CLOSELOOP_EVENTS (serve's --events-stream)
  CLOSELOOP_KEY            this service's Ed25519 private key (PEM), whose public key is in
                           serve's keys file under CLOSELOOP_KID with the roles used below
  CLOSELOOP_KID            the key's id in the keys file
  CLOSELOOP_SUPERVISOR     a registered team lead, for the assignment (lead-1)
  CLOSELOOP_AGENT          an agent of that team (agent-7)
"""
import asyncio
import base64
import json
import os
import time
import uuid

import nats
from cryptography.hazmat.primitives.serialization import load_pem_private_key

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
PREFIX = os.environ.get("CLOSELOOP_PREFIX", "closeloop.v1")
EVENTS_STREAM = os.environ.get("CLOSELOOP_EVENTS_STREAM", "CLOSELOOP_EVENTS")
KID = os.environ["CLOSELOOP_KID"]
with open(os.environ["CLOSELOOP_KEY"], "rb") as f:
    KEY = load_pem_private_key(f.read(), password=None)
SUPERVISOR = os.environ.get("CLOSELOOP_SUPERVISOR", "lead-1")
AGENT = os.environ.get("CLOSELOOP_AGENT", "agent-7")


# snippet: python-token
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(actor: dict) -> str:
    """A JWT for `actor`, signed EdDSA (Ed25519), valid five minutes."""
    header = {"alg": "EdDSA", "typ": "JWT", "kid": KID}
    claims = {"sub": actor["id"], "role": actor["role"], "exp": int(time.time()) + 300}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return signing_input + "." + b64url(KEY.sign(signing_input.encode()))


def auth(actor: dict) -> dict:
    return {"Authorization": "Bearer " + token(actor)}
# end snippet


def command(command_type: str, actor: dict, payload: dict) -> dict:
    return {"command_id": str(uuid.uuid4()), "type": command_type, "actor": actor,
            "payload": payload}


# snippet: python-send
async def send(nc, cmd: dict) -> dict:
    """Request/reply: the reply is the command's result."""
    msg = await nc.request(f"{PREFIX}.commands.{cmd['type']}", json.dumps(cmd).encode(),
                           timeout=30, headers=auth(cmd["actor"]))
    return json.loads(msg.data)


async def send_durable(nc, js, cmd: dict) -> dict:
    """Durable intake: kept by JetStream once acked, answered on the replies subject."""
    replies = await nc.subscribe(f"{PREFIX}.replies.{cmd['command_id']}")  # before publishing
    headers = {"Nats-Msg-Id": cmd["command_id"], **auth(cmd["actor"])}
    ack = await js.publish(f"{PREFIX}.commands.durable.{cmd['type']}",
                           json.dumps(cmd).encode(), headers=headers)
    print(f"durable: stored as {ack.stream} #{ack.seq}")
    reply = json.loads((await replies.next_msg(timeout=30)).data)
    await replies.unsubscribe()
    return reply
# end snippet


# snippet: python-assign
async def assign(nc, ticket_id: str, agent_id: str) -> None:
    """Assigns a ticket to `agent_id`, which auto-assignment may have done already."""
    lead = {"id": SUPERVISOR, "role": "supervisor"}
    reply = await send(nc, command("assign_ticket", lead,
                                   {"ticket_id": ticket_id, "agent_id": agent_id}))
    if reply["status"] in ("accepted", "duplicate"):
        print(f"assign: {reply['status']}, {agent_id} has it")
    elif reply["error"]["code"] == "invalid_transition":
        # Already this agent's (serve's process managers got there first), or the agent
        # cannot take it (another line, away): the message says which.
        print(f"assign: already assigned ({reply['error']['message']})")
    else:
        raise RuntimeError(f"assign_ticket refused: {reply}")
# end snippet


# snippet: python-events
async def await_event(js, ticket_id: str, event_type: str) -> None:
    """Reads the events stream with a durable pull consumer until `event_type` of the ticket."""
    deadline = time.monotonic() + 30
    sub = None
    while sub is None:
        try:  # the relay creates the stream when it first runs
            sub = await js.pull_subscribe(f"{PREFIX}.events.ticket.>", durable="integrate",
                                          stream=EVENTS_STREAM)
        except nats.js.errors.NotFoundError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    while time.monotonic() < deadline:
        try:
            messages = await sub.fetch(batch=100, timeout=1)
        except nats.errors.TimeoutError:
            continue
        for msg in messages:
            event = json.loads(msg.data)
            await msg.ack()  # at least once: de-duplicate by event_id, or keep the position
            if event["stream"] == f"ticket-{ticket_id}" and event["type"] == event_type:
                print(f"event: {event['type']} position {event['position']}"
                      f" version {event['version']} on {msg.subject}")
                for name in ("Nats-Msg-Id", "Closeloop-Position", "Closeloop-Log-Id",
                             "Nats-Expected-Last-Sequence"):
                    print(f"  header {name}: {msg.headers.get(name)}")
                return
    raise TimeoutError(f"no {event_type} of ticket {ticket_id} on {EVENTS_STREAM}")
# end snippet


# snippet: python-report
async def report_sla(nc) -> dict:
    """The SLA report, as `closeloop report sla --json` prints it."""
    auditor = {"id": "audit-1", "role": "auditor"}
    request = {"period": "total", "at_risk": True, "limit": 10}
    msg = await nc.request(f"{PREFIX}.queries.report_sla", json.dumps(request).encode(),
                           timeout=30, headers=auth(auditor))
    return json.loads(msg.data)
# end snippet


async def main() -> None:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    crm = {"id": "crm", "role": "service"}

    ticket_id = str(uuid.uuid4())
    reply = await send(nc, command("open_ticket", crm, {
        "ticket_id": ticket_id, "customer_id": "cust-1", "channel": "email",
        "category": "incident", "priority": "high", "subject": "Printer on fire"}))
    print(f"command: {reply['status']} {reply.get('events')} in {reply.get('stream')}")
    if reply["status"] != "accepted":
        raise RuntimeError(f"open_ticket refused: {reply}")

    second = str(uuid.uuid4())
    reply = await send_durable(nc, js, command("open_ticket", crm, {
        "ticket_id": second, "customer_id": "cust-2", "channel": "web",
        "category": "inquiry", "priority": "normal", "subject": "Where is my order?"}))
    print(f"durable: {reply['status']} {reply.get('events')}")

    await assign(nc, ticket_id, AGENT)
    await await_event(js, ticket_id, "ticket_opened")

    report = await report_sla(nc)
    if report.get("status") == "rejected":
        raise RuntimeError(f"report_sla refused: {report}")
    print(f"report: report_sla answered with {', '.join(sorted(report))}")
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
