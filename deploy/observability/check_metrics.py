#!/usr/bin/env python3
"""Checks that alerts.yml and dashboard.json name only metrics the services export.

The metric names come from the code, not from a list kept by hand: every `register` call of
services/whistle-dispatch/src/metrics.rs and services/whistle-query/src/metrics.rs, under its
registry's prefix, with the series names Prometheus gives each type (`_total` for a counter;
`_bucket`, `_sum`, `_count` for a histogram). The dashboard must also be well-formed JSON: every
panel has a unique id, a position, the `${datasource}` variable and queries.

Usage: check_metrics.py REPO_ROOT (check.sh runs it). Exit 1 with the problems listed.
"""

import json
import pathlib
import re
import sys

SOURCES = [
    "services/whistle-dispatch/src/metrics.rs",
    "services/whistle-query/src/metrics.rs",
]
# `registry.register("name", "help", variable.clone())`.
REGISTER = re.compile(r'register\(\s*"([a-z0-9_]+)",\s*"(?:[^"\\]|\\.)*",\s*(\w+)\.clone\(\)', re.S)
# dispatch's helpers: `counter(&mut registry, "name", …)`, `gauge(…)`, `seconds_gauge(…)`.
HELPER = re.compile(r'\b(counter|gauge|seconds_gauge)\(\s*&mut registry,\s*"([a-z0-9_]+)"')
PREFIX = re.compile(r'Registry::with_prefix\("([a-z0-9_]+)"\)')
METRIC = re.compile(r"\bwhistle_[a-z0-9_]+")


def kind_of(source: str, variable: str) -> str:
    """The type of a registered variable, from its `let` statement."""
    binding = re.search(r"let\s+" + re.escape(variable) + r"\b[^=]*=([^;]*);", source, re.S)
    if not binding:
        raise SystemExit(f"cannot find `let {variable} = …;` to tell its metric type")
    expression = binding.group(1)
    for needle, kind in (("Histogram", "histogram"), ("Timings", "histogram"),
                         ("Counter", "counter"), ("Gauge", "gauge")):
        if needle in expression:
            return kind
    raise SystemExit(f"cannot tell the metric type of `{variable}` from `{expression.strip()}`")


def series_of(name: str, kind: str) -> list[str]:
    if kind == "counter":
        return [name + "_total"]
    if kind == "histogram":
        return [name + suffix for suffix in ("_bucket", "_sum", "_count")]
    return [name]


def exported(root: pathlib.Path) -> dict[str, str]:
    """Every series the services export, with its metric's name."""
    series = {}
    for path in SOURCES:
        source = (root / path).read_text()
        prefix = PREFIX.search(source)
        if not prefix:
            raise SystemExit(f"{path}: no Registry::with_prefix")
        found = [(name, kind_of(source, variable)) for name, variable in REGISTER.findall(source)]
        found += [(name, "counter" if helper == "counter" else "gauge")
                  for helper, name in HELPER.findall(source)]
        # Every registration by name must have been understood, or the list would be short.
        literal_registrations = len(re.findall(r'register\(\s*"', source))
        if literal_registrations != len(REGISTER.findall(source)):
            raise SystemExit(f"{path}: {literal_registrations} registrations, "
                             f"{len(REGISTER.findall(source))} understood; update check_metrics.py")
        if not found:
            raise SystemExit(f"{path}: no metrics found")
        for name, kind in found:
            metric = f"{prefix.group(1)}_{name}"
            for s in series_of(metric, kind):
                series[s] = metric
    return series


def dashboard_problems(dashboard: dict, series: dict[str, str]) -> tuple[list[str], set[str]]:
    problems, used, ids = [], set(), set()
    panels = list(dashboard.get("panels", []))
    for row in dashboard.get("panels", []):
        panels += row.get("panels", [])
    if not panels:
        problems.append("dashboard.json: no panels")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        problems.append("dashboard.json: no `datasource` template variable")
    for panel in panels:
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"panel {title!r}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        if not {"h", "w", "x", "y"} <= set(panel.get("gridPos", {})):
            problems.append(f"panel {title!r}: no complete gridPos")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r}: datasource is not ${{datasource}}")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel {title!r}: no queries")
        for target in targets:
            names = METRIC.findall(target.get("expr", ""))
            if not names:
                problems.append(f"panel {title!r}: query {target.get('expr')!r} names no whistle metric")
            for name in names:
                if name not in series:
                    problems.append(f"panel {title!r}: {name} is not exported by the services")
                else:
                    used.add(series[name])
    return problems, used


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    here = root / "deploy/observability"
    series = exported(root)
    problems = []
    for name in sorted(set(METRIC.findall((here / "alerts.yml").read_text()))):
        if name not in series:
            problems.append(f"alerts.yml: {name} is not exported by the services")
    try:
        dashboard = json.loads((here / "dashboard.json").read_text())
    except json.JSONDecodeError as e:
        print(f"dashboard.json is not JSON: {e}")
        return 1
    more, used = dashboard_problems(dashboard, series)
    problems += more
    metrics = sorted(set(series.values()))
    print(f"{len(metrics)} metrics exported by the code; the dashboard shows {len(used)}")
    missing = [m for m in metrics if m not in used]
    if missing:
        print("not on the dashboard: " + ", ".join(missing))
    for problem in problems:
        print("error: " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
