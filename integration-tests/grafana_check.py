"""Checks Grafana dashboard JSON files against Grafana's dashboard model, as
grafana-foundation-sdk (Grafana's dashboards-as-code types, the version pinned in
integration-tests/install-tools.sh, 11.6) defines it.

Usage: python grafana_check.py DASHBOARD.json...   (the venv of install-tools.sh)

For each file, a dashboard is read with the SDK's `Dashboard.from_json` (its panels' options
and field configs through the panel plugins' types, its queries through the data source
plugins' types) and these are failures:
- an unknown field: a key the SDK's types do not keep (the file read and written back by the
  SDK lacks it) or whose value they change;
- a missing field: a field the SDK's types require (not Optional) absent from the file;
- a wrong value: a value that does not fit the field's type (an enum value that does not
  exist, a string where a number goes, ...);
- a panel type with no panel plugin in the SDK, a query of a data source type with no query
  type in the SDK. Jaeger is the one exception: the SDK has no Jaeger query type, so Jaeger
  queries are checked against the fields of Grafana's `JaegerQuery`
  (grafana/grafana public/app/plugins/datasource/jaeger/types.ts, with `DataQuery`'s).

Prints one line per problem and exits 1 when there is any, else prints `ok <file>` per file.
"""

import enum
import json
import sys
import types
import typing

from grafana_foundation_sdk.cog import plugins, runtime, variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

# grafana/grafana public/app/plugins/datasource/jaeger/types.ts: JaegerQuery & DataQuery.
JAEGER_QUERY_FIELDS = {
    "queryType": str,
    "service": str,
    "operation": str,
    "query": str,
    "tags": str,
    "minDuration": str,
    "maxDuration": str,
    "limit": int,
    "refId": str,
    "hide": bool,
    "key": str,
    "datasource": dict,
}
JAEGER_QUERY_TYPES = {"search", "upload", "dependencyGraph"}

_SENTINEL = object()
_KEYS: dict[tuple[type, str], typing.Optional[str]] = {}


def json_key(cls: type, attr: str) -> typing.Optional[str]:
    """The JSON key the SDK writes attribute `attr` of `cls` under."""
    if (cls, attr) not in _KEYS:
        key = None
        try:
            obj = cls()
            setattr(obj, attr, _SENTINEL)
            for k, v in obj.to_json().items():
                if v is _SENTINEL:
                    key = k
        except Exception:  # a model that cannot be built empty: its keys are not checked
            key = None
        _KEYS[(cls, attr)] = key
    return _KEYS[(cls, attr)]


def is_model(value: object) -> bool:
    return callable(getattr(value, "to_json", None)) and hasattr(type(value), "from_json")


