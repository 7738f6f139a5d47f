#!/usr/bin/python3
"""Builds an instance on a novalet compute host with nothing but pika and
docs/messages.md: follows the instance's events on a queue of its own,
sends the build (a cast), waits for create.end, then asks for the serial
console (a call) until the guest's marker shows. Prints one JSON line per
step; exits 0 when the marker came, 1 otherwise.

usage: pika_build.py AMQP_URL HOST UUID KERNEL_NAME RAMDISK_NAME CMDLINE
"""
import json
import sys
import time
import uuid as uuidlib
from datetime import datetime, timezone

import pika

url, host, instance_uuid, kernel, ramdisk, cmdline = sys.argv[1:7]


def envelope(kind, body):
    return json.dumps({
        "version": 1,
        "kind": kind,
        "id": str(uuidlib.uuid4()),
        "sent_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "body": body,
    })


def say(**fields):
    print(json.dumps(fields), flush=True)


connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
# Our own queue for this instance's events, bound before the request is sent.
events = channel.queue_declare(queue="", exclusive=True).method.queue
channel.queue_bind(queue=events, exchange="novalet.events", routing_key="instance.%s.#" % instance_uuid)
replies = channel.queue_declare(queue="", exclusive=True).method.queue

build = {
    "instance": {
        "uuid": instance_uuid,
        "name": "pika-1",
        "flavor": {"name": "m1.nano", "vcpus": 1, "memory_mb": 256, "root_gb": 0, "extra_specs": {}},
        "image": {"kernel": {"name": kernel}, "ramdisk": {"name": ramdisk}, "cmdline": cmdline, "properties": {}},
    }
}
channel.basic_publish(
    exchange="novalet",
    routing_key="compute." + host,
    body=envelope("build", build),
    properties=pika.BasicProperties(content_type="application/json", delivery_mode=2),
)
say(step="sent", kind="build")

deadline = time.time() + 120
ended = None
while time.time() < deadline and ended is None:
    method, properties, body = channel.basic_get(queue=events, auto_ack=True)
    if method is None:
        time.sleep(0.2)
        continue
    message = json.loads(body)
    say(step="event", routing_key=method.routing_key, kind=message["kind"], state=message["body"].get("state"))
    if method.routing_key.endswith("create.end") or method.routing_key.endswith("create.error"):
        ended = message

if ended is None or ended["body"].get("event") != "create.end":
    say(step="failed", why="no create.end", got=ended)
    sys.exit(1)

while time.time() < deadline:
    correlation = str(uuidlib.uuid4())
    channel.basic_publish(
        exchange="novalet",
        routing_key="compute." + host,
        body=envelope("console", {"uuid": instance_uuid, "lines": 50}),
        properties=pika.BasicProperties(content_type="application/json", delivery_mode=2, reply_to=replies, correlation_id=correlation),
    )
    reply = None
    while reply is None and time.time() < deadline:
        method, properties, body = channel.basic_get(queue=replies, auto_ack=True)
        if method is None:
            time.sleep(0.1)
        elif properties.correlation_id == correlation:
            reply = json.loads(body)
    if reply is None:
        break
    lines = reply["body"]["result"]["lines"] if reply["body"]["ok"] else []
    marker = [line for line in lines if "NOVALET-TEST-GUEST-READY" in line]
    if marker:
        say(step="marker", line=marker[0])
        connection.close()
        sys.exit(0)
    time.sleep(0.5)

say(step="failed", why="no marker on the console")
sys.exit(1)
