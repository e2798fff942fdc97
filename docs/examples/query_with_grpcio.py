#!/usr/bin/env python3
"""A client of whistle-query written with nothing from this project but its .proto files.

It compiles proto/whistle/v1 with grpcio-tools at run time, then, with a bearer token:
lists incidents of an area page by page (keyset tokens), and follows WatchEvents live,
resuming after a disconnect from the last sequence it saw.

    pip install grpcio grpcio-tools
    TOKEN=$(whistle token create --role viewer --area 150602)
    python3 docs/examples/query_with_grpcio.py --token "$TOKEN" --area 150602 --watch-seconds 20

Exit status 0 when every page and the stream worked; the figures are printed as it goes.
"""

import argparse
import importlib
import os
import pathlib
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"


def compile_protos():
    """Generates the Python modules of proto/whistle/v1 into a temporary directory."""
    out = tempfile.mkdtemp(prefix="whistle-proto-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "whistle" / "v1").glob("*.proto"))
    status = protoc.main(
        ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + files
    )
    if status != 0:
        sys.exit(f"protoc failed with status {status}")
    sys.path.insert(0, out)
    pb = importlib.import_module("whistle.v1.command_center_pb2")
    rpc = importlib.import_module("whistle.v1.command_center_pb2_grpc")
    return pb, rpc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--token", default=os.environ.get("WHISTLE_TOKEN"), required="WHISTLE_TOKEN" not in os.environ)
    parser.add_argument("--area", default="")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--max-pages", type=int, default=20)
    parser.add_argument("--watch-seconds", type=float, default=10)
    args = parser.parse_args()

    pb, rpc = compile_protos()
    metadata = [("authorization", f"Bearer {args.token}")]
    channel = grpc.insecure_channel(args.target)
    client = rpc.CommandCenterStub(channel)

    # Page through the incidents, newest first; no id may appear twice.
    seen, token, pages = set(), "", 0
    while pages < args.max_pages:
        page = client.ListIncidents(
            pb.ListIncidentsRequest(area_code=args.area, page_size=args.page_size, page_token=token),
            metadata=metadata,
        )
        pages += 1
        for incident in page.incidents:
            if incident.incident_id in seen:
                sys.exit(f"incident {incident.incident_id} listed twice")
            seen.add(incident.incident_id)
        print(f"page {pages}: {len(page.incidents)} incidents, {len(seen)} so far")
        token = page.next_page_token
        if not token:
            break

    # Follow events; drop the connection halfway and resume from the last sequence seen.
    last, received, deadline = 0, 0, time.monotonic() + args.watch_seconds
    for attempt in ("first connection", "after reconnecting"):
        half = time.monotonic() + args.watch_seconds / 2
        stream = client.WatchEvents(
            pb.WatchEventsRequest(area_code=args.area, since_sequence=last),
            metadata=metadata,
            timeout=max(0.1, min(half, deadline) - time.monotonic()),
        )
        try:
            for response in stream:
                if response.HasField("gap"):
                    print(f"gap: {response.gap.reason}")
                    last = response.gap.next_sequence - 1
                    continue
                event = response.event
                # Filtered by area, sequences skip other areas' events but never go back or repeat.
                if event.sequence <= last:
                    sys.exit(f"sequence {event.sequence} after {last}: repeated or out of order")
                last = event.sequence
                received += 1
                print(f"#{event.sequence} {event.event.kind} {event.event.incident_id} {event.event.grid_code}")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        print(f"{attempt}: {received} events so far, last sequence {last}")
    print(f"ok: {len(seen)} incidents on {pages} pages, {received} events")


if __name__ == "__main__":
    main()
