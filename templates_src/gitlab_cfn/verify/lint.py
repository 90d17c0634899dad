"""Validates every built template with cfn-lint, used as a library.

Errors, warnings and informational checks are all enabled, in every region the
templates are tested in, together with the project's own rules (E9xxx, in
``gitlab_cfn/verify/lint_rules/``, one rule per file). A finding is silenced only by a resource's
``cfn-lint`` metadata, and then only if the same resource explains why under
``gitlab-cfn: suppressions`` (``tier.suppress`` writes both); a suppression
without a reason is itself reported as finding ``GLC001``. A file the manifest
lists besides the templates (the boot bundle) that is missing or whose sha256
differs is finding ``GLC002``.

Templates are linted in parallel, one process per core, because cfn-lint's
work is CPU-bound.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gitlab_cfn.compile.compiler import read_manifest, stack_files

RULES_DIR = Path(__file__).with_name("lint_rules")

# The regions taskcat deploys to (see taskcat.yml): what is linted is what is tested.
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "ap-northeast-1")


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.rule} [{self.level}] {self.message}"


def _unexplained_suppressions(path: str, template: dict) -> list[Finding]:
    findings = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        metadata = (resource or {}).get("Metadata") or {}
        ignored = ((metadata.get("cfn-lint") or {}).get("config") or {}).get("ignore_checks") or []
        reasons = (metadata.get("gitlab-cfn") or {}).get("suppressions") or {}
        for rule in ignored:
            if not str(reasons.get(rule, "")).strip():
                findings.append(Finding(
                    path, 1, 1, "GLC001", "error",
                    f"{logical_id}: {rule} is suppressed without a reason "
                    f"(Metadata.gitlab-cfn.suppressions.{rule})"))
    return findings


_RULES = None


def rules():
    """cfn-lint's rules with informational ones included, plus the project's E9xxx rules."""
    global _RULES
    if _RULES is None:
        from cfnlint.core import get_rules

        _RULES = get_rules(append_rules=[str(RULES_DIR)], ignore_rules=[], include_rules=["I"])
    return _RULES


def lint_text(path: str, text: str, regions: tuple[str, ...] = REGIONS) -> list[Finding]:
    """Lint one template's text; ``path`` is only used to label findings."""
    from cfnlint.api import ManualArgs, lint

    matches = lint(text, rules=rules(), regions=list(regions),
                   config=ManualArgs(regions=list(regions), include_checks=["I"]))
    findings = [
        Finding(
            path,
            m.linenumber,
            m.columnnumber,
            m.rule.id,
            {"E": "error", "W": "warning", "I": "informational"}.get(m.rule.id[0], "error"),
            m.message.replace("\n", " "),
        )
        for m in matches
    ]
    from cfnlint.decode import decode_str

    template, _ = decode_str(text)
    if isinstance(template, dict):
        findings += _unexplained_suppressions(path, template)
    return sorted(set(findings))


def _lint_file(args: tuple[str, str, tuple[str, ...]]) -> list[Finding]:
    path, label, regions = args
    return lint_text(label, Path(path).read_text(encoding="utf-8"), regions)


def lint_build(build_dir: str | Path, regions: tuple[str, ...] = REGIONS,
               jobs: int | None = None) -> tuple[list[Finding], int]:
    """Lint every template the manifest lists; return (findings, templates linted)."""
    build_dir = Path(build_dir)
    manifest = read_manifest(build_dir)
    work = [
        (str(build_dir / entry["path"]), entry["path"], tuple(regions))
        for entry in manifest["templates"].values()
    ]
    files = _stale_files(build_dir, manifest)
    jobs = jobs or min(len(work), os.cpu_count() or 1)
    if jobs <= 1:
        results = [_lint_file(w) for w in work]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_lint_file, work))
    return sorted([*files, *(f for result in results for f in result)]), len(work)


def _stale_files(build_dir: Path, manifest: dict) -> list[Finding]:
    import hashlib

    findings = []
    for entry in stack_files(manifest):
        path = build_dir / entry["path"]
        if not path.is_file():
            findings.append(Finding(entry["path"], 1, 1, "GLC002", "error", "listed in the manifest but missing"))
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            findings.append(Finding(entry["path"], 1, 1, "GLC002", "error",
                                    "changed since it was built: its sha256 differs from the manifest's"))
    return findings
