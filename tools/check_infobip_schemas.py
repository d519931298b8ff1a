#!/usr/bin/env python3
"""Check the mock provider's Infobip request schemas against fixtures and known-bad mutations.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install jsonschema
    /tmp/venv/bin/python tools/check_infobip_schemas.py [--strict] [--fixtures DIR] [--spec-dir DIR]

* every reference fixture must validate;
* boundary values the spec allows must validate (text of exactly 3072 chars, 2 and 10
  carousel cards, 11 suggestions, 500 numbers, ...);
* each mutation must be rejected, by the expected rule (instance path + keyword), which
  is printed;
* the request examples embedded in the OpenAPI specs must validate (if the specs are found);
* with --strict, the same against the *-strict.json files, plus misspelt field names,
  which only the strict schemas reject.
Exit status 1 if anything is off.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

try:
    from jsonschema import Draft202012Validator
except ImportError:  # pragma: no cover
    sys.exit("needs jsonschema: python3 -m venv /tmp/venv && /tmp/venv/bin/pip install jsonschema")

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "crates" / "sendfleet-mock-provider" / "schemas"
REFERENCE = ROOT.parent / "shared" / "reference"

ENDPOINTS = {  # schema -> (spec file, path) for the spec's own request examples
    "sms-send": ("infobip-sms-openapi.json", "/sms/3/messages"),
    "rcs-send": ("infobip-rcs-openapi.json", "/rcs/2/messages"),
    "rcs-events": ("infobip-rcs-openapi.json", "/rcs/1/events"),
    "rcs-capability-query": ("infobip-rcs-openapi.json", "/rcs/2/capability-check/query"),
}


def content(doc):
    return doc["messages"][0]["content"]


def setitem(path, value):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node.get(path[-1]) if isinstance(node, dict) else node[path[-1]]) \
            if callable(value) else value
    return mutate


def delitem(path):
    def mutate(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def resize(path, n):
    """Make the list at `path` n long, repeating its items cyclically."""
    return setitem(path, lambda items: [copy.deepcopy(items[i % len(items)]) for i in range(n)])


C = ["messages", 0, "content"]
TEXT, CARD, CAROUSEL = "rcs-send-text-request.json", "rcs-send-card-request.json", "rcs-send-carousel-request.json"
SMS, CAP = "sms-send-request.json", "rcs-capability-request.json"

# (description, schema, fixture, mutation or None, expected (instance path, keyword) or None = valid)
CASES = [
    ("fixture: RCS TEXT", "rcs-send", TEXT, None, None),
    ("fixture: RCS CARD", "rcs-send", CARD, None, None),
    ("fixture: RCS CAROUSEL", "rcs-send", CAROUSEL, None, None),
    ("fixture: SMS", "sms-send", SMS, None, None),
    ("fixture: capability query", "rcs-capability-query", CAP, None, None),
    # boundaries the spec allows
    ("TEXT text of 3072 chars", "rcs-send", TEXT, setitem(C + ["text"], "x" * 3072), None),
    ("TEXT with 11 suggestions", "rcs-send", TEXT, resize(C + ["suggestions"], 11), None),
    ("suggestion text of 25 chars", "rcs-send", TEXT, setitem(C + ["suggestions", 0, "text"], "y" * 25), None),
    ("carousel with 2 cards", "rcs-send", CAROUSEL, resize(C + ["contents"], 2), None),
    ("carousel with 10 cards", "rcs-send", CAROUSEL, resize(C + ["contents"], 10), None),
    ("capability query with 500 numbers", "rcs-capability-query", CAP, resize(["phoneNumbers"], 500), None),
    ("SMS turkeyIys BIREYSEL", "sms-send", SMS,
     setitem(["messages", 0, "options", "regional", "turkeyIys"], {"recipientType": "BIREYSEL"}), None),
    # must be rejected
    ("TEXT text of 3073 chars", "rcs-send", TEXT, setitem(C + ["text"], "x" * 3073),
     ("/messages/0/content/text", "maxLength")),
    ("content type BOGUS", "rcs-send", TEXT, setitem(C + ["type"], "BOGUS"), ("/messages/0/content/type", "enum")),
    ("carousel with 1 card", "rcs-send", CAROUSEL, resize(C + ["contents"], 1),
     ("/messages/0/content/contents", "minItems")),
    ("carousel with 11 cards", "rcs-send", CAROUSEL, resize(C + ["contents"], 11),
     ("/messages/0/content/contents", "maxItems")),
    ("TEXT with 12 suggestions", "rcs-send", TEXT, resize(C + ["suggestions"], 12),
     ("/messages/0/content/suggestions", "maxItems")),
    ("card content with 5 suggestions", "rcs-send", CARD, resize(C + ["content", "suggestions"], 5),
     ("/messages/0/content/content/suggestions", "maxItems")),
    ("OPEN_URL suggestion without url", "rcs-send", TEXT, delitem(C + ["suggestions", 1, "url"]),
     ("/messages/0/content/suggestions/1", "required")),
    ("suggestion text of 26 chars", "rcs-send", TEXT, setitem(C + ["suggestions", 0, "text"], "y" * 26),
     ("/messages/0/content/suggestions/0/text", "maxLength")),
    ("suggestion type BOGUS", "rcs-send", TEXT, setitem(C + ["suggestions", 0, "type"], "BOGUS"),
     ("/messages/0/content/suggestions/0/type", "enum")),
    ("CARD without orientation", "rcs-send", CARD, delitem(C + ["orientation"]), ("/messages/0/content", "required")),
    ("SMS message without destinations", "sms-send", SMS, delitem(["messages", 0, "destinations"]),
     ("/messages/0", "required")),
    ("SMS turkeyIys recipientType BIREYCEL", "sms-send", SMS,
     setitem(["messages", 0, "options", "regional", "turkeyIys"], {"recipientType": "BIREYCEL"}),
     ("/messages/0/options/regional/turkeyIys/recipientType", "enum")),
    ("SMS validityPeriod timeUnit DAYS", "sms-send", SMS,
     setitem(["messages", 0, "options", "validityPeriod", "timeUnit"], "DAYS"),
     ("/messages/0/options/validityPeriod/timeUnit", "enum")),
    ("capability query with 501 numbers", "rcs-capability-query", CAP, resize(["phoneNumbers"], 501),
     ("/phoneNumbers", "maxItems")),
]

# misspelt field names: accepted by the plain schemas (unknown properties are allowed),
# rejected by the strict ones
MISSPELT = [
    ("TEXT 'sugestions'", "rcs-send", TEXT, lambda d: content(d).update(sugestions=content(d).pop("suggestions")),
     ("/messages/0/content", "unevaluatedProperties")),
    ("OPEN_URL 'URL'", "rcs-send", TEXT, lambda d: content(d)["suggestions"][1].update(URL="https://x.example"),
     ("/messages/0/content/suggestions/1", "unevaluatedProperties")),
    ("card 'tittle'", "rcs-send", CARD, lambda d: content(d)["content"].update(tittle="x"),
     ("/messages/0/content/content", "unevaluatedProperties")),
    ("SMS 'callbackdata'", "sms-send", SMS, lambda d: d["messages"][0]["webhooks"].update(callbackdata="x"),
     ("/messages/0/webhooks", "unevaluatedProperties")),
    ("capability 'phonenumbers'", "rcs-capability-query", CAP, lambda d: d.update(phonenumbers=["1"]),
     ("", "unevaluatedProperties")),
]


def leaf_errors(errors):
    for error in errors:
        if error.context:
            yield from leaf_errors(error.context)
        else:
            yield error


def describe(error) -> str:
    where = "/" + "/".join(str(p) for p in error.absolute_path)
    rule = "/".join(str(p) for p in error.absolute_schema_path)
    msg = error.message if len(error.message) < 90 else error.message[:87] + "..."
    return f"{where if where != '/' else '(root)'}: {error.validator} [{rule}] {msg}"


def run(schema_dir: Path, fixtures: Path, strict: bool, cases) -> int:
    suffix = "-strict" if strict else ""
    validators = {
        name: Draft202012Validator(json.loads((schema_dir / f"{name}{suffix}.json").read_text()))
        for name in ENDPOINTS
    }
    for v in validators.values():
        Draft202012Validator.check_schema(v.schema)
    failures = 0
    for title, schema, fixture, mutate, expected in cases:
        doc = json.loads((fixtures / fixture).read_text())
        if mutate:
            mutate(doc)
        errors = list(leaf_errors(validators[schema].iter_errors(doc)))
        if expected is None:
            ok = not errors
            print(f"{'ok ' if ok else 'FAIL'} accepts {title}")
            for e in errors[:5]:
                print(f"       {describe(e)}")
        else:
            path, keyword = expected
            hits = [e for e in errors if "/" + "/".join(map(str, e.absolute_path)) == (path or "/")
                    and e.validator == keyword]
            ok = bool(hits)
            print(f"{'ok ' if ok else 'FAIL'} rejects {title}")
            for e in (hits or errors)[:3]:
                print(f"       {describe(e)}")
            if not errors:
                print("       (accepted!)")
        failures += not ok
    return failures


# The spec's own examples that break the spec's own limits: accepted as a known quirk only
# if they fail on exactly these (instance path, keyword) pairs.
KNOWN_BAD_EXAMPLES = {
    ("rcs-send", "Text with different types of suggestions"): {  # suggestion text > 25 chars
        ("/messages/0/content/suggestions/4/text", "maxLength"),  # 'Example request of location' (27)
        ("/messages/0/content/suggestions/5/text", "maxLength"),  # 'Example create calendar event' (29)
    },
}


def spec_examples(schema_dir: Path, spec_dir: Path, strict: bool) -> int:
    failures = 0
    suffix = "-strict" if strict else ""
    for name, (spec_file, path) in ENDPOINTS.items():
        spec_path = spec_dir / spec_file
        if not spec_path.exists():
            print(f"skip spec examples for {name}: {spec_path} not found")
            continue
        spec = json.loads(spec_path.read_text())
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        validator = Draft202012Validator(json.loads((schema_dir / f"{name}{suffix}.json").read_text()))
        examples = body.get("examples", {})
        bad, quirks = {}, []
        for key, example in examples.items():
            errors = list(leaf_errors(validator.iter_errors(example.get("value"))))
            # a failing branch drops its annotations, so strict schemas add unevaluatedProperties noise
            rules = {("/" + "/".join(map(str, e.absolute_path)), e.validator) for e in errors
                     if e.validator != "unevaluatedProperties"}
            if errors and rules == KNOWN_BAD_EXAMPLES.get((name, key)):
                quirks.append(f"       known spec quirk, rejected as expected: {key!r}: "
                              + "; ".join(describe(e) for e in errors if e.validator == "maxLength"))
            elif errors:
                bad[key] = errors
        print(f"{'ok ' if not bad else 'FAIL'} {len(examples) - len(bad) - len(quirks)}/{len(examples)} spec request "
              f"examples of POST {path} accepted by {name}{suffix}")
        for line in quirks:
            print(line)
        for key, errors in bad.items():
            print(f"       {key!r}: " + "; ".join(describe(e) for e in errors[:3]))
        failures += len(bad)
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--schemas", type=Path, default=SCHEMAS)
    ap.add_argument("--fixtures", type=Path, default=REFERENCE / "fixtures")
    ap.add_argument("--spec-dir", type=Path, default=REFERENCE / "infobip-openapi")
    ap.add_argument("--strict", action="store_true", help="also check the *-strict.json schemas")
    args = ap.parse_args(argv)

    failures = 0
    print(f"== {args.schemas.name}/*.json")
    failures += run(args.schemas, args.fixtures, False, CASES)
    failures += run(args.schemas, args.fixtures, False, [(t + " (plain: allowed)", s, f, m, None)
                                                          for t, s, f, m, _ in MISSPELT])
    failures += spec_examples(args.schemas, args.spec_dir, False)
    if args.strict:
        print(f"== {args.schemas.name}/*-strict.json")
        failures += run(args.schemas, args.fixtures, True, CASES + MISSPELT)
        failures += spec_examples(args.schemas, args.spec_dir, True)
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