class Checker:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[str] = []

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{self.path}: {where}: {what}")

    # --- unknown fields: the file must survive a read and a write by the SDK unchanged ---

    def subset(self, orig: object, back: object, where: str) -> None:
        if isinstance(orig, dict):
            if not isinstance(back, dict):
                self.fail(where, f"the SDK reads {orig!r} as {back!r}")
                return
            for k, v in orig.items():
                if k not in back:
                    self.fail(f"{where}.{k}", "unknown field (the SDK's types do not keep it)")
                else:
                    self.subset(v, back[k], f"{where}.{k}")
        elif isinstance(orig, list):
            if not isinstance(back, list) or len(back) != len(orig):
                self.fail(where, "the SDK does not keep this list as it is")
                return
            for i, (o, b) in enumerate(zip(orig, back)):
                self.subset(o, b, f"{where}[{i}]")
        elif orig != back or type(orig) is not type(back) and not (
            isinstance(orig, (int, float)) and isinstance(back, (int, float))
        ):
            self.fail(where, f"value {orig!r} comes back as {back!r}")

    # --- missing fields and wrong values: the SDK's type hints ---

    def model(self, obj: object, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            self.fail(where, f"an object expected, found {raw!r}")
            return
        if isinstance(obj, runtime.UnknownDataquery):
            # Jaeger queries are checked by `jaeger`; others are reported by `plugins`.
            return
        for attr, hint in typing.get_type_hints(type(obj)).items():
            key = json_key(type(obj), attr)
            if key is None:
                continue
            optional = type(None) in typing.get_args(hint)
            if key not in raw:
                if not optional:
                    self.fail(f"{where}.{key}", "missing (the SDK's type requires it)")
                continue
            self.value(getattr(obj, attr), raw[key], hint, f"{where}.{key}")

    def value(self, value: object, raw: object, hint: object, where: str) -> None:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is typing.Any or hint is object:
            if is_model(value):
                self.model(value, raw, where)
            return
        if origin in (typing.Union, types.UnionType):
            alternatives = [a for a in args if a is not type(None)]
            if raw is None and len(alternatives) < len(args):
                return
            # The SDK already chose among model types (a panel or a row): check that one.
            for a in alternatives:
                if isinstance(a, type) and hasattr(a, "from_json") and isinstance(value, a):
                    self.value(value, raw, a, where)
                    return
            if len(alternatives) == 1:
                self.value(value, raw, alternatives[0], where)
                return
            errors = []
            for a in alternatives:
                sub = Checker(self.path)
                sub.value(value, raw, a, where)
                if not sub.problems:
                    return
                errors.extend(sub.problems)
            self.fail(where, f"{raw!r} fits none of {hint}: {errors}")
            return
        if origin is typing.Literal:
            if raw not in args:
                self.fail(where, f"{raw!r} is not one of {args}")
            return
        if origin is list:
            if not isinstance(raw, list):
                self.fail(where, f"a list expected, found {raw!r}")
                return
            items = value if isinstance(value, list) else raw
            for i, (v, r) in enumerate(zip(items, raw)):
                self.value(v, r, args[0] if args else object, f"{where}[{i}]")
            return
        if origin is dict:
            if not isinstance(raw, dict):
                self.fail(where, f"an object expected, found {raw!r}")
            return
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            if raw not in {m.value for m in hint}:
                self.fail(where, f"{raw!r} is not a value of {hint.__name__}")
            return
        if hint is bool:
            if not isinstance(raw, bool):
                self.fail(where, f"a boolean expected, found {raw!r}")
            return
        if hint in (int, float):
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                self.fail(where, f"a number expected, found {raw!r}")
            elif hint is int and not float(raw).is_integer():
                self.fail(where, f"an integer expected, found {raw!r}")
            return
        if hint is str:
            if not isinstance(raw, str):
                self.fail(where, f"a string expected, found {raw!r}")
            return
        if isinstance(hint, type) and hint is variants.Dataquery:
            self.model(value, raw, where)
            return
        if isinstance(hint, type) and hasattr(hint, "from_json"):
            if not isinstance(raw, dict):
                self.fail(where, f"an object expected, found {raw!r}")
                return
            # Some fields (links, transformations) are kept as raw dicts by from_json.
            obj = value if isinstance(value, hint) else hint.from_json(raw)
            self.model(obj, raw, where)
            return
        self.fail(where, f"no check for type {hint}")

    # --- plugins ---

    def plugins(self, data: dict) -> None:
        rt = runtime.Runtime()
        for i, panel in enumerate(data.get("panels", [])):
            where = f"panels[{i}] ({panel.get('title')!r})"
            kind = panel.get("type")
            if kind != "row" and rt.panelcfg_config(kind) is None:
                self.fail(where, f"panel type {kind!r} has no panel plugin in the SDK")
            ds_type = (panel.get("datasource") or {}).get("type", "")
            for j, target in enumerate(panel.get("targets", [])):
                t_type = (target.get("datasource") or {}).get("type", ds_type)
                if t_type == "jaeger":
                    self.jaeger(target, f"{where}.targets[{j}]")
                elif t_type not in rt.dataquery_variants:
                    self.fail(where, f"data source type {t_type!r} has no query type in the SDK")

    def jaeger(self, target: dict, where: str) -> None:
        for k, v in target.items():
            want = JAEGER_QUERY_FIELDS.get(k)
            if want is None:
                self.fail(f"{where}.{k}", "unknown field of a Jaeger query")
            elif not isinstance(v, want) or isinstance(v, bool) and want is not bool:
                self.fail(f"{where}.{k}", f"{v!r} is not a {want.__name__}")
        if target.get("queryType") not in JAEGER_QUERY_TYPES:
            self.fail(f"{where}.queryType", f"{target.get('queryType')!r} is not a Jaeger query type")

    def run(self) -> list[str]:
        with open(self.path) as f:
            data = json.load(f)
        board = dashboard.Dashboard.from_json(data)
        back = json.loads(json.dumps(board, cls=JSONEncoder))
        self.subset(data, back, "$")
        self.model(board, data, "$")
        self.plugins(data)
        return self.problems


def main() -> int:
    plugins.register_default_plugins()
    problems = []
    for path in sys.argv[1:]:
        found = Checker(path).run()
        problems.extend(found)
        if not found:
            print(f"ok {path}")
    for p in problems:
        print(p)
    return 1 if problems or len(sys.argv) < 2 else 0


if __name__ == "__main__":
    sys.exit(main())
