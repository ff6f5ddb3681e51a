#!/usr/bin/env python3
"""Validates the gateway's ChatKit widgets with the official SDK's models.

Usage: check_widgets.py SAMPLES.json   (in the conformance venv; against-gateway.sh runs it)

SAMPLES.json is written by `cargo test --lib` (src/chatkit/task_widget.rs): a JSON array of
{"name", "widget", "copy_text"}, every kind of task widget plus a catalogue using every
component, prop and literal the Rust types model. Each widget is checked
  * as a `WidgetRoot` and inside a `widget` thread item (`ThreadItem`), strict mode;
  * for components the SDK only accepted as its catch-all `DynamicWidgetComponent`: the
    SDK's unions fall back to it (any `type`, any extra keys) when the real model refuses
    a node, so a wrong type or literal would otherwise pass silently;
  * for keys the models do not define (pydantic drops them silently), `null`s, fields the
    SDK's own serialiser always sends (defaults such as an action's `handler`) and, in
    the end, that the SDK serialises the parsed widget back to exactly the input.
Before that the checker checks itself: mutants of a sample (an unknown key, a wrong type,
a bad literal, a null, a dropped default, ...) must each be refused.

The last line is `N passed, M failed`; the exit status is 1 on any failure, 2 when the
samples cannot be read.

check.py imports `served_item_problems` to hold the widget items a live gateway sends to
the same checks.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
import typing
import warnings
from typing import Any, Callable

# 1.6.5 marks the named widget classes deprecated (in favour of .widget templates); they
# are still the models its server validates with.
warnings.simplefilter("ignore", DeprecationWarning)

from chatkit import widgets as W  # noqa: E402
from chatkit.types import ThreadItem, WidgetItem  # noqa: E402
from pydantic import BaseModel, TypeAdapter, ValidationError  # noqa: E402

ROOT = TypeAdapter(W.WidgetRoot)
ITEM = TypeAdapter(ThreadItem)


def strict_models() -> dict[str, type[BaseModel]]:
    """`type` literal -> the SDK's own model for it (BasicRoot is a dynamic model)."""
    out: dict[str, type[BaseModel]] = {}
    for union in (W.StrictWidgetComponent, W.StrictWidgetRoot):
        members = typing.get_args(typing.get_args(union)[0])
        for cls in members:
            if issubclass(cls, W.DynamicWidgetComponent):
                continue
            out[cls.model_fields["type"].default] = cls
    return out


STRICT = strict_models()


def walk(value: Any, path: str = "$"):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")


def unknown_keys(raw: Any, dumped: Any, path: str = "$") -> list[str]:
    out: list[str] = []
    if isinstance(raw, dict) and isinstance(dumped, dict):
        for k, v in raw.items():
            if k not in dumped:
                out.append(f"unknown key {path}.{k}")
            else:
                out.extend(unknown_keys(v, dumped[k], f"{path}.{k}"))
    elif isinstance(raw, list) and isinstance(dumped, list):
        for i, (r, d) in enumerate(zip(raw, dumped)):
            out.extend(unknown_keys(r, d, f"{path}[{i}]"))
    return out


def missing_keys(raw: Any, sent: Any, path: str = "$") -> list[str]:
    out: list[str] = []
    if isinstance(raw, dict) and isinstance(sent, dict):
        for k, v in sent.items():
            if k not in raw:
                out.append(f"missing {path}.{k} (the SDK sends {json.dumps(v)[:40]})")
            else:
                out.extend(missing_keys(raw[k], v, f"{path}.{k}"))
    elif isinstance(raw, list) and isinstance(sent, list):
        for i, (r, d) in enumerate(zip(raw, sent)):
            out.extend(missing_keys(r, d, f"{path}[{i}]"))
    return out


def refusal(node: W.WidgetComponentBase, want: type[BaseModel] | None) -> str:
    """Why the SDK's own model for `node.type` refused it (its error is lost in the union)."""
    if want is None:
        return "no strict model has this type"
    try:
        want.model_validate(node.model_dump(mode="json", exclude_unset=True), strict=True)
    except ValidationError as e:
        return f"{want.__name__} says {short_error(e)}"
    return f"refused by {want.__name__}"


