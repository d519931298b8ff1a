#!/usr/bin/env python3
"""Example sendfleet producer: publish send requests to RabbitMQ, optionally wait for delivery.

Copy this file into your service and adapt it. It shows everything a producer needs:

* the **send request** format: a MessagePack map with named fields (see
  ``docs/protocol.md`` in the sendfleet repository);
* **where to publish**: the fanout exchange ``<prefix>.requests`` (any routing key);
* **publisher confirms**, so a request is only reported as published once the broker
  has taken responsibility for it (persistent, routed to a durable queue);
* **reading events** from the topic exchange ``<prefix>.events`` (routing key
  ``<kind>.<channel>.<provider>``), here through a private, temporary queue.

Examples::

    python producer.py --to +14155550100 --text "Your code is 1234"
    python producer.py --to +14155550100 --text "Hi" --channel rcs --count 5 --wait-delivered 30

Exit status: 0 on success (and, with ``--wait-delivered``, only if a ``delivered`` event
arrived for every message published), 1 otherwise, 2 for bad arguments.

Requires Python 3.9+, ``pika`` and ``msgpack`` (see ``requirements.txt``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Set

import msgpack
import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

#: The send-request schema version this example writes.
SCHEMA_VERSION = 1

#: E.164: a '+' then 8 to 15 digits (the dispatcher rejects anything else).
E164 = re.compile(r"^\+[0-9]{8,15}$")

#: Metadata attached to every request; it is copied into every event about the message.
METADATA = {"source": "python-example"}


def build_request(message_id: str, channel: str, to: str, text: str) -> Dict[str, Any]:
    """Return one text send request as a plain dict, ready for MessagePack.

    Optional fields (``provider``, ``sender``, ``options``, ``fallback``, ``trace_id``,
    ``recipients`` for bulk sends, ``template``…) are simply left out; the dispatcher
    fills in the defaults. See docs/protocol.md for the complete format.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "message_id": message_id,
        "channel": channel,
        "to": to,
        "content": {"type": "text", "text": text},
        "metadata": dict(METADATA),
    }


def message_ids(base: str, count: int) -> List[str]:
    """Return ``count`` message ids: ``base`` itself for one message, ``base-1..N`` for more.

    Message ids should be unique per message: sendfleet passes them to the provider and
    every event carries them, so they are how you match outcomes to requests.
    """
    if count == 1:
        return [base]
    return [f"{base}-{i}" for i in range(1, count + 1)]


def declare_event_queue(channel: BlockingChannel, prefix: str) -> str:
    """Declare a private queue receiving every event of ``<prefix>.events``; return its name.

    The queue is server-named, exclusive (only this connection may use it) and
    auto-delete, so it disappears when the producer exits. Declare it *before*
    publishing, otherwise a fast delivery report could be missed.

    A real consumer would rather bind a durable queue of its own, possibly to a narrower
    key such as ``delivered.#`` or ``*.sms.*``.
    """
    result = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
    queue = result.method.queue
    channel.queue_bind(queue=queue, exchange=f"{prefix}.events", routing_key="#")
    return queue


def publish(
    channel: BlockingChannel,
    prefix: str,
    request: Dict[str, Any],
) -> None:
    """Publish one request and wait for the broker's confirm.

    With ``confirm_delivery()`` enabled on the channel, ``basic_publish`` blocks until the
    broker acknowledges the message and raises if it is nacked
    (``pika.exceptions.NackError``) or, thanks to ``mandatory=True``, if no queue is bound
    to the exchange (``pika.exceptions.UnroutableError``).
    """
    body = msgpack.packb(request, use_bin_type=True)
    properties = pika.BasicProperties(
        content_type="application/msgpack",
        delivery_mode=2,  # persistent: survives a broker restart
        message_id=request["message_id"],
        app_id=METADATA["source"],
    )
    channel.basic_publish(
        exchange=f"{prefix}.requests",
        routing_key="",  # the requests exchange is a fanout: the key is ignored
        body=body,
        properties=properties,
        mandatory=True,
    )


def wait_for_delivered(
    channel: BlockingChannel,
    queue: str,
    wanted: Iterable[str],
    timeout: float,
) -> Set[str]:
    """Consume events until every id in ``wanted`` was delivered or ``timeout`` seconds pass.

    Prints every event about one of ``wanted`` (accepted, delivered, failed, …) and
    returns the ids still without a ``delivered`` event (empty on success).
    """
    ours = frozenset(wanted)
    missing = set(ours)
    deadline = time.monotonic() + timeout
    # inactivity_timeout makes the generator yield (None, None, None) when idle, so the
    # deadline is checked even if no event ever arrives.
    for method, _properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.5):
        if method is not None:
            event = decode_event(body)
            if event is not None and event.get("message_id") in ours:
                print_event(event)
                if event.get("kind") == "delivered":
                    missing.discard(event["message_id"])
        if not missing or time.monotonic() >= deadline:
            break
    channel.cancel()
    return missing


