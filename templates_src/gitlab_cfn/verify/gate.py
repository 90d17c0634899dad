"""``gitlab-cfn check``: the security gate over a build.

Per template: the checkov skip audit and IAM analysis (fast, in-process); then
checkov once over the templates folder. Timings are reported per part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from gitlab_cfn.compile.compiler import read_manifest
from gitlab_cfn.verify import access, checkov, flows, iam, stackmodel
from gitlab_cfn.verify.lint import Finding


@dataclass
class GateResult:
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    templates: int = 0
    policies: int = 0


def access_and_flows(templates: dict[str, dict]) -> list[Finding]:
    """The access check (verify/access.py) and the flow check (verify/flows.py) of decoded templates."""
    try:
        model = stackmodel.Model(templates)
        checked = access.check(model)
        return checked.findings + flows.check(model, checked.calls).findings
    except stackmodel.ModelError as exc:
        return [Finding("access", 1, 1, "GLC020", "error", f"the stack cannot be modelled: {exc}")]


def run_gate(build_dir: str | Path, with_checkov: bool = True) -> GateResult:
    build_dir = Path(build_dir)
    manifest = read_manifest(build_dir)
    result = GateResult()

    started = time.perf_counter()
    templates = {}
    for entry in manifest["templates"].values():
        # Decoded once, and its policy documents resolved once, for both checks.
        template = checkov.decoded((build_dir / entry["path"]).read_text())
        templates[Path(entry["path"]).name] = template
        documents = iam.resolved_documents(template)
        result.findings += checkov.audit_skips(entry["path"], template)
        result.findings += iam.analyse(entry["path"], template, documents)
        result.policies += len(documents)
        result.templates += 1
    result.timings["iam+skips"] = time.perf_counter() - started

    # What the servers' boot scripts need of IAM/KMS and of the network (docs/security.md).
    started = time.perf_counter()
    result.findings += access_and_flows(templates)
    result.timings["access+flows"] = time.perf_counter() - started

    if with_checkov:
        started = time.perf_counter()
        result.findings += checkov.run_checkov(build_dir / "templates")
        result.timings["checkov"] = time.perf_counter() - started
    result.findings.sort()
    return result