def loose_components(node: Any, path: str) -> list[str]:
    """Widget nodes that did not parse as their own strict model."""
    out: list[str] = []
    if isinstance(node, W.WidgetComponentBase):
        want = STRICT.get(node.type)
        if want is None or type(node) is not want:
            out.append(f"{path} ({node.type!r}) only parsed as {type(node).__name__}: {refusal(node, want)}")
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            out.extend(loose_components(getattr(node, name), f"{path}.{name}"))
        for name, value in (node.model_extra or {}).items():
            out.extend(loose_components(value, f"{path}.{name}"))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.extend(loose_components(v, f"{path}[{i}]"))
    elif isinstance(node, dict):
        for k, v in node.items():
            out.extend(loose_components(v, f"{path}.{k}"))
    return out


def short_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {err['msg']} (input {str(err.get('input'))[:60]})")
    return "; ".join(parts)


def instants(value: Any) -> Any:
    """`value` with its top-level `created_at` as an instant: a server may write an instant
    differently from pydantic (`…:00.000000Z` for `…:00Z`) and still mean the same."""
    if isinstance(value, dict) and isinstance(value.get("created_at"), str):
        try:
            at = dt.datetime.fromisoformat(value["created_at"].replace("Z", "+00:00"))
        except ValueError:
            return value
        return {**value, "created_at": at}
    return value


def shape_problems(raw: Any, adapter: TypeAdapter, parsed: Any, what: str) -> list[str]:
    dumped = adapter.dump_python(parsed, mode="json", by_alias=True)
    sent = adapter.dump_python(parsed, mode="json", by_alias=True, exclude_none=True)
    out = [f"{what}: {p}" for p in unknown_keys(raw, dumped)]
    out += [f"{what}: {p}" for p in missing_keys(raw, sent)]
    out += [f"{what}: null at {p}" for p, v in walk(raw) if v is None]
    if not out and instants(sent) != instants(raw):
        out.append(f"{what}: the SDK serialises it differently: {json.dumps(sent)[:200]}")
    return out


def root_problems(widget: Any) -> list[str]:
    """What is wrong with a widget tree as a `WidgetRoot`."""
    try:
        root = ROOT.validate_json(json.dumps(widget), strict=True)
    except ValidationError as e:
        return [f"WidgetRoot: {short_error(e)}"]
    out = [f"WidgetRoot: {p}" for p in loose_components(root, "$")]
    return out + shape_problems(widget, ROOT, root, "WidgetRoot")


def item_problems(item: Any) -> list[str]:
    """What is wrong with a `widget` thread item as a `ThreadItem` (it must be a
    `WidgetItem`): the same checks, on the item's every key."""
    try:
        parsed = ITEM.validate_json(json.dumps(item), strict=True)
    except ValidationError as e:
        return [f"WidgetItem: {short_error(e)}"]
    if not isinstance(parsed, WidgetItem):
        return [f"WidgetItem: parsed as {type(parsed).__name__}"]
    out = [f"WidgetItem: {p}" for p in loose_components(parsed.widget, "$.widget")]
    return out + shape_problems(item, ITEM, parsed, "WidgetItem")


def served_item_problems(item: Any) -> list[str]:
    """Everything wrong with a widget item a server sent (check.py); empty when it conforms."""
    if not isinstance(item, dict) or not isinstance(item.get("widget"), dict):
        return ["not a widget item {id, thread_id, created_at, type, widget, copy_text?}"]
    return root_problems(item["widget"]) + item_problems(item)


def problems(sample: Any) -> list[str]:
    """Everything wrong with one sample; empty when it conforms."""
    if not isinstance(sample, dict) or not isinstance(sample.get("widget"), dict):
        return ["not a {name, widget, copy_text} object"]
    item = {
        "id": "wdg_sample",
        "thread_id": "thr_sample",
        "created_at": "2026-01-01T00:00:00Z",
        "type": "widget",
        "widget": sample["widget"],
    }
    if "copy_text" in sample:
        item["copy_text"] = sample["copy_text"]
    return root_problems(sample["widget"]) + item_problems(item)


