"""GitLab's POC guide as written, as a bill of materials (``data/guide-poc.template.yaml``),
priced with the same rules as a build and compared with it."""

from __future__ import annotations

from pathlib import Path

import yaml

from gitlab_cfn.report.estimate import Estimate, money
from gitlab_cfn.report.stack import Stack

FILE = Path(__file__).resolve().parents[1] / "data" / "guide-poc.template.yaml"
SOURCE = "docs.gitlab.com/ee/install/aws/ (doc/install/aws/index.md)"

# What a line is, for comparing like with like.
GROUPS = (
    ("servers: GitLab application", ("AutoScalingGroup",)),
    ("servers: Gitaly", ("Gitaly",)),
    ("servers: bastions", ("Bastion",)),
    ("database", ("RDS",)),
    ("cache", ("ElastiCache",)),
    ("network: NAT, load balancer, public IPv4", ("NAT", "Load Balancer", "public IPv4")),
)


def load() -> Stack:
    return Stack(name="guide", template=yaml.safe_load(FILE.read_text()))


def group(line) -> str:
    text = f"{line.resource} {line.type} {line.item}"
    if line.type == "AWS::AutoScaling::AutoScalingGroup":
        return GROUPS[0][0]
    for name, words in GROUPS[1:]:
        if any(w in text for w in words):
            return name
    return "other (keys, secrets, alarms, S3)"


def compare(ours: Estimate, theirs: Estimate) -> str:
    rows: dict[str, list[float]] = {}
    for index, est in enumerate((ours, theirs)):
        for line in est.lines:
            rows.setdefault(group(line), [0.0, 0.0])[index] += line.monthly
    out = [f"{'per month':<44} {'this build':>12} {'the guide':>12} {'difference':>12}"]
    for name, (a, b) in rows.items():
        out.append(f"{name:<44} {money(a):>12} {money(b):>12} {money(a - b):>12}")
    out.append(f"{'TOTAL':<44} {money(ours.total):>12} {money(theirs.total):>12} {money(ours.total - theirs.total):>12}")
    return "\n".join(out)
