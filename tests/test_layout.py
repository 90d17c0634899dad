"""The package's import direction: cli -> operate -> report -> verify -> compile, stand-in apart.

A module may import from its own layer and the layers below it, never above; the
stand-in (which runs in its own virtual environment) imports none of the others.
``errors``, ``refs`` (pure template walking) and the package root (``__version__``) are
shared by all; ``__main__``
(``python -m gitlab_cfn``) is the command line's other door.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "templates_src" / "gitlab_cfn"
ORDER = ("compile", "verify", "report", "operate", "cli")
SHARED = {"errors", "refs", ""}


def layer(module: str) -> str:
    """``gitlab_cfn.compile.tiers.app`` -> ``compile``; ``gitlab_cfn.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(source: str, target: str) -> bool:
    if source == "__main__":
        return target == "cli"
    if target in SHARED or source == target:
        return True
    if source == "standin" or target == "standin":
        return source == "cli" and target == "standin"
    if source in ORDER and target in ORDER:
        return ORDER.index(target) < ORDER.index(source)
    return source in SHARED and target in SHARED


def imports(path: Path, package: Path) -> list[str]:
    """Every gitlab_cfn module a file imports (absolute or relative)."""
    rel = path.relative_to(package.parent).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("gitlab_cfn")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "gitlab_cfn":
                found += [f"gitlab_cfn.{a.name}" for a in node.names]
            elif module.startswith("gitlab_cfn"):
                found.append(module)
    return found


def violations(package: Path) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        source = layer(".".join(path.relative_to(package.parent).with_suffix("").parts))
        for module in imports(path, package):
            target = layer(module)
            if target != "__version__" and not allowed(source, target):
                out.append(f"{path.relative_to(package)}: {source or 'gitlab_cfn'} imports {module}")
    return out


def test_nothing_lower_imports_anything_higher():
    assert violations(PACKAGE) == []


def test_the_layers_exist_and_nothing_else_sits_at_the_top():
    top = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert top == {"__init__", "__main__", "errors", "refs", "compile", "verify", "report", "operate", "standin", "cli"}


def test_an_upward_import_is_reported(tmp_path):
    package = tmp_path / "gitlab_cfn"
    for sub in ("compile", "operate", "standin"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "compile" / "naming.py").write_text("from gitlab_cfn.operate.deploy import deploy\n")
    (package / "operate" / "deploy.py").write_text("from ..compile import naming\nfrom gitlab_cfn import errors\n")
    (package / "standin" / "models.py").write_text("from gitlab_cfn.compile.naming import tags\n")
    assert violations(package) == [
        "compile/naming.py: compile imports gitlab_cfn.operate.deploy",
        "standin/models.py: standin imports gitlab_cfn.compile.naming",
    ]
