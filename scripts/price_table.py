#!/usr/bin/env python3
"""Regenerate the price snapshot (templates_src/gitlab_cfn/data/prices.json) from AWS's Price List
API with boto3 (pricing:GetProducts; any AWS account, read-only), for every region of taskcat.yml
and every figure the current snapshot holds, plus every instance type, DB class and cache node
type a build offers (its parameters' AllowedValues):

    PYTHONPATH=templates_src .venv/bin/python scripts/price_table.py [--build build] [--out FILE]

Each figure's source becomes the API; the date is today's. Nothing is written unless every
figure was found.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import yaml

from gitlab_cfn.report import pricelist, prices, stack

ROOT = Path(__file__).resolve().parents[1]
OFFERED = {"ec2_hour": ("InstanceType",), "rds_hour": ("DBInstanceClass",), "elasticache_hour": ("CacheNodeType",)}


def regions() -> list[str]:
    config = yaml.safe_load((ROOT / "taskcat.yml").read_text())
    found = []
    for test in config.get("tests", {}).values():
        found += [r for r in test.get("regions", []) if r not in found]
    return found


def keys(snapshot: dict, build: Path | None) -> dict[str, list[str | None]]:
    wanted: dict[str, set] = {}
    for table in snapshot["regions"].values():
        for name, section in table.items():
            entries = wanted.setdefault(name, set())
            if "price" not in section:
                entries |= set(section)
    if build is not None and (build / "templates").is_dir():
        for st in stack.load(build).walk():
            for pname, spec in (st.template.get("Parameters") or {}).items():
                for table, suffixes in OFFERED.items():
                    if pname.endswith(suffixes):
                        wanted.setdefault(table, set()).update(spec.get("AllowedValues") or [])
    return {name: sorted(v) if v else [None] for name, v in wanted.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build", help="build whose AllowedValues are priced too")
    parser.add_argument("--out", default=str(prices.SNAPSHOT))
    args = parser.parse_args(argv)
    import boto3

    client = boto3.client("pricing", region_name=pricelist.API_REGION)
    snapshot = prices.load_snapshot()
    wanted = keys(snapshot, Path(args.build))
    today = date.today().isoformat()
    out = {**snapshot, "collected": today, "regions": {}, "sources": {
        "api": f"AWS Price List API (pricing:GetProducts), {today}",
        "api-backup-snapshot-rate": f"AWS Price List API (pricing:GetProducts), {today}: AWSBackup has no "
                                    "'AWS Backup Storage' row for the resource, so its recovery points are the "
                                    "service's snapshots at the snapshot rate (report/pricelist.py BACKUP)"}}
    for region in regions():
        table: dict = {}
        for name, entries in wanted.items():
            for key in entries:
                source = "api"
                if name == "backup_gb_month":
                    # AWS Backup storage: the AWSBackup service code, else the service's snapshot rate.
                    usd, how = pricelist.backup_storage(client, key, region)
                    source = "api" if "AWSBackup" in how else "api-backup-snapshot-rate"
                else:
                    usd = pricelist.figure(client, name, key, region)
                entry = {"price": usd, "source": source}
                if key is None:
                    table[name] = entry
                else:
                    table.setdefault(name, {})[key] = entry
        out["regions"][region] = table
        print(f"{region}: {sum(len(v) if 'price' not in v else 1 for v in table.values())} figures", file=sys.stderr)
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
