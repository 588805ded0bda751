"""Checks exchanges with Microsoft Graph, and hoist's fixtures of Graph's
objects, against Graph's own OpenAPI description (the part hoist uses, from
scripts/graph-openapi/generate), with openapi-core and the JSON Schema
validator under it. Run by tests/entra/openapi.rs.

    python graph_contract.py DESCRIPTIONS < CHECKS.json

DESCRIPTIONS is a directory holding v1.0.json and beta.json. CHECKS is
{"exchanges": [...], "fixtures": [...]}:
- an exchange is {"method", "url" (path and query, from /v1.0 or /beta),
  "request" (body or null), "status", "response" (body or null)};
- a fixture is {"name", "version", "schema" (a component schema's name),
  "value"}.

Prints one JSON document: {"problems": [...], "operations": [...]}, the
operations being those the exchanges reached ("GET /v1.0/me"). Exits 0.

Two things are checked beyond what the description's schemas say, each
because Graph itself does them, as its reference pages show:
- a request body, or a fixture of one of Graph's types, naming a property
  the schema does not declare is a problem: Graph refuses such bodies
  (400, "Invalid property"), and a fixture must hold only what Graph
  documents;
- a `$expand` item may carry nested options in parentheses
  (`policy($expand=rules)`), which OData allows and the description's
  list of expandable properties cannot show: the options are set aside
  before the item is checked against that list.
"""

import json
import re
import sys
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS31Validator

HOST = "https://graph.microsoft.com"


def load(directory):
    specs = {}
    for version in ("v1.0", "beta"):
        spec = json.loads((Path(directory) / f"{version}.json").read_text())
        specs[version] = (spec, OpenAPI.from_dict(spec))
    return specs


def templates(spec, version):
    """Each path template of the description as a regex, the most literal
    first, so that `filterByCurrentUser(on='{on}')` wins over `{id}`."""
    found = []
    for template in spec["paths"]:
        pattern, literal = "", 0
        for part in re.split(r"(\{\w+\})", template):
            if re.fullmatch(r"\{\w+\}", part):
                pattern += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                pattern += re.escape(part)
                literal += len(part)
        found.append((literal, template, re.compile(f"/{re.escape(version)}{pattern}")))
    found.sort(key=lambda t: -t[0])
    return [(template, regex) for _, template, regex in found]


def strip_nested(expand):
    out, depth = "", 0
    for c in expand:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0:
            out += c
    return out


def resolve(spec, schema):
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def declared(spec, schema):
    """The properties an object schema declares, through $ref, allOf and
    anyOf (the converter's nullable wrapper)."""
    schema = resolve(spec, schema)
    props = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []) + schema.get("anyOf", []):
        props.update(declared(spec, part))
    return props


def typed(spec, schema, value):
    """The schema an object names with `@odata.type`, where the description
    has it (a policy's rules are of several types), else `schema`."""
    named = value.get("@odata.type", "").lstrip("#") if isinstance(value, dict) else ""
    if named in spec["components"]["schemas"]:
        return {"$ref": f"#/components/schemas/{named}"}
    return schema


def undeclared(spec, schema, value, where):
    problems = []
    if isinstance(value, dict):
        props = declared(spec, typed(spec, schema, value))
        if not props:
            return problems
        for key, item in value.items():
            if key.startswith("@odata."):
                continue
            if key not in props:
                problems.append(f"{where or 'the object'}: `{key}` is not a property of this object")
            else:
                problems += undeclared(spec, props[key], item, f"{where}.{key}")
    elif isinstance(value, list):
        items = resolve(spec, schema).get("items")
        if items:
            for i, item in enumerate(value):
                problems += undeclared(spec, items, item, f"{where}[{i}]")
    return problems


def describe(error):
    """An openapi-core error with the schema errors under it, in one line."""
    parts = [str(error)]
    cause = error.__cause__
    for detail in getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None) or []:
        parts.append(f"{'/'.join(map(str, detail.absolute_path)) or 'value'}: {detail.message}")
    return "; ".join(dict.fromkeys(parts))


