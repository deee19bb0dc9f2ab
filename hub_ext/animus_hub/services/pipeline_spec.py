"""Pipeline specs: YAML in, a checked DAG out (or a 422 naming the line and column).

The spec's shape is the JSON Schema shipped in the package
(``animus_hub/pipeline-spec.schema.json``, documented in docs/reference/pipeline-spec.md).
Past the schema: duplicate keys, references to unknown steps or outputs, and cycles
are refused, each pointing at the place in the YAML source.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from functools import lru_cache
from typing import Any

import jsonschema
import yaml

from ..errors import AnimusError

MAX_SPEC_BYTES = 256 * 1024
SCHEMA_FILE = "pipeline-spec.schema.json"
STEP_SETTINGS = ("environment", "resources", "retries", "infra_retries", "timeout", "priority", "cache")


@lru_cache(maxsize=1)
def spec_schema() -> dict[str, Any]:
    """The JSON Schema shipped in the package."""
    return json.loads(importlib.resources.files("animus_hub").joinpath(SCHEMA_FILE).read_text())


def _child(node: yaml.Node | None, part: Any, key: bool = False) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == part:
                return k if key else v
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def _position(root: yaml.Node | None, path: list[Any], key: bool = False) -> dict[str, int | None]:
    """Line and column (1-based) of the value at `path` (of its key with `key`), or of its nearest parent."""
    node, mark = root, root.start_mark if root is not None else None
    for i, part in enumerate(path):
        nxt = _child(node, part, key=key and i == len(path) - 1)
        if nxt is None:
            break
        node, mark = nxt, nxt.start_mark
    if mark is None:
        return {"line": None, "column": None}
    return {"line": mark.line + 1, "column": mark.column + 1}


def _fail(reason: str, message: str, pos: dict[str, Any], **details: Any) -> AnimusError:
    where = f"line {pos['line']} column {pos['column']}: " if pos.get("line") else ""
    return AnimusError(422, reason, where + message, {**pos, **details})


def _duplicate_key(node: yaml.Node, path: list[Any]) -> AnimusError | None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if k.value in seen:
                pos = {"line": k.start_mark.line + 1, "column": k.start_mark.column + 1}
                return _fail("pipeline_invalid", f"duplicate key {k.value!r}", pos, path="/".join(map(str, path)))
            seen.add(k.value)
            found = _duplicate_key(v, [*path, k.value])
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found = _duplicate_key(v, [*path, i])
            if found:
                return found
    return None


def load(source: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse YAML, keeping the node tree for positions."""
    if len(source.encode()) > MAX_SPEC_BYTES:
        raise AnimusError(413, "pipeline_spec_too_large", f"A pipeline spec is at most {MAX_SPEC_BYTES} bytes")
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = {"line": mark.line + 1, "column": mark.column + 1} if mark is not None else {"line": None, "column": None}
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise _fail("pipeline_unparsable", f"not valid YAML: {problem}", pos, problem=problem) from None
    except yaml.YAMLError as e:
        raise AnimusError(422, "pipeline_unparsable", f"The spec is not valid YAML: {e}", {}) from None
    if not isinstance(data, dict):
        raise _fail(
            "pipeline_invalid", "a pipeline spec is a mapping with 'version' and 'steps'", {"line": 1, "column": 1}
        )
    dup = _duplicate_key(root, []) if root is not None else None
    if dup:
        raise dup
    return data, root


def _schema_errors(data: dict[str, Any], root: yaml.Node | None) -> None:
    validator = jsonschema.Draft202012Validator(spec_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    items = []
    for err in errors[:20]:
        path = list(err.absolute_path)
        message = err.message
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set((err.schema.get("properties") or {}).keys())
            extra = sorted(k for k in err.instance if k not in allowed)
            if extra:
                path = [*path, extra[0]]
                message = f"unknown key {extra[0]!r}" + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else "")
                items.append({"path": "/".join(map(str, path)), "message": message, **_position(root, path, True)})
                continue
        items.append({"path": "/".join(map(str, path)) or "(document)", "message": message, **_position(root, path)})
    first = items[0]
    raise _fail("pipeline_invalid", f"{first['path']}: {first['message']}", _pos(first), errors=items)


def _pos(item: dict[str, Any]) -> dict[str, Any]:
    return {"line": item["line"], "column": item["column"]}


def parse_input(ref: str) -> dict[str, Any]:
    if ref.startswith("steps."):
        _, step, _, output = ref.split(".", 3)
        return {"kind": "output", "step": step, "output": output}
    name, version = ref.rsplit(":", 1)
    return {"kind": "dataset", "name": name, "version": int(version)}


def find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, …, a], or None (deps: step → the steps it needs)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in deps.get(n, []):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if state.get(m) is None:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in deps:
        if state.get(n) is None:
            found = visit(n)
            if found:
                return found
    return None


def topological(deps: dict[str, list[str]]) -> list[str]:
    """Steps in an order where each comes after what it needs (ties by spec order)."""
    done: list[str] = []
    left = list(deps)
    while left:
        for n in left:
            if all(m in done for m in deps[n]):
                done.append(n)
                left.remove(n)
                break
    return done


def parse(source: str) -> dict[str, Any]:
    """The normalised spec: each step with its settings resolved, inputs parsed, `needs` and an order."""
    data, root = load(source)
    _schema_errors(data, root)
    defaults = data.get("defaults") or {}
    steps: dict[str, dict[str, Any]] = {}
    deps: dict[str, list[str]] = {}
    for name, raw in data["steps"].items():
        step = {k: raw.get(k, defaults.get(k)) for k in STEP_SETTINGS}
        step["cache"] = bool(step["cache"])
        step["retries"] = step["retries"] or 0
        step["priority"] = step["priority"] or 0
        step["resources"] = step["resources"] or {}
        step["command"] = list(raw["command"])
        step["params"] = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (raw.get("params") or {}).items()
        }
        step["outputs"] = dict(raw.get("outputs") or {})
        step["inputs"] = {k: parse_input(v) for k, v in (raw.get("inputs") or {}).items()}
        steps[name] = step
    for name, step in steps.items():
        needs: list[str] = []
        for input_name, i in step["inputs"].items():
            if i["kind"] != "output":
                continue
            pos = _position(root, ["steps", name, "inputs", input_name])
            ref = f"steps.{i['step']}.outputs.{i['output']}"
            if i["step"] not in steps:
                raise _fail(
                    "pipeline_unknown_reference",
                    f"step {name!r} input {input_name!r} refers to {ref}, but there is no step {i['step']!r}",
                    pos,
                    step=name,
                    reference=ref,
                )
            if i["output"] not in steps[i["step"]]["outputs"]:
                declared = ", ".join(sorted(steps[i["step"]]["outputs"])) or "none"
                raise _fail(
                    "pipeline_unknown_reference",
                    f"step {name!r} input {input_name!r} refers to {ref}, but step {i['step']!r} declares no "
                    f"output {i['output']!r} (it declares: {declared})",
                    pos,
                    step=name,
                    reference=ref,
                )
            if i["step"] not in needs:
                needs.append(i["step"])
        step["needs"] = needs
        deps[name] = needs
    cycle = find_cycle(deps)
    if cycle:
        pos = _position(root, ["steps", cycle[0]], key=True)
        raise _fail(
            "pipeline_cycle",
            "the steps form a cycle: " + " → ".join(cycle),
            pos,
            cycle=cycle,
        )
    return {
        "version": 1,
        "name": data.get("name") or "",
        "description": data.get("description") or "",
        "steps": steps,
        "order": topological(deps),
    }


def digest(source: str) -> str:
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()
