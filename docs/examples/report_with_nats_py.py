"""Files a report with nats-py and proto3 JSON, as an outside client would, and prints its outcome.

    pip install nats-py
    python3 docs/examples/report_with_nats_py.py nats://127.0.0.1:54222 150602001001001
"""

import asyncio
import datetime
import json
import sys
import uuid

import nats


async def main(url: str, grid: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()
    report_id = f"py-{uuid.uuid4()}"

    async def on_event(msg):
        # Events are protobuf (whistle.v1.Event); the report id appears verbatim in its bytes.
        if report_id.encode() in msg.data and not outcome.done():
            outcome.set_result(msg.subject)

    await nc.subscribe("whistle.event.>", cb=on_event)
    report = {
        "reportId": report_id,
        "reporterId": f"gw-{grid}",
        "gridCode": grid,
        "category": "heating.no_heat",
        "urgency": "URGENCY_URGENT",
        "title": "3号楼停暖",
        "reportedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    subject = f"whistle.report.{grid[:6]}.{grid[:9]}.{grid[:12]}.{grid}"
    headers = {"Nats-Msg-Id": report_id, "Content-Type": "application/json"}
    for attempt in range(2):  # the second publish is a duplicate: still one incident
        ack = await js.publish(subject, json.dumps(report).encode(), headers=headers)
        print(f"publish {attempt + 1}: stream {ack.stream} seq {ack.seq} duplicate={ack.duplicate}")
    print("event on", await asyncio.wait_for(outcome, 10))
    await js.publish(subject, b"\xff garbage", headers={"Nats-Msg-Id": f"{report_id}-garbage"})
    rejected = await js.subscribe("whistle.rejected.>", ordered_consumer=True)
    while (msg := await rejected.next_msg(timeout=10)).data != b"\xff garbage":
        pass
    print("rejected:", msg.subject, msg.headers.get("Whistle-Reject-Reason"), msg.headers.get("Whistle-Reject-Message"))
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
