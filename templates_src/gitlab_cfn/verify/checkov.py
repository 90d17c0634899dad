"""checkov over every built template, offline, with an audited list of skips.

checkov runs from its own virtual environment (``.venv-checkov``, made by
``make build``): it needs newer jsonschema and urllib3 than taskcat allows.
Each nested template is scanned as its own file (checkov sees a nested stack
as one opaque resource).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from cfnlint.decode import decode_str

from gitlab_cfn.errors import ConfigError
from gitlab_cfn.verify.lint import Finding

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("GITLAB_CFN_CHECKOV_VENV", REPO / ".venv-checkov"))
ALLOWLIST = Path(__file__).resolve().parent.parent / "data" / "checkov-allowlist.yaml"


def allowlist() -> dict[str, set[str]]:
    entries = yaml.safe_load(ALLOWLIST.read_text())
    return {e["check"]: set(e["resources"]) for e in entries}


def decoded(source: str | dict) -> dict:
    """A template given as text (decoded with cfn-lint's decoder) or already decoded."""
    if isinstance(source, dict):
        return source
    template, _ = decode_str(source)
    return template or {}


def audit_skips(path: str, source: str | dict, allowed: dict[str, set[str]] | None = None) -> list[Finding]:
    """Every checkov skip in a template must be allowlisted and explain itself."""
    allowed = allowlist() if allowed is None else allowed
    template = decoded(source)
    findings = []
    for name, resource in ((template or {}).get("Resources") or {}).items():
        skips = (((resource or {}).get("Metadata") or {}).get("checkov") or {}).get("skip") or []
        for skip in skips:
            check = skip.get("id")
            if not str(skip.get("comment") or "").strip():
                findings.append(Finding(path, 1, 1, "GLC002", "error",
                                        f"{name}: checkov skip {check} has no reason (comment)"))
            if name not in allowed.get(check, set()):
                findings.append(Finding(path, 1, 1, "GLC003", "error",
                                        f"{name}: checkov skip {check} is not on the allowlist "
                                        f"({ALLOWLIST.name})"))
    return findings


def run_checkov(templates_dir: Path) -> list[Finding]:
    checkov = VENV / "bin" / "checkov"
    if not checkov.exists():
        raise ConfigError(f"checkov is not installed ({checkov} is missing): run 'make build'")
    result = subprocess.run(
        [str(checkov), "-d", str(templates_dir), "--framework", "cloudformation", "--skip-download",
         "--output", "json", "--quiet", "--compact"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"})
    if not result.stdout.strip():
        raise ConfigError(f"checkov printed no report (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    findings = []
    for report in reports:
        if not isinstance(report, dict) or "results" not in report:
            continue
        if report.get("summary", {}).get("parsing_errors"):
            findings.append(Finding("templates", 1, 1, "CKV_PARSE", "error",
                                    f"checkov could not parse {report['summary']['parsing_errors']} template(s)"))
        for check in report["results"].get("failed_checks", []):
            line = (check.get("file_line_range") or [1])[0]
            resource = check.get("resource", "").split(".", 1)[-1]
            findings.append(Finding(
                f"templates/{check['file_path'].lstrip('/')}", line, 1, check["check_id"], "error",
                f"{resource}: {check['check_name']}"))
    return findings
