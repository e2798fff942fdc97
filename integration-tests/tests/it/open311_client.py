"""Drives Whistle's Open311 door with georeport, a published GeoReport v2 client (PyPI), for
it::open311: prints what the client made of each resource, in JSON and in XML, as JSON.

    python3 open311_client.py BASE_URL API_KEY SERVICE_REQUEST_ID

georeport sends no api_key on its GETs (it assumes public reads); the door wants a key on every
call, so each GET carries it as `authorization: Bearer`. Nothing else of the client is changed.
"""

import functools
import json
import sys

import requests
from georeport import GeoReport

base, key, request_id = sys.argv[1:4]
requests.get = functools.partial(requests.get, headers={"Authorization": f"Bearer {key}"})


def as_list(value):
    # xmltodict makes one repeated element a dict and several a list.
    return value if isinstance(value, list) else [value]


out = {}
for fmt in ("json", "xml"):
    client = GeoReport(base, output_format=fmt)
    services = as_list(client.get_service_list())
    definition = client.get_service_definition("heating.no_heat")
    attributes = definition["attributes"]
    if fmt == "xml":
        attributes = as_list(attributes["attribute"])
    found = as_list(client.get_service_requests(service_request_id=request_id))
    one = client.get_service_request(request_id)
    try:
        client.get_service_request("o311-no-such-request")
        missing = 200
    except requests.HTTPError as error:
        missing = error.response.status_code
    out[fmt] = {
        "services": [s["service_code"] for s in services],
        "definition": definition["service_code"],
        "attributes": [a["code"] for a in attributes],
        "found": [r["service_request_id"] for r in found],
        "status": one["status"],
        "service_code": one["service_code"],
        "missing": missing,
    }
print(json.dumps(out, ensure_ascii=False))
