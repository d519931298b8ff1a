#!/usr/bin/env python3
"""Extract self-contained JSON Schemas (draft 2020-12) for the request bodies the mock
provider validates, from Infobip's public OpenAPI 3.1 specs (stdlib only).

    python3 tools/extract_infobip_schemas.py [SPEC ...] [--out DIR] [--strict]

SPEC is a spec file or a directory holding infobip-rcs-openapi.json and
infobip-sms-openapi.json; default: ../shared/reference/infobip-openapi (relative to the
repo root). Each target path is looked up in whichever spec defines it.
Writes crates/sendfleet-mock-provider/schemas/<name>.json (and <name>-strict.json with
--strict).

What the transformation does:

* Takes the request body's component schema and the transitive closure of the
  component schemas it references; `#/components/schemas/<hash>.<Name>` becomes
  `#/$defs/<Name>` (identical same-named schemas are merged; different ones get a
  `_<hash prefix>` suffix).
* Drops documentation keywords (description, example(s), title, deprecated,
  readOnly/writeOnly, xml, externalDocs, x-*) -- only where they are keywords: a
  *property* called `title` or `description` (RCS card content, calendar suggestion,
  South Korea options) is kept.
* OpenAPI discriminators: a JSON Schema validator ignores `discriminator`, so a base
  with `discriminator.mapping` whose subtypes `allOf` the base would only check the
  base. Each such base `B` becomes
      B       = {allOf: [{$ref: B__base}, {if: {properties: {p: {const: K}}, required: [p]},
                                           then: {$ref: Sub_K}}, ...],
                 required: [p], properties: {p: {enum: [K, ...]}}}
      B__base = B without `discriminator` (and without a oneOf/anyOf that only lists the
                mapped subtypes)
  and every mapped subtype's `allOf: [{$ref: B}]` is pointed at `B__base` (no cycle).
  A discriminator without mapping gets OpenAPI's implicit mapping (schemas that allOf
  the base, keyed by their short name) or, if there are none, is dropped; both reported.
* --strict additionally writes *-strict.json where every object schema that is not
  merely an allOf part gets `unevaluatedProperties: false` (catches misspelt fields;
  unevaluatedProperties sees through allOf/$ref/if-then, additionalProperties would not).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = ROOT.parent / "shared" / "reference" / "infobip-openapi"
DEFAULT_OUT = ROOT / "crates" / "sendfleet-mock-provider" / "schemas"
SPEC_FILES = ("infobip-rcs-openapi.json", "infobip-sms-openapi.json")

# output name -> (HTTP method, path)
TARGETS = {
    "sms-send": ("post", "/sms/3/messages"),
    "rcs-send": ("post", "/rcs/2/messages"),
    "rcs-events": ("post", "/rcs/1/events"),
    "rcs-capability-query": ("post", "/rcs/2/capability-check/query"),
}

PREFIX = "#/components/schemas/"
DEFS = "#/$defs/"
DROP = {"description", "example", "examples", "title", "deprecated", "readOnly", "writeOnly", "xml", "externalDocs"}
# keywords whose value maps *names* (not keywords) to schemas
NAME_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
# keywords whose value is data, not schema: copied untouched
DATA = {"enum", "const", "default", "required", "discriminator"}
# keywords whose value is a schema / list of schemas (for walking)
SUB_SCHEMA = {"items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
              "propertyNames", "not", "if", "then", "else", "contentSchema"}
SUB_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
HASHED = re.compile(r"^([0-9a-f]{16,})\.(.+)$")


# ---------------------------------------------------------------------------- helpers

def short(name: str) -> str:
    m = HASHED.match(name)
    return m.group(2) if m else name


def component(ref: str) -> str:
    """`#/components/schemas/X` or a bare mapping value `X` -> `X`."""
    if ref.startswith(PREFIX):
        return ref[len(PREFIX):].replace("~1", "/").replace("~0", "~")
    if ref.startswith("#") or "/" in ref:
        raise SystemExit(f"unsupported reference {ref!r} (only local component schemas are handled)")
    return ref


def pointer(name: str) -> str:
    return DEFS + name.replace("~", "~0").replace("/", "~1")


def clean(node, in_name_map: bool = False):
    """Drop documentation keywords, keyword positions only."""
    if isinstance(node, dict):
        if in_name_map:
            return {k: clean(v) for k, v in node.items()}
        out = {}
        for k, v in node.items():
            if k in DROP or k.startswith("x-"):
                continue
            out[k] = copy.deepcopy(v) if k in DATA else clean(v, k in NAME_MAPS)
        return out
    if isinstance(node, list):
        return [clean(v) for v in node]
    return node


def refs(node):
    """Every component referenced from a (raw) schema, incl. discriminator mapping values."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield component(v)
            elif k == "discriminator" and isinstance(v, dict):
                yield from (component(r) for r in (v.get("mapping") or {}).values())
            elif k not in DATA:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def subschemas(node):
    """(key, child) for each schema directly below `node` (a schema object)."""
    for k, v in node.items():
        if k in NAME_MAPS and isinstance(v, dict):
            for child in v.values():
                yield k, child
        elif k in SUB_SCHEMA and isinstance(v, dict):
            yield k, v
        elif k in SUB_LISTS and isinstance(v, list):
            for child in v:
                yield k, child


