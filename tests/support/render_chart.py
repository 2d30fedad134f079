#!/usr/bin/env python3
"""Lints, renders and schema-checks a Helm chart with the real Helm engine, for tests/chart.rs.

The engine is Helm v4's Go SDK, loaded as a library by the Python package `helm-python-sdk`
(`pip install -r scripts/test-requirements.txt`); no `helm` binary is involved.

Reads one JSON request on stdin and writes one JSON answer on stdout:

    {"op": "version"} -> {"ok": true, "helm": "v4..."}
    {"op": "lint", "chart": DIR, "values": {...}}
        -> {"ok": true, "report": {"messages": [{"severity", "path", "error"}], "errors": [...]}}
    {"op": "render", "chart": DIR, "values": {...}, "name": NAME, "namespace": NS}
        -> {"ok": true, "manifests": {"lifeboat/templates/x.yaml": "...", ...}}
        or {"ok": false, "error": "..."} when Helm refuses the values or a template fails
    {"op": "validate", "chart": DIR, "values": {...}}
        -> {"ok": true} or {"ok": false, "error": "..."} (values.schema.json)

Exit status 3 (and a message on stderr) means helm-python-sdk is not installed.
"""

import json
import sys

MISSING = 3


def main() -> int:
    try:
        import helm_python
    except ImportError as e:
        print(f"helm-python-sdk is not installed ({e})", file=sys.stderr)
        return MISSING

    request = json.load(sys.stdin)
    op = request["op"]
    if op == "version":
        json.dump({"ok": True, "helm": helm_python.helm_sdk_version()}, sys.stdout)
        return 0
    chart_dir = request["chart"]
    values = request.get("values") or None

    if op == "lint":
        report = helm_python.lint(chart_dir, values, strict=True)
        answer = {"ok": True, "report": report}
    else:
        try:
            chart = helm_python.Chart.load(chart_dir)
            if op == "render":
                manifests = chart.render(
                    values,
                    name=request.get("name", "lifeboat"),
                    namespace=request.get("namespace", "default"),
                    is_install=True,
                )
                answer = {"ok": True, "manifests": manifests}
            elif op == "validate":
                chart.validate_schema(values)
                answer = {"ok": True}
            else:
                raise SystemExit(f"unknown op {op!r}")
        except helm_python.HelmError as e:
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}

    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
