"""``gitlab-cfn estimate``: monthly cost, deploy time and the guide's bill of materials, from a build."""

from __future__ import annotations

import argparse
import json

from gitlab_cfn.cli.common import DEFAULT_BUILD
from gitlab_cfn.errors import ConfigError

DEFAULT_REGION = "us-east-1"


def _assumptions(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"--assume: {item!r} must be KEY=NUMBER, e.g. s3_gb=500") from None
    return out


def run(args: argparse.Namespace) -> int:
    from gitlab_cfn.report import deploytime, estimate, guide, stack
    from gitlab_cfn.report.prices import Prices

    if args.build is not None and args.config is not None:
        raise ConfigError("estimate: give --build DIR or --config FILE, not both")
    overrides = _assumptions(args.assume)
    assumptions = estimate.load_assumptions(overrides)
    root = stack.load(args.build or DEFAULT_BUILD, args.config)
    if args.live:
        from gitlab_cfn.report.pricelist import LivePrices

        prices = LivePrices(args.region)
    else:
        prices = Prices(args.region)
    result = estimate.estimate(root, prices, assumptions)
    report: dict = {"estimate": result.as_dict()}
    text = [estimate.render(result, "gitlab-cfn estimate")]
    if args.compare_guide:
        theirs = estimate.estimate(guide.load(), prices, assumptions)
        report["guide"] = {"estimate": theirs.as_dict(), "source": guide.SOURCE}
        text += ["", estimate.render(theirs, f"GitLab's POC guide as written ({guide.SOURCE})"), "",
                 guide.compare(result, theirs)]
    if args.deploy_time:
        scenarios = {
            "create": deploytime.Model(),
            "create, every signal at its CreationPolicy timeout": deploytime.Model(upper_bound=True),
            "update rolling the servers": deploytime.RollModel(root),
            "update rolling the servers, every batch at its PauseTime": deploytime.RollModel(root, upper_bound=True),
        }
        report["deploy_time"] = {}
        for title, model in scenarios.items():
            res = model.run(root)
            report["deploy_time"][title] = {
                "minutes": round(res.total / 60, 1),
                "critical_path": [{"tier": s.tier, "resource": s.resource, "type": s.type,
                                   "start_min": round(s.start / 60, 2), "end_min": round(s.end / 60, 2),
                                   "after": s.via.target if s.via else None,
                                   "dependency": s.via.kind if s.via else None} for s in res.path]}
            text += ["", deploytime.render(title, res)]
        findings = deploytime.needless(root, lambda: deploytime.Model())
        whole = deploytime.waits_for_whole_stacks(root, lambda: deploytime.Model())
        report["deploy_time"]["dependencies_on_the_critical_path"] = [f.__dict__ for f in findings]
        report["deploy_time"]["waits_for_whole_nested_stacks"] = [f.__dict__ for f in whole]
        text += ["", "dependencies on the create critical path (minutes saved if removed):"]
        text += [f"  {f.tier}/{f.resource} -> {f.waits_for} ({f.kind}): {f.saving / 60:.1f} min; {f.reason}"
                 for f in findings] or ["  none"]
        text += ["", "nested stacks on the critical path waiting longer than the outputs they read "
                     "(minutes saved if they read them when ready):"]
        text += [f"  {f.tier}/{f.resource} -> {f.waits_for}: {f.saving / 60:.1f} min; {f.reason}"
                 for f in whole] or ["  none"]
        base, early = deploytime.outputs_when_ready(root, lambda: deploytime.Model())
        report["deploy_time"]["if_every_stack_read_outputs_when_ready_minutes"] = round(early / 60, 1)
        text += [f"  all of them at once: {early / 60:.1f} min instead of {base / 60:.1f} "
                 f"({(base - early) / 60:.1f} min less)"]
    print(json.dumps(report, indent=2) if args.json else "\n".join(text))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "estimate", help="monthly cost, deploy time and the guide's bill of materials, from a build",
        description="Price a build per resource, per tier and in total from a dated price snapshot "
                    "(or AWS's Price List API with --live), compare it with GitLab's POC guide, and "
                    "model how long it takes to create and to roll its servers.")
    p.add_argument("--build", metavar="DIR", default=None, help=f"build folder (default: {DEFAULT_BUILD})")
    p.add_argument("--config", metavar="FILE", help="compile this build config in memory instead")
    p.add_argument("--region", default=DEFAULT_REGION, help=f"AWS region (default: {DEFAULT_REGION})")
    p.add_argument("--live", action="store_true", help="ask AWS's Price List API (needs AWS credentials)")
    p.add_argument("--assume", action="append", default=[], metavar="KEY=NUMBER",
                   help="override an assumed usage (nat_gb_per_gateway, lb_gb, lb_lcu, s3_gb)")
    p.add_argument("--compare-guide", action="store_true",
                   help="also price GitLab's POC guide as written, and compare")
    p.add_argument("--deploy-time", action="store_true",
                   help="also model the create and rolling-update times (critical paths)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