def walk(node, visit, parent_key=None):
    if not isinstance(node, dict):
        return
    visit(node, parent_key)
    for key, child in list(subschemas(node)):
        walk(child, visit, key)


# ---------------------------------------------------------------------------- discriminators

def implicit_mappings(schemas: dict, report: dict) -> dict:
    """Give every `discriminator` without `mapping` OpenAPI's implicit mapping."""
    schemas = dict(schemas)
    for name, node in schemas.items():
        disc = node.get("discriminator") if isinstance(node, dict) else None
        if not isinstance(disc, dict) or disc.get("mapping"):
            continue
        subs = sorted(
            other for other, sub in schemas.items()
            if isinstance(sub, dict) and any(
                isinstance(p, dict) and p.get("$ref") == PREFIX + name for p in sub.get("allOf", []))
        )
        node = dict(node)
        if subs:
            node["discriminator"] = {**disc, "mapping": {short(s): PREFIX + s for s in subs}}
            report[name] = (f"{short(name)}: discriminator '{disc.get('propertyName')}' has no mapping; "
                            f"implicit mapping inferred from allOf subtypes {[short(s) for s in subs]}")
        else:
            node.pop("discriminator")
            report[name] = (f"{short(name)}: discriminator '{disc.get('propertyName')}' has no mapping and no "
                            "allOf subtypes; dropped (base validated as is)")
        schemas[name] = node
    return schemas


def discriminated_base(node: dict, base_ref: str | None, mapping: dict, prop: str) -> dict:
    branches = [
        {"if": {"properties": {prop: {"const": key}}, "required": [prop]}, "then": {"$ref": target}}
        for key, target in mapping.items()
    ]
    return {
        "allOf": ([{"$ref": base_ref}] if base_ref else [node]) + branches,
        "required": [prop],
        "properties": {prop: {"enum": list(mapping)}},
    }


def strip_subtype_union(node: dict, targets: set) -> list:
    """Remove oneOf/anyOf that merely enumerate the mapped subtypes (would recurse)."""
    removed = []
    for key in ("oneOf", "anyOf"):
        parts = node.get(key)
        if isinstance(parts, list) and parts and all(
                isinstance(p, dict) and set(p) == {"$ref"} and p["$ref"] in targets for p in parts):
            node.pop(key)
            removed.append(key)
    return removed


def expand_discriminators(defs: dict, spec_enums) -> list:
    report = []
    for name in list(defs):
        node = defs[name]
        disc = node.get("discriminator")
        if not isinstance(disc, dict):
            continue
        prop, mapping = disc["propertyName"], disc["mapping"]
        targets = set(mapping.values())
        base_name = f"{name}__base"
        base = {k: v for k, v in node.items() if k != "discriminator"}
        removed = strip_subtype_union(base, targets)
        defs[base_name] = base
        rewired = []
        for target in mapping.values():
            sub_name = target[len(DEFS):]
            sub = defs[sub_name]
            for part in sub.get("allOf", []):
                if isinstance(part, dict) and part.get("$ref") == pointer(name):
                    part["$ref"] = pointer(base_name)
                    rewired.append(sub_name)
        defs[name] = discriminated_base(node, pointer(base_name), mapping, prop)
        standalone = sorted(t[len(DEFS):] for t in targets if t[len(DEFS):] not in rewired)
        line = f"{name}: '{prop}' in {list(mapping)}; {len(rewired)} subtypes rewired to {base_name}"
        if standalone:
            line += f"; standalone (no allOf to base): {standalone}"
        if removed:
            line += f"; dropped {removed} listing the subtypes from {base_name}"
        enum = spec_enums(base, prop)
        if enum is not None and set(enum) != set(mapping):
            line += (f"; NOTE {prop} enum {enum} vs mapping keys: unmapped={sorted(set(enum) - set(mapping))} "
                     f"unknown={sorted(set(mapping) - set(enum))} (unmapped values are now rejected)")
        report.append(line)

    # discriminators nested inline (not a whole component): no subtype can allOf them.
    def inline(node, _key):
        disc = node.get("discriminator")
        if isinstance(disc, dict) and not disc.get("mapping"):
            node.pop("discriminator")
            report.append(f"inline discriminator '{disc.get('propertyName')}' without mapping dropped")
        elif isinstance(disc, dict):
            plain = {k: v for k, v in node.items() if k != "discriminator"}
            strip_subtype_union(plain, set(disc["mapping"].values()))
            node.clear()
            node.update(discriminated_base(plain, None, disc["mapping"], disc["propertyName"]))
            report.append(f"inline discriminator '{disc['propertyName']}' in {list(disc['mapping'])} expanded")

    for node in defs.values():
        for _key, child in list(subschemas(node)):
            walk(child, inline)
    return report


