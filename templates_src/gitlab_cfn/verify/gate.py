"""``gitlab-cfn check``: the security gate over a build.

Per template: the checkov skip audit and IAM analysis (fast, in-process); then
checkov once over the templates folder. Timings are reported per part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from gitlab_cfn.compile.compiler import read_manifest
from gitlab_cfn.verify import checkov, iam
from gitlab_cfn.verify.lint import Finding


@dataclass
class GateResult:
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    templates: int = 0
    policies: int = 0


def run_gate(build_dir: str | Path, with_checkov: bool = True) -> GateResult:
    build_dir = Path(build_dir)
    manifest = read_manifest(build_dir)
    result = GateResult()

    started = time.perf_counter()
    for entry in manifest["templates"].values():
        # Decoded once, and its policy documents resolved once, for both checks.
        template = checkov.decoded((build_dir / entry["path"]).read_text())
        documents = iam.resolved_documents(template)
        result.findings += checkov.audit_skips(entry["path"], template)
        result.findings += iam.analyse(entry["path"], template, documents)
        result.policies += len(documents)
        result.templates += 1
    result.timings["iam+skips"] = time.perf_counter() - started

    if with_checkov:
        started = time.perf_counter()
        result.findings += checkov.run_checkov(build_dir / "templates")
        result.timings["checkov"] = time.perf_counter() - started
    result.findings.sort()
    return result
