"""A build as a tree of stacks: the parent, and each nested stack with the template its
``TemplateURL`` names and the parameter values its parent passes (resolved to literals where
they can be: parameter defaults, ``Fn::FindInMap``, ``Fn::If`` on evaluable conditions).

Values that only exist at deploy time (another stack's outputs, attributes) stay ``None``
from :func:`Stack.value`, and :func:`Stack.target` follows them across stacks to the resource
they name: ``Fn::GetAtt [NetworkStack, Outputs.PrivateSubnet1Id]`` in the parent becomes the
network stack's ``PrivateSubnet1`` subnet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from gitlab_cfn.errors import ConfigError

MAIN = "main.template.yaml"
NESTED = "AWS::CloudFormation::Stack"
UNKNOWN = None


@dataclass
class Stack:
    """One template in the tree. ``name`` is the tier (``main`` for the parent)."""

    name: str
    template: dict
    parent: "Stack | None" = None
    logical_id: str | None = None          # the nested stack resource in the parent
    passed: dict = field(default_factory=dict)   # parameter -> the parent's expression
    children: dict[str, "Stack"] = field(default_factory=dict)  # logical id -> stack

    @property
    def resources(self) -> dict[str, dict]:
        return self.template.get("Resources", {}) or {}

    def walk(self, conditional: bool = False) -> Iterator["Stack"]:
        """This stack and its nested stacks, leaving out those whose condition is false with the
        defaults (``conditional=True`` keeps them)."""
        yield self
        for rid, child in self.children.items():
            if conditional or self.exists(rid):
                yield from child.walk(conditional)

    @property
    def created(self) -> bool:
        """False when this stack, or one above it, has a condition that is false with the defaults."""
        node: Stack = self
        while node.parent is not None:
            if not node.parent.exists(node.logical_id):
                return False
            node = node.parent
        return True

    # -- literal values -----------------------------------------------------------------------

    def param(self, name: str) -> Any:
        """A parameter's value: what the parent passes (when it resolves), else its default."""
        if name in self.passed and self.parent is not None:
            value = self.parent.value(self.passed[name])
            if value is not UNKNOWN:
                return value
        spec = (self.template.get("Parameters") or {}).get(name)
        if spec is None:
            return UNKNOWN
        return spec.get("Default", UNKNOWN)

    def condition(self, name: str) -> bool:
        """A condition's value; one that cannot be evaluated from the defaults counts as true."""
        expr = (self.template.get("Conditions") or {}).get(name)
        if expr is None:
            return True
        value = self._cond(expr)
        return True if value is UNKNOWN else bool(value)

    def _cond(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            (fn, args), = expr.items()
            if fn == "Fn::Equals":
                a, b = (self.value(x) for x in args)
                return UNKNOWN if UNKNOWN in (a, b) else str(a) == str(b)
            if fn == "Fn::Not":
                v = self._cond(args[0])
                return UNKNOWN if v is UNKNOWN else not v
            if fn in ("Fn::And", "Fn::Or"):
                vs = [self._cond(x) for x in args]
                if UNKNOWN in vs:
                    return UNKNOWN
                return all(vs) if fn == "Fn::And" else any(vs)
            if fn == "Condition":
                return self.condition(args)
        return self.value(expr)

    def value(self, expr: Any) -> Any:
        """The literal an expression has before deployment, or None."""
        if isinstance(expr, (str, int, float, bool)):
            return expr
        if isinstance(expr, list):
            items = [self.value(x) for x in expr]
            return UNKNOWN if UNKNOWN in items else items
        if not isinstance(expr, dict) or len(expr) != 1:
            return UNKNOWN
        (fn, args), = expr.items()
        if fn == "Ref":
            if args in (self.template.get("Parameters") or {}):
                return self.param(args)
            return UNKNOWN
        if fn == "Fn::FindInMap":
            keys = [self.value(x) for x in args]
            if UNKNOWN in keys:
                return UNKNOWN
            try:
                return self.template["Mappings"][keys[0]][keys[1]][keys[2]]
            except (KeyError, TypeError):
                return UNKNOWN
        if fn == "Fn::If":
            name, yes, no = args
            return self.value(yes if self.condition(name) else no)
        if fn == "Fn::Select":
            index, items = self.value(args[0]), self.value(args[1])
            if isinstance(items, str):
                items = items.split(",")
            if index is UNKNOWN or not isinstance(items, list):
                return UNKNOWN
            try:
                return items[int(index)]
            except (IndexError, ValueError):
                return UNKNOWN
        return UNKNOWN

    def number(self, expr: Any, default: float | None = None) -> float | None:
        value = self.value(expr)
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    def exists(self, logical_id: str) -> bool:
        """False when the resource's condition is false with the defaults."""
        cond = self.resources[logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    # -- following references across stacks ----------------------------------------------------

    def target(self, expr: Any, _depth: int = 0) -> list[tuple["Stack", str]]:
        """The resources an expression names, followed through parameters and nested outputs."""
        if _depth > 20:
            return []
        if isinstance(expr, list):
            return [t for x in expr for t in self.target(x, _depth + 1)]
        if not isinstance(expr, dict) or len(expr) != 1:
            return []
        (fn, args), = expr.items()
        if fn == "Ref":
            if args in self.resources:
                return [(self, args)]
            if args in self.passed and self.parent is not None:
                return self.parent.target(self.passed[args], _depth + 1)
            return []
        if fn == "Fn::GetAtt":
            name, attr = args if isinstance(args, list) else str(args).split(".", 1)
            if name in self.children and str(attr).startswith("Outputs."):
                child = self.children[name]
                output = (child.template.get("Outputs") or {}).get(attr.split(".", 1)[1])
                return child.target(output.get("Value"), _depth + 1) if output else []
            if name in self.resources:
                return [(self, name)]
            return []
        if fn in ("Fn::Join", "Fn::Split"):
            return self.target(args[1], _depth + 1)
        if fn == "Fn::Select":
            return self.target(args[1], _depth + 1)
        if fn == "Fn::If":
            return self.target(args[1] if self.condition(args[0]) else args[2], _depth + 1)
        return []


def _template_file(url: Any) -> str | None:
    """``.../templates/app.template.yaml`` -> ``app.template.yaml``, from a URL or its Fn::Sub."""
    if isinstance(url, dict):
        url = url.get("Fn::Sub", "")
        if isinstance(url, list):
            url = url[0]
    match = re.search(r"([\w.-]+\.template\.(?:ya?ml|json))$", str(url))
    return match.group(1) if match else None


def tier_name(file_name: str) -> str:
    return re.sub(r"\.template\.(ya?ml|json)$", "", file_name)


def tree(templates: dict[str, dict], root: str = MAIN) -> Stack:
    """The stack tree from parsed templates keyed by file name."""
    if root not in templates:
        raise ConfigError(f"build: no {root} (the parent template) in the build")

    def make(file_name: str, parent: Stack | None, logical_id: str | None, passed: dict,
             seen: tuple) -> Stack:
        stack = Stack(name=tier_name(file_name), template=templates[file_name], parent=parent,
                      logical_id=logical_id, passed=passed)
        for rid, res in stack.resources.items():
            if res.get("Type") != NESTED:
                continue
            child_file = _template_file((res.get("Properties") or {}).get("TemplateURL"))
            if child_file is None or child_file not in templates:
                raise ConfigError(f"build: {stack.name} stack {rid}: its TemplateURL names no "
                                  f"template of the build (have: {', '.join(sorted(templates))})")
            if child_file in seen:
                raise ConfigError(f"build: {child_file} nests itself")
            stack.children[rid] = make(child_file, stack, rid,
                                       (res.get("Properties") or {}).get("Parameters") or {},
                                       seen + (child_file,))
        return stack

    return make(root, None, None, {}, (root,))


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Folder(dict):
    """Templates of a build folder, parsed when first asked for (the tree reads only those the
    parent nests, not the Service Catalog portfolio)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder
        self.names = sorted(p.name for p in folder.glob("*.template.*"))

    def __contains__(self, name) -> bool:
        return name in self.names

    def __iter__(self):
        return iter(self.names)

    def __missing__(self, name: str) -> dict:
        path = self.folder / name
        try:
            data = yaml.load(path.read_text(), Loader=_Loader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--build: {path} is not YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--build: {path} is not a template (not a mapping)")
        self[name] = data
        return data


def load_dir(build_dir: str | Path) -> dict[str, dict]:
    """Templates of a build folder (``<dir>/templates/*.template.yaml``), parsed on first use."""
    folder = Path(build_dir) / "templates"
    if not folder.is_dir():
        raise ConfigError(f"--build: {build_dir} has no templates/ folder (run gitlab-cfn build first)")
    return _Folder(folder)


def load(build_dir: str | Path | None = None, config_file: str | None = None) -> Stack:
    """The tree of a build folder, or of a config compiled in memory."""
    if config_file is not None:
        from gitlab_cfn.compile import compiler, config

        cfg = config.load(config_file)
        data = compiler.compile_data(cfg)
        return tree({name: value for name, value in data.items()})
    return tree(load_dir(build_dir or "build"))