def same_instance_cycles(defs: dict) -> list:
    """$ref chains that come back to a schema without descending into the instance."""
    edges = {}
    for name, node in defs.items():
        out = set()

        def visit(n, _k, out=out):
            if isinstance(n.get("$ref"), str):
                out.add(n["$ref"][len(DEFS):])
            for key in ("allOf", "anyOf", "oneOf"):
                for part in n.get(key, []) if isinstance(n.get(key), list) else []:
                    if isinstance(part, dict):
                        visit(part, key)
            for key in ("if", "then", "else", "not"):
                if isinstance(n.get(key), dict):
                    visit(n[key], key)

        visit(node, None)
        edges[name] = out
    cycles, state = [], {}

    def dfs(n, stack):
        state[n] = 1
        for m in edges.get(n, ()):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m] if m in stack else [n, m])
            elif m not in state:
                dfs(m, stack + [m])
        state[n] = 2

    for n in edges:
        if n not in state:
            dfs(n, [n])
    return cycles


# ---------------------------------------------------------------------------- strict mode

def is_object_schema(node: dict) -> bool:
    t = node.get("type")
    objecty = t == "object" or (isinstance(t, list) and "object" in t)
    if "properties" in node:
        return True
    # a bare {"type": "object"} is a free-form map: leave it open
    return objecty and any(k in node for k in ("allOf", "oneOf", "anyOf", "$ref", "if"))


def make_strict(defs: dict) -> tuple[dict, list]:
    defs = copy.deepcopy(defs)
    allof_targets = set()
    for node in defs.values():
        walk(node, lambda n, k: allof_targets.update(
            p["$ref"][len(DEFS):] for p in n.get("allOf", []) if isinstance(p, dict) and "$ref" in p))
    notes = []
    direct_refs = set()
    for node in defs.values():
        def collect(n, key):
            if key != "allOf" and isinstance(n.get("$ref"), str):
                direct_refs.add(n["$ref"][len(DEFS):])
        walk(node, collect)
    loose = sorted(n for n in allof_targets & direct_refs if is_object_schema(defs[n]))
    if loose:
        notes.append(f"used both as allOf part and directly, left open: {loose}")

    def tighten(node, key):
        if key in ("allOf", "if", "not", "contains", "propertyNames"):
            return  # an allOf part is closed by its parent; `if` must stay a pure test
        if is_object_schema(node) and "additionalProperties" not in node and "unevaluatedProperties" not in node:
            node["unevaluatedProperties"] = False

    def descend(node, key):
        tighten(node, key)
        for k, child in list(subschemas(node)):
            if k != "if" and isinstance(child, dict):
                descend(child, k)

    for name, node in defs.items():
        descend(node, "allOf" if name in allof_targets else None)
    count = sum(json.dumps(n).count('"unevaluatedProperties": false') for n in defs.values())
    notes.insert(0, f"{count} object schemas closed with unevaluatedProperties:false")
    return defs, notes


# ---------------------------------------------------------------------------- driver

def load_specs(args: list[str]) -> list[tuple[Path, dict]]:
    files = []
    for arg in args or [str(DEFAULT_SPECS)]:
        p = Path(arg)
        files.extend([p / f for f in SPEC_FILES] if p.is_dir() else [p])
    return [(f, json.loads(f.read_text(encoding="utf-8"))) for f in files]