# ---------------------------------------------------------------- self-test


def first(node: Any, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    for _, v in walk(node):
        if isinstance(v, dict) and pred(v):
            return v
    raise LookupError("no such node in the sample")


def of_type(t: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: d.get("type") == t


def has(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: key in d


def mutants() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    def widget(s):
        return s["widget"]

    return [
        ("an unknown key on the root", lambda s: widget(s).__setitem__("bogus", 1)),
        ("an unknown key on a Text", lambda s: first(widget(s), of_type("Text")).__setitem__("colour", "red")),
        ("an unknown key in an action", lambda s: first(widget(s), has("loadingBehavior")).__setitem__("loading", "self")),
        ("a snake_case prop", lambda s: first(widget(s), of_type("Checkbox")).__setitem__("default_checked", True)),
        ("a Text value of the wrong type", lambda s: first(widget(s), of_type("Text")).__setitem__("value", 5)),
        ("a Text without its value", lambda s: first(widget(s), of_type("Text")).pop("value")),
        ("a literal the SDK does not have", lambda s: first(widget(s), of_type("Title")).__setitem__("size", "huge")),
        ("an icon the SDK does not have", lambda s: first(widget(s), of_type("Icon")).__setitem__("name", "trash")),
        ("a float where the SDK wants an int", lambda s: first(widget(s), has("gap")).__setitem__("gap", 2.5)),
        ("a bool as a string", lambda s: first(widget(s), of_type("Checkbox")).__setitem__("defaultChecked", "true")),
        ("a null prop", lambda s: first(widget(s), of_type("Text")).__setitem__("color", None)),
        ("a dropped SDK default", lambda s: first(widget(s), has("loadingBehavior")).pop("handler")),
        ("an unknown component", lambda s: first(widget(s), of_type("Spacer")).__setitem__("type", "Gap")),
        ("a dynamic Basic root", lambda s: widget(s).__setitem__("type", "Basic")),
        ("an unknown root", lambda s: widget(s).__setitem__("type", "Panel")),
        ("copy_text of the wrong type", lambda s: s.__setitem__("copy_text", 3)),
    ]


def self_test(samples: list[Any]) -> list[str]:
    """What is wrong with the checker: a mutant it lets through, or a base it refuses."""
    base = next((s for s in samples if isinstance(s, dict) and str(s.get("name", "")).startswith("Listed")), None)
    if base is None:
        return ["no `Listed` sample to mutate"]
    out = [f"the unmutated base sample fails: {p}" for p in problems(base)]
    for name, mutate in mutants():
        sample = copy.deepcopy(base)
        try:
            mutate(sample)
        except LookupError as e:
            out.append(f"mutant {name!r}: {e}")
            continue
        if not problems(sample):
            out.append(f"mutant {name!r} passed the check")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path = argv[1]
    print(f"== widget samples against openai-chatkit's models: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            samples = json.load(f)
    except (OSError, ValueError) as e:
        print(f"check_widgets: cannot read {path} ({e}); `cargo test --lib` writes it", file=sys.stderr)
        return 2
    if not isinstance(samples, list) or not samples:
        print(f"check_widgets: {path} holds no samples", file=sys.stderr)
        return 2

    passed = failed = 0
    broken = self_test(samples)
    if broken:
        failed += 1
        print(f"FAIL the checker's self-test ({len(mutants())} mutants must be refused)")
        for p in broken:
            print(f"     {p}")
    else:
        passed += 1
        print(f"ok   the checker refuses each of {len(mutants())} mutants")

    for i, sample in enumerate(samples):
        name = sample.get("name", f"#{i}") if isinstance(sample, dict) else f"#{i}"
        found = problems(sample)
        if found:
            failed += 1
            print(f"FAIL {name}")
            for p in found[:10]:
                print(f"     {p}")
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
