#!/usr/bin/env python3
"""Add the regions of taskcat.yml besides us-east-1 to the price snapshot
(templates_src/gitlab_cfn/data/prices.json) from public copies of AWS's Price List API output,
where no AWS account is at hand (with one, scripts/price_table.py asks the API itself):

    python3 scripts/price_sources.py --rosa GITDIR --vantage GITDIR [--out FILE]

--rosa     a clone of github.com/jimgarrett123/rosa-calculator (frontend/public/prices/
           <region>-ec2.json and <region>-ebs.json: EC2 Linux on-demand and EBS prices written by
           its price/prices-ec2.py and prices-ebs.py from pricing:GetProducts, 2023-02-20)
--vantage  a clone of github.com/vantage-sh/ec2instances.info (www/rds/instances.json at
           14ede5a5, 2021-08-03; www/cache/instances.json at 3e75a5dd, 2022-02-13: RDS and
           ElastiCache on-demand prices per region scraped from AWS's price files)

Every figure keeps its source; a figure no source gives is left out (``estimate`` then refuses
the item in one line). Three rules derive figures and say so (sources ``ec2-linear``,
``rds-6i-as-5``, ``rds-multi-az-rule``); tests/test_estimate.py checks each rule against every
us-east-1 figure it could have derived but which is sourced. A source table is trusted for a
type only where its us-east-1 figure equals the snapshot's sourced one, and for ElastiCache also
only where no region is below us-east-1 (that table gives some types another type's figures:
cache.m5.large reads 0.06 in us-west-2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "templates_src" / "gitlab_cfn" / "data" / "prices.json"
REGIONS = ("us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "ap-northeast-1")
ROSA_COMMIT = "bf29b7c"
RDS_AT = "14ede5a5"
CACHE_AT = "3e75a5dd"

SOURCES = {
    "rosa-ec2": "github.com/jimgarrett123/rosa-calculator frontend/public/prices/<region>-ec2.json "
                "(written 2023-02-20 by its price/prices-ec2.py from the AWS Price List API, "
                "pricing:GetProducts AmazonEC2, Linux, Shared tenancy, preInstalledSw NA, capacitystatus Used); "
                "every us-east-1 figure it shares with karpenter-ec2 is equal",
    "rosa-ebs": "github.com/jimgarrett123/rosa-calculator frontend/public/prices/<region>-ebs.json "
                "(written 2023-02-20 by its price/prices-ebs.py from the AWS Price List API); its us-east-1 "
                "figures equal infracost-ebs (gp3 throughput per GiBps-month / 1024 = per MiBps-month)",
    "vantage-rds": "github.com/vantage-sh/ec2instances.info www/rds/instances.json at 14ede5a5 (2021-08-03, "
                   "scraped from AWS's RDS price file), PostgreSQL on-demand; its us-east-1 figures equal the "
                   "snapshot's sourced ones for every class both hold",
    "vantage-cache": "github.com/vantage-sh/ec2instances.info www/cache/instances.json at 3e75a5dd "
                     "(2022-02-13), Redis on-demand; used only for node types whose us-east-1 figure equals "
                     "elasticache-pricelist (the file mixes engines and regions for others)",
    "ec2-linear": "derived: EC2 Linux on-demand prices within a family are linear in size (large = xlarge/2; "
                  "t3/t3a nano..large = xlarge/32..xlarge/2), as every sourced us-east-1 figure of "
                  "karpenter-ec2 shows (tests/test_estimate.py checks it); the xlarge figure is rosa-ec2's",
    "rds-6i-as-5": "derived: a db.m6i/db.r6i class costs what the db.m5/db.r5 class of the same size costs, "
                   "as every sourced us-east-1 pair shows (tests/test_estimate.py checks it); the db.m5/db.r5 "
                   "figure is vantage-rds's",
    "rds-multi-az-rule": "derived: a Multi-AZ DB instance is billed at twice the Single-AZ instance and storage "
                         "rates (infracost-rds in us-east-1; eu-west1-audit found 2.00x for db.t3.medium and "
                         "for io1/gp2/gp3 storage in eu-west-1)",
    "eu-west1-audit": "public code found with the search index (file id 53618026718, an audit report quoting the "
                      "AWS Price List API for eu-west-1 on 2026-05-01): NAT gateway $0.048 per hour and per GB, "
                      "Classic load balancer $0.028 per hour and $0.008 per GB, public IPv4 $0.005 per hour, "
                      "RDS storage Single-AZ io1 $0.138 and gp2/gp3 $0.127 per GB-month, S3 Standard $0.023 per GB-month; "
                      "its EC2 m5.large $0.107 and EBS gp3 $0.088 equal rosa-ec2 and rosa-ebs",
    "eu-west1-offers": "github.com/henderjm/world-cup-sweepstake docs/costs/aws-ireland-rates.json (checked "
                       "2026-10-04: rows of AWS's eu-west-1 offer files with SKU and catalog version): "
                       "EU-CW:AlarmMonitorUsage $0.10 per alarm metric month, EU-DataProcessing-Bytes $0.57 per GB "
                       "of log data ingested, EU-AWSSecretsManager-Secrets $0.40 per secret, "
                       "EU-PublicIPv4:InUseAddress $0.005 per hour, S3 EU-TimedStorage-ByteHrs $0.023 per GB "
                       "(first 50 TB); the alarm and log figures equal github.com/mamtha4u/SDLC "
                       "backend/config/pricing_eu-west-1.json (offer files fetched 2026-10-02)",
    "apne1-estimate": "public code found with the search index (file id 68674663788, a cost estimate read from the "
                      "AWS price pages and Price List API on 2026-09-25 for ap-northeast-1): APN1-NatGateway-Hours "
                      "$0.062 per hour, APN1-NatGateway-Bytes $0.062 per GB, APN1-PublicIPv4:InUseAddress $0.005 per hour",
    "aws-kms-page": "aws.amazon.com/kms/pricing (as stored by the search index): 'Each AWS KMS key that you create "
                    "in KMS costs $1/month' with no regional variation stated",
}

# Figures read from documents rather than tables: region -> table -> (price, source).
QUOTED = {
    "eu-west-1": {
        "nat_hour": (0.048, "eu-west1-audit"), "nat_gb": (0.048, "eu-west1-audit"),
        "clb_hour": (0.028, "eu-west1-audit"), "clb_gb": (0.008, "eu-west1-audit"),
        "public_ipv4_hour": (0.005, "eu-west1-offers"), "s3_gb_month": (0.023, "eu-west1-offers"),
        "alarm_month": (0.1, "eu-west1-offers"), "logs_gb": (0.57, "eu-west1-offers"),
        "secret_month": (0.4, "eu-west1-offers"),
        "rds_gb_month": {"io1": (0.138, "eu-west1-audit"), "gp2": (0.127, "eu-west1-audit"),
                         "gp3": (0.127, "eu-west1-audit")},
    },
    "ap-northeast-1": {
        "nat_hour": (0.062, "apne1-estimate"), "nat_gb": (0.062, "apne1-estimate"),
        "public_ipv4_hour": (0.005, "apne1-estimate"),
    },
}
EVERY_REGION = {"kms_key_month": (1.0, "aws-kms-page"), "rds_multi_az_factor": (2, "rds-multi-az-rule")}

EBS = {  # snapshot table, key -> rosa-ebs name, scale
    ("ebs_gb_month", "gp2"): ("Storage General Purpose gp2 GB Mo", 1),
    ("ebs_gb_month", "gp3"): ("Storage General Purpose gp3 GB Mo", 1),
    ("ebs_gb_month", "io1"): ("Storage Provisioned IOPS io1 GB Mo", 1),
    ("ebs_gb_month", "io2"): ("Storage Provisioned IOPS io2 GB Mo", 1),
    ("ebs_iops_month", "gp3"): ("Provisioned EBS IOPS gp3 Volumes per IOPS Mo", 1),
    ("ebs_iops_month", "io1"): ("Provisioned EBS IOPS io1 Volumes per IOPS Mo", 1),
    ("ebs_iops_month", "io2"): ("Provisioned EBS IOPS io2 Volumes per IOPS Mo", 1),
    ("ebs_mbps_month", "gp3"): ("Provisioned Throughput gp3 per GiBps mo", 1 / 1024),
}
# Linear sizes below xlarge: size -> fraction of the xlarge price.
BELOW_XLARGE = {"large": 1 / 2, "medium": 1 / 4, "small": 1 / 8, "micro": 1 / 16, "nano": 1 / 32}
LINEAR_FAMILIES = {"c5", "c5n", "c6i", "m5", "m6i", "r5", "r6i", "t3", "t3a"}


def git_json(gitdir: str, spec: str):
    return json.loads(subprocess.run(["git", "--git-dir", gitdir, "show", spec], check=True,
                                     capture_output=True, text=True).stdout)


def linear_derivation(table: dict[str, float], itype: str) -> float | None:
    """The price of ``itype`` from the same family's xlarge in ``table``, or None."""
    family, _, size = itype.partition(".")
    if family not in LINEAR_FAMILIES or size not in BELOW_XLARGE or f"{family}.xlarge" not in table:
        return None
    return round(table[f"{family}.xlarge"] * BELOW_XLARGE[size], 6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rosa", required=True)
    parser.add_argument("--vantage", required=True)
    parser.add_argument("--out", default=str(SNAPSHOT))
    args = parser.parse_args(argv)
    snapshot = json.loads(SNAPSHOT.read_text())
    us = snapshot["regions"]["us-east-1"]
    wanted = {table: sorted(section) for table, section in us.items() if "price" not in section}
    rds = {row["instance_type"]: row["pricing"] for row in git_json(args.vantage, f"{RDS_AT}:www/rds/instances.json")}
    cache = {row["instance_type"]: row["pricing"] for row in git_json(args.vantage, f"{CACHE_AT}:www/cache/instances.json")}

    def rds_price(cls: str, region: str) -> float | None:
        return (rds.get(cls, {}).get(region, {}).get("PostgreSQL") or {}).get("ondemand")

    def cache_price(node: str, region: str) -> float | None:
        return (cache.get(node, {}).get(region, {}).get("Redis") or {}).get("ondemand")

    # The ElastiCache table gives some node types another type's figures in some regions (cache.m5.large
    # reads 0.06 in us-west-2, below its 0.156 in us-east-1); no region of taskcat.yml is cheaper than
    # us-east-1, so a type is used only if its us-east-1 figure is right and no region is below it.
    trusted_cache = [n for n in wanted["elasticache_hour"]
                     if cache_price(n, "us-east-1") == us["elasticache_hour"][n]["price"]
                     and all((cache_price(n, r) or 1e9) >= us["elasticache_hour"][n]["price"] for r in REGIONS)]
    trusted_rds = [c for c in wanted["rds_hour"] if rds_price(c, "us-east-1") == us["rds_hour"][c]["price"]]
    print(f"trusted: {len(trusted_rds)} RDS classes, cache nodes {trusted_cache}; RDS classes whose us-east-1 "
          f"figure differs: {[c for c in wanted['rds_hour'] if c not in trusted_rds and rds_price(c, 'us-east-1')]}",
          file=sys.stderr)
    out_regions = {"us-east-1": us}
    for region in REGIONS:
        table: dict = {}

        def put(name: str, key: str | None, price: float | None, source: str) -> None:
            if price is None:
                return
            entry = {"price": round(float(price), 6), "source": source}
            if key is None:
                table[name] = entry
            else:
                table.setdefault(name, {})[key] = entry

        ec2 = {row["type"]: float(row["priceOnDemand"])
               for row in git_json(args.rosa, f"{ROSA_COMMIT}:frontend/public/prices/{region}-ec2.json")}
        for itype in wanted["ec2_hour"]:
            if itype in ec2:
                put("ec2_hour", itype, ec2[itype], "rosa-ec2")
            else:
                put("ec2_hour", itype, linear_derivation(ec2, itype), "ec2-linear")
        ebs = git_json(args.rosa, f"{ROSA_COMMIT}:frontend/public/prices/{region}-ebs.json")
        for (name, key), (label, scale) in EBS.items():
            if label in ebs:
                put(name, key, float(ebs[label]["price"]) * scale, "rosa-ebs")
        for cls in wanted["rds_hour"]:
            if cls in trusted_rds and rds_price(cls, region) is not None:
                put("rds_hour", cls, rds_price(cls, region), "vantage-rds")
            elif cls.startswith(("db.m6i.", "db.r6i.")) and cls.replace("6i.", "5.") in trusted_rds:
                put("rds_hour", cls, rds_price(cls.replace("6i.", "5."), region), "rds-6i-as-5")
        for node in trusted_cache:
            put("elasticache_hour", node, cache_price(node, region), "vantage-cache")
        for name, spec in {**EVERY_REGION, **QUOTED.get(region, {})}.items():
            if isinstance(spec, dict):
                for key, (price, source) in spec.items():
                    put(name, key, price, source)
            else:
                put(name, None, *spec)
        out_regions[region] = table
        count = sum(1 if "price" in v else len(v) for v in table.values())
        print(f"{region}: {count} figures", file=sys.stderr)
    snapshot["regions"] = out_regions
    snapshot["sources"] = {**snapshot["sources"], **SOURCES}
    Path(args.out).write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
