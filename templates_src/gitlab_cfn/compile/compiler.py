"""Compiles a build config into the parent and nested templates, and writes them.

``compile_templates`` is pure: config in, ``{file name: YAML text}`` out, the same
bytes for the same config (keys sorted, no timestamps). ``write_build`` writes
them, the boot bundle (``scripts/boot-<sha256>.tar.gz``, see ``bundle``) and
``manifest.json`` into a temporary folder next to the output folder and swaps it
in only when everything is written, so a failed build leaves the previous one
untouched.

The manifest lists the templates under ``templates`` and every other file that
is published and deployed with them under ``files`` (path, sha256, size):
``stack_files`` is what goes next to the templates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from gitlab_cfn import __version__
from gitlab_cfn.compile import bundle, catalog, service_catalog
from gitlab_cfn.compile.config import BuildConfig
from gitlab_cfn.compile.naming import MAIN, TEMPLATE_DIR, TIERS, template_file
from gitlab_cfn.compile.tier import Tier
from gitlab_cfn.compile.tiers import MODULES
from gitlab_cfn.compile.wiring import build_parent
from gitlab_cfn.errors import ConfigError

MANIFEST = "manifest.json"
# The manifest's key of the Service Catalog template: built, linted, checked and
# published with the others, but not part of the GitLab stack that deploy creates.
PORTFOLIO = "service-catalog"


def build_tiers(cfg: BuildConfig, specs: dict | None = None) -> list[Tier]:
    specs = catalog.parameters(cfg) if specs is None else specs
    tiers = []
    for name in TIERS:
        if name == "bastion" and not cfg.bastions:
            continue
        if name == "praefect" and not cfg.cluster:
            continue
        if name == "prometheus" and not cfg.monitoring.node:
            continue
        module = MODULES[name]
        tier = Tier(name=name, cfg=cfg, specs=specs, description=module.DESCRIPTION)
        module.build(tier)
        tiers.append(tier)
    return tiers


def as_data(template) -> dict:
    """A troposphere template as plain data, keys sorted."""
    return json.loads(template.to_json(sort_keys=True))


def render(data: dict) -> str:
    """YAML with sorted keys: stable to diff and byte-identical between builds."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100)


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def compile_data(cfg: BuildConfig) -> dict[str, dict]:
    """Every template of a build as plain data, keyed by file name: ``main.template.yaml``
    first, the tiers, then the Service Catalog portfolio that offers them as a product."""
    specs = catalog.parameters(cfg)
    tiers = build_tiers(cfg, specs)
    parent = build_parent(cfg, tiers, specs)
    product = {template_file(MAIN): as_data(parent)}
    for tier in tiers:
        product[template_file(tier.name)] = as_data(tier.template)
    return {**product, service_catalog.FILE: as_data(service_catalog.build(specs, product))}


def compile_templates(cfg: BuildConfig) -> dict[str, str]:
    """Every template of a build as YAML text, keyed by file name (see ``compile_data``)."""
    return {name: render(data) for name, data in compile_data(cfg).items()}


@dataclass(frozen=True)
class TemplateEntry:
    path: str
    sha256: str
    resources: int
    parameters: list[str]
    outputs: list[str]


def manifest_entry(path: str, data: dict, text: str) -> TemplateEntry:
    """A template's manifest entry, counted from the data it was rendered from."""
    return TemplateEntry(
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        resources=len(data.get("Resources", {})),
        parameters=sorted(data.get("Parameters", {})),
        outputs=sorted(data.get("Outputs", {})),
    )


def make_manifest(cfg: BuildConfig, data: dict[str, dict], texts: dict[str, str]) -> dict:
    entries = {}
    for name, text in texts.items():
        tier = name.removesuffix(".template.yaml")
        entries[tier] = asdict(manifest_entry(f"{TEMPLATE_DIR}/{name}", data[name], text))
    from gitlab_cfn.compile.launch_role import schema_source

    built = bundle.build()
    files = {"boot-bundle": {"path": built.key, "sha256": built.sha256, "size": built.size}}
    return {"gitlab_cfn_version": __version__, "config": asdict(cfg), "templates": entries,
            "files": files, "launch_role_actions_from": schema_source()}


def product_entries(manifest: dict) -> dict[str, dict]:
    """The manifest's entries of the GitLab stack: the parent and its tiers."""
    return {name: e for name, e in manifest["templates"].items() if name != PORTFOLIO}


def stack_files(manifest: dict) -> list[dict]:
    """Every file of the build that is not a template and goes next to the templates
    (the boot bundle): each ``{path, sha256, size}``."""
    return list(manifest.get("files", {}).values())


def _check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that is not a previous build (a typo in --out)."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out: {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise ConfigError(
                f"--out: {out} is not empty and holds no {MANIFEST}; refusing to replace it")


def write_build(cfg: BuildConfig, out: str | Path) -> dict:
    """Compile and write a build folder atomically; return the manifest."""
    out = Path(out)
    _check_out_dir(out)
    data = compile_data(cfg)
    templates = {name: render(content) for name, content in data.items()}
    manifest = make_manifest(cfg, data, templates)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / TEMPLATE_DIR).mkdir()
        for name, text in templates.items():
            (staging / TEMPLATE_DIR / name).write_text(text, encoding="utf-8")
        built = bundle.build()
        (staging / built.key).parent.mkdir(parents=True)
        (staging / built.key).write_bytes(built.data)
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _swap(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        old.rmdir()
        out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(build_dir: str | Path) -> dict:
    path = Path(build_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--build: no {MANIFEST} in {build_dir}; run 'gitlab-cfn build' first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--build: cannot read {path}: {exc}") from None