def decode_event(body: bytes) -> Optional[Dict[str, Any]]:
    """Decode one event (a MessagePack map with named fields); None if it is not one."""
    try:
        event = msgpack.unpackb(body, raw=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as err:
        print(f"warning: skipping an undecodable event: {err}", file=sys.stderr)
        return None
    if not isinstance(event, dict):
        print("warning: skipping an event that is not a map", file=sys.stderr)
        return None
    return event


def print_event(event: Dict[str, Any]) -> None:
    """Print the interesting fields of an event on one line."""
    line = (
        f"event kind={event.get('kind')} message_id={event.get('message_id')}"
        f" channel={event.get('channel')} provider={event.get('provider')}"
    )
    if event.get("reason"):
        line += f" reason={event['reason']!r}"
    print(line, flush=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse and check the command line."""
    parser = argparse.ArgumentParser(
        description="Publish sendfleet send requests (MessagePack) to RabbitMQ.",
    )
    parser.add_argument(
        "--amqp-url",
        default="amqp://guest:guest@127.0.0.1:5672/%2f",
        help="RabbitMQ URL (default: %(default)s)",
    )
    parser.add_argument("--prefix", default="sendfleet", help="sendfleet broker prefix (default: %(default)s)")
    parser.add_argument("--to", required=True, help="recipient in E.164, e.g. +14155550100")
    parser.add_argument("--text", required=True, help="message text")
    parser.add_argument("--channel", choices=["sms", "rcs"], default="sms", help="channel (default: %(default)s)")
    parser.add_argument(
        "--message-id",
        default=None,
        help="message id (default: a random UUID); with --count N the ids are <id>-1 … <id>-N",
    )
    parser.add_argument("--count", type=int, default=1, help="how many messages to send (default: 1)")
    parser.add_argument(
        "--wait-delivered",
        type=float,
        metavar="SECONDS",
        default=None,
        help="wait up to SECONDS for a 'delivered' event for every message; exit 1 if one is missing",
    )
    args = parser.parse_args(argv)
    if not E164.match(args.to):
        parser.error(f"--to must be E.164 ('+' and 8-15 digits), got {args.to!r}")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.wait_delivered is not None and args.wait_delivered <= 0:
        parser.error("--wait-delivered must be positive")
    if args.message_id is None:
        args.message_id = str(uuid.uuid4())
    return args


def run(args: argparse.Namespace) -> int:
    """Connect, publish the requests, optionally wait for their delivery; return the exit status."""
    ids = message_ids(args.message_id, args.count)
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()

        events_queue = None
        if args.wait_delivered is not None:
            events_queue = declare_event_queue(channel, args.prefix)

        for message_id in ids:
            publish(channel, args.prefix, build_request(message_id, args.channel, args.to, args.text))
            print(f"published message_id={message_id} channel={args.channel} to={args.to}", flush=True)

        if events_queue is None:
            return 0
        missing = wait_for_delivered(channel, events_queue, ids, args.wait_delivered)
        if missing:
            print(
                f"timed out after {args.wait_delivered:g}s: no delivered event for {', '.join(sorted(missing))}",
                file=sys.stderr,
            )
            return 1
        print(f"all {len(ids)} message(s) delivered", flush=True)
        return 0
    finally:
        if connection.is_open:
            connection.close()


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: run, turning broker errors into a message and exit status 1."""
    args = parse_args(argv)
    try:
        return run(args)
    except pika.exceptions.ChannelClosedByBroker as err:
        # Typically 404 NOT_FOUND: the exchange does not exist (wrong --prefix, or no
        # sendfleet service has declared the topology yet).
        print(f"error: the broker closed the channel: {err.reply_code} {err.reply_text}", file=sys.stderr)
    except pika.exceptions.UnroutableError:
        print(f"error: no queue is bound to {args.prefix}.requests; is the dispatcher set up?", file=sys.stderr)
    except pika.exceptions.NackError:
        print("error: the broker refused (nacked) a request", file=sys.stderr)
    except pika.exceptions.AMQPConnectionError as err:
        # Print host and port only: the URL may hold a password.
        params = pika.URLParameters(args.amqp_url)
        print(f"error: cannot connect to RabbitMQ at {params.host}:{params.port}: {err!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