def check_exchange(specs, routes, exchange):
    method = exchange["method"].lower()
    parts = urlsplit(exchange["url"])
    path = unquote(parts.path)
    version = path.split("/")[1]
    where = f"{exchange['method']} {exchange['url']}"
    if version not in specs:
        return None, [f"{where}: not a Graph version hoist's description covers"]
    spec, api = specs[version]
    for template, regex in routes[version]:
        found = regex.fullmatch(path)
        if found and method in spec["paths"][template]:
            break
    else:
        return None, [f"{where}: no operation of Graph's description has this method and path"]
    operation = f"{exchange['method']} /{version}{template}"
    args = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        args[key] = strip_nested(value) if key == "$expand" else value
    body = exchange.get("request")
    data = json.dumps(body).encode() if body is not None else None
    request = MockRequest(
        HOST,
        method,
        path,
        path_pattern=f"/{version}{template}",
        args=args,
        view_args=found.groupdict(),
        data=data,
    )
    problems = []
    checked = api.unmarshal_request(request)
    problems += [f"{where}: request: {describe(e)}" for e in checked.errors]
    if body is not None:
        media = spec["paths"][template][method].get("requestBody", {}).get("content", {})
        schema = media.get("application/json", {}).get("schema")
        if schema:
            problems += [f"{where}: request: {p}" for p in undeclared(spec, schema, body, "body")]
    status = exchange.get("status")
    if status is not None:
        answer = exchange.get("response")
        response = MockResponse(
            json.dumps(answer).encode() if answer is not None else b"",
            status_code=status,
            content_type="application/json" if answer is not None else None,
        )
        answered = api.unmarshal_response(request, response)
        problems += [f"{where}: answer {status}: {describe(e)}" for e in answered.errors]
    return operation, problems


def check_fixture(specs, fixture):
    spec, _ = specs[fixture["version"]]
    name = fixture["schema"]
    if name not in spec["components"]["schemas"]:
        return [f"fixture {fixture['name']}: {name} is not a schema of Graph {fixture['version']}"]
    validator = OAS31Validator(
        {"$ref": f"#/components/schemas/{name}", "components": spec["components"]},
        format_checker=OAS31Validator.FORMAT_CHECKER,
    )
    problems = [
        f"fixture {fixture['name']}: {'/'.join(map(str, e.absolute_path)) or 'the object'}: {e.message}"
        for e in validator.iter_errors(fixture["value"])
    ]
    # Objects of a derived type, checked as that type too.
    pending = [("", fixture["value"])]
    while pending:
        where, value = pending.pop()
        if isinstance(value, dict):
            named = value.get("@odata.type", "").lstrip("#")
            if where and named in spec["components"]["schemas"]:
                derived = OAS31Validator(
                    {"$ref": f"#/components/schemas/{named}", "components": spec["components"]},
                    format_checker=OAS31Validator.FORMAT_CHECKER,
                )
                problems += [
                    f"fixture {fixture['name']}: {where}: {e.message}" for e in derived.iter_errors(value)
                ]
            pending += [(f"{where}/{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            pending += [(f"{where}/{i}", v) for i, v in enumerate(value)]
    # Graph's own types only: the error body's schema is the converter's
    # generic OData one, which spells Graph's `innerError` otherwise.
    if name.startswith("microsoft.graph."):
        schema = {"$ref": f"#/components/schemas/{name}"}
        problems += [
            f"fixture {fixture['name']}: {p}" for p in undeclared(spec, schema, fixture["value"], "")
        ]
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    specs = load(sys.argv[1])
    routes = {version: templates(spec, version) for version, (spec, _) in specs.items()}
    checks = json.load(sys.stdin)
    problems, operations = [], set()
    for exchange in checks.get("exchanges", []):
        operation, found = check_exchange(specs, routes, exchange)
        if operation:
            operations.add(operation)
        problems += found
    for fixture in checks.get("fixtures", []):
        problems += check_fixture(specs, fixture)
    json.dump({"problems": problems, "operations": sorted(operations)}, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