def name_components(schemas: dict, closure: list) -> dict:
    names, owner = {}, {}
    for comp in closure:
        base = short(comp)
        other = owner.get(base)
        if other is None:
            owner[base] = comp
            names[comp] = base
        elif clean(schemas[other]) == clean(schemas[comp]):
            names[comp] = base  # identical twin under another hash: share one definition
        else:
            m = HASHED.match(comp)
            names[comp] = f"{base}_{m.group(1)[:8]}" if m else f"{base}_{len(names)}"
    return names


def rewrite(node, names, in_name_map=False):
    if isinstance(node, dict):
        if in_name_map:
            return {k: rewrite(v, names) for k, v in node.items()}
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out[k] = pointer(names[component(v)])
            elif k == "discriminator" and isinstance(v, dict) and v.get("mapping"):
                out[k] = {**v, "mapping": {key: pointer(names[component(r)]) for key, r in v["mapping"].items()}}
            elif k in DATA:
                out[k] = v
            else:
                out[k] = rewrite(v, names, k in NAME_MAPS)
        return out
    if isinstance(node, list):
        return [rewrite(v, names) for v in node]
    return node


def extract_one(spec_path: Path, spec: dict, method: str, path: str):
    implicit = {}
    schemas = implicit_mappings(spec["components"]["schemas"], implicit)
    op = spec["paths"][path][method]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    root = component(body["$ref"]) if set(body) == {"$ref"} else None
    if root is None:
        raise SystemExit(f"{path}: inline request body schemas are not supported")
    closure, todo = [], [root]
    while todo:  # breadth-first: stable, readable order of discovery
        comp = todo.pop(0)
        if comp in closure:
            continue
        if comp not in schemas:
            raise SystemExit(f"{path}: dangling reference to {comp}")
        closure.append(comp)
        todo.extend(refs(schemas[comp]))
    report = [implicit[c] for c in closure if c in implicit]
    names = name_components(schemas, closure)
    for comp, n in names.items():
        if n != short(comp):
            report.append(f"name collision: {comp} -> {n}")
    defs = {}
    for comp in closure:
        defs.setdefault(names[comp], rewrite(clean(schemas[comp]), names))

    def spec_enum(base, prop):
        p = base.get("properties", {}).get(prop, {})
        if "$ref" in p:
            p = defs.get(p["$ref"][len(DEFS):], {})
        return p.get("enum")

    report += expand_discriminators(defs, spec_enum)
    for cycle in same_instance_cycles(defs):
        report.append(f"ERROR same-instance $ref cycle: {' -> '.join(cycle)}")
    version = spec.get("info", {}).get("version", "?")
    comment = (f"Generated by tools/extract_infobip_schemas.py from {spec_path.name} (v{version}), "
               f"{method.upper()} {path} request body. Do not edit.")
    return names[root], defs, comment, report


def document(root: str, defs: dict, comment: str) -> str:
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": comment,
        "$ref": pointer(root),
        "$defs": dict(sorted(defs.items())),
    }
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", help=f"spec files or directories (default {DEFAULT_SPECS})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--strict", action="store_true", help="also write *-strict.json (unevaluatedProperties:false)")
    args = ap.parse_args(argv)

    specs = load_specs(args.specs)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for out_name, (method, path) in TARGETS.items():
        found = [(p, s) for p, s in specs if method in s.get("paths", {}).get(path, {})]
        if not found:
            print(f"{out_name}: {method.upper()} {path} not found in {[str(p) for p, _ in specs]}", file=sys.stderr)
            failed = True
            continue
        spec_path, spec = found[0]
        root, defs, comment, report = extract_one(spec_path, spec, method, path)
        variants = [(out_name, defs, comment, [])]
        if args.strict:
            strict_defs, notes = make_strict(defs)
            variants.append((f"{out_name}-strict", strict_defs, comment + " Strict: unevaluatedProperties:false.",
                             [f"strict: {n}" for n in notes]))
        for i, (name, d, c, notes) in enumerate(variants):
            target = args.out / f"{name}.json"
            target.write_text(document(root, d, c), encoding="utf-8")
            shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
            print(f"{shown}: root {root}, {len(d)} definitions, {target.stat().st_size} bytes")
            for line in notes + (report if i == 0 else []):
                print(f"  {line}")
                failed |= line.startswith("ERROR")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
