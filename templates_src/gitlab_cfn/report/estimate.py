"""Monthly on-demand cost of a build, per resource, per tier and in total, read from the built
templates: resource types, their properties and the parameter defaults (what a stack launched
with the defaults runs). Auto Scaling groups are priced at their minimum (the servers a new
stack starts with; no desired capacity is set) and at their maximum.

Usage the templates cannot state (GB through NAT gateways and load balancers, GB in S3) comes
from ``data/estimate-assumptions.yaml`` and is printed with the result. A resource type that
neither has a price rule here nor is known to cost nothing by itself is listed as not priced,
never counted as free in silence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitlab_cfn.errors import ConfigError
from gitlab_cfn.report.prices import Price, Prices
from gitlab_cfn.report.stack import Stack

ASSUMPTIONS = Path(__file__).resolve().parents[1] / "data" / "estimate-assumptions.yaml"

# Types that cost nothing by themselves (what they hold or carry is priced elsewhere).
FREE = {
    "AWS::CloudFormation::Stack", "AWS::CloudFormation::WaitConditionHandle",
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::RouteTable", "AWS::EC2::Route", "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress",
    "AWS::EC2::LaunchTemplate", "AWS::EC2::VolumeAttachment", "AWS::EC2::NetworkInterface",
    "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::InstanceProfile",
    "AWS::SSM::Parameter", "AWS::S3::BucketPolicy", "AWS::SecretsManager::SecretTargetAttachment",
    "AWS::SecretsManager::ResourcePolicy", "AWS::RDS::DBSubnetGroup", "AWS::RDS::DBParameterGroup",
    "AWS::ElastiCache::SubnetGroup", "AWS::ElastiCache::ParameterGroup",
    "AWS::AutoScaling::ScalingPolicy", "AWS::AutoScaling::LifecycleHook", "AWS::Route53::RecordSet",
    "AWS::ElasticLoadBalancingV2::Listener", "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::ListenerRule", "AWS::KMS::Alias",
    "AWS::ServiceCatalog::Portfolio", "AWS::ServiceCatalog::CloudFormationProduct",
    "AWS::ServiceCatalog::PortfolioProductAssociation", "AWS::ServiceCatalog::PortfolioPrincipalAssociation",
    "AWS::ServiceCatalog::LaunchRoleConstraint",
    # AWS Backup's plan and selection are configuration (the recovery points they make are
    # charged as backup storage of the vault); an SNS topic has no monthly fee (deliveries are
    # charged per message, and the alarms' e-mails are few).
    "AWS::Backup::BackupPlan", "AWS::Backup::BackupSelection", "AWS::SNS::Topic",
}


@dataclass
class Line:
    tier: str
    resource: str
    type: str
    item: str
    quantity: float          # units per instance per month (hours, GB, IOPS, ...)
    unit: str
    unit_price: float
    count: float = 1         # instances at the minimum
    count_max: float = 1     # instances at the maximum
    source: str = ""
    assumption: str = ""

    @property
    def monthly(self) -> float:
        return self.unit_price * self.quantity * self.count

    @property
    def monthly_max(self) -> float:
        return self.unit_price * self.quantity * self.count_max

    def as_dict(self) -> dict:
        data = asdict(self)
        data["monthly"] = round(self.monthly, 4)
        data["monthly_max"] = round(self.monthly_max, 4)
        return data


@dataclass
class Estimate:
    region: str
    prices: str
    hours: float
    lines: list[Line] = field(default_factory=list)
    not_priced: list[str] = field(default_factory=list)
    assumptions: dict = field(default_factory=dict)

    def tiers(self) -> dict[str, tuple[float, float]]:
        out: dict[str, list[float]] = {}
        for line in self.lines:
            total = out.setdefault(line.tier, [0.0, 0.0])
            total[0] += line.monthly
            total[1] += line.monthly_max
        return {k: (v[0], v[1]) for k, v in out.items()}

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    @property
    def total_max(self) -> float:
        return sum(line.monthly_max for line in self.lines)

    def as_dict(self) -> dict:
        return {
            "region": self.region, "prices": self.prices, "hours_per_month": self.hours,
            "total_monthly": round(self.total, 2), "total_monthly_at_max": round(self.total_max, 2),
            "tiers": {k: {"monthly": round(a, 2), "monthly_at_max": round(b, 2)}
                      for k, (a, b) in self.tiers().items()},
            "lines": [line.as_dict() for line in self.lines],
            "not_priced": self.not_priced, "assumptions": self.assumptions,
        }


def load_assumptions(overrides: dict[str, float] | None = None) -> dict[str, float]:
    data = yaml.safe_load(ASSUMPTIONS.read_text())
    for key, value in (overrides or {}).items():
        if key not in data:
            raise ConfigError(f"--assume: unknown key {key!r} (allowed: {', '.join(sorted(data))})")
        data[key] = value
    return {k: float(v) for k, v in data.items()}


class Pricer:
    """Prices every resource of a stack tree."""

    def __init__(self, prices: Prices, assumptions: dict[str, float]):
        self.p = prices
        self.a = assumptions
        self.hours = prices.hours
        self.estimate = Estimate(region=prices.region, prices=prices.label, hours=prices.hours,
                                 assumptions=dict(assumptions))
        self._s3_done = False

    def add(self, stack: Stack, rid: str, item: str, qty: float, unit: str, price, *,
            count: float = 1, count_max: float | None = None, assumption: str = "") -> None:
        res = stack.resources[rid]
        self.estimate.lines.append(Line(
            tier=stack.name, resource=rid, type=res["Type"], item=item, quantity=qty, unit=unit,
            unit_price=price.usd, count=count, count_max=count if count_max is None else count_max,
            source=price.source, assumption=assumption))

    def run(self, root: Stack) -> Estimate:
        for stack in root.walk():
            for rid, res in stack.resources.items():
                if not stack.exists(rid):
                    continue
                kind = res.get("Type", "")
                handler = HANDLERS.get(kind)
                if handler is not None:
                    handler(self, stack, rid, res.get("Properties") or {}, res.get("Metadata") or {})
                elif kind not in FREE and not kind.startswith("Custom::"):
                    self.estimate.not_priced.append(f"{stack.name}/{rid} ({kind})")
        return self.estimate

    # -- helpers -------------------------------------------------------------------------------

    def literal(self, stack: Stack, expr: Any, what: str, rid: str) -> Any:
        value = stack.value(expr)
        if value is None:
            raise ConfigError(f"{stack.name}/{rid}: {what} cannot be read from the templates "
                              f"(no literal or parameter default)")
        return value

    def launch_data(self, stack: Stack, rid: str, spec: dict) -> tuple[Stack, dict]:
        """The launch template data a LaunchTemplate specification names."""
        ref = spec.get("LaunchTemplateId") or spec.get("LaunchTemplateName")
        for owner, lt in stack.target(ref):
            data = (owner.resources[lt].get("Properties") or {}).get("LaunchTemplateData") or {}
            return owner, data
        raise ConfigError(f"{stack.name}/{rid}: its launch template is not in the build")

    def server(self, stack: Stack, rid: str, itype_stack: Stack, itype_expr: Any, devices: list,
               meta: dict, label: str, count: float = 1, count_max: float | None = None) -> None:
        written = self.literal(itype_stack, itype_expr, "InstanceType", rid)
        itype = meta.get("PricedAs") or written
        note = f" (priced as {itype})" if meta.get("PricedAs") else ""
        self.add(stack, rid, f"{label} {written}{note}", self.hours, "h",
                 self.p.get("ec2_hour", itype, field=f"{stack.name}/{rid} InstanceType"),
                 count=count, count_max=count_max)
        for device in devices or []:
            ebs = device.get("Ebs") if isinstance(device, dict) else None
            if not ebs:
                continue
            self.volume(stack, rid, itype_stack, ebs, f"EBS {device.get('DeviceName', '')}".strip(),
                        count=count, count_max=count_max, size_key="VolumeSize")

    def volume(self, stack: Stack, rid: str, owner: Stack, props: dict, label: str, *,
               count: float = 1, count_max: float | None = None, size_key: str = "Size") -> None:
        vtype = str(owner.value(props.get("VolumeType", "gp2")) or "gp2")
        size = owner.number(props.get(size_key))
        if size is None:
            self.estimate.not_priced.append(f"{stack.name}/{rid} ({label}: size from the image, not stated)")
            return
        self.add(stack, rid, f"{label} {vtype} {size:g} GiB", size, "GiB-mo",
                 self.p.get("ebs_gb_month", vtype, field=f"{stack.name}/{rid} VolumeType"),
                 count=count, count_max=count_max)
        iops = owner.number(props.get("Iops"))
        if vtype in ("io1", "io2") and iops:
            self.add(stack, rid, f"{label} {vtype} provisioned IOPS", iops, "IOPS-mo",
                     self.p.get("ebs_iops_month", vtype), count=count, count_max=count_max)
        if vtype == "gp3":
            # gp3 includes 3,000 IOPS and 125 MB/s; more is billed (aws.amazon.com/ebs/pricing).
            if iops and iops > 3000:
                self.add(stack, rid, f"{label} gp3 IOPS above 3000", iops - 3000, "IOPS-mo",
                         self.p.get("ebs_iops_month", "gp3"), count=count, count_max=count_max)
            mbps = owner.number(props.get("Throughput"))
            if mbps and mbps > 125:
                self.add(stack, rid, f"{label} gp3 throughput above 125 MB/s", mbps - 125, "MBps-mo",
                         self.p.get("ebs_mbps_month", "gp3"), count=count, count_max=count_max)


# -- one function per priced resource type -------------------------------------------------------

def _instance(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    owner, data = stack, {}
    if props.get("LaunchTemplate"):
        owner, data = pr.launch_data(stack, rid, props["LaunchTemplate"])
    if props.get("InstanceType") is not None:
        pr.server(stack, rid, stack, props["InstanceType"], [], meta, "EC2")
    else:
        pr.server(stack, rid, owner, data.get("InstanceType"), [], meta, "EC2")
    devices, dev_owner = props.get("BlockDeviceMappings"), stack
    if not devices:
        devices, dev_owner = data.get("BlockDeviceMappings") or [], owner
    for device in devices:
        if isinstance(device, dict) and device.get("Ebs"):
            pr.volume(stack, rid, dev_owner, device["Ebs"], f"EBS {device.get('DeviceName', '')}".strip(),
                      size_key="VolumeSize")


def _asg(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    low = stack.number(props.get("MinSize"))
    high = stack.number(props.get("MaxSize"))
    desired = stack.number(props.get("DesiredCapacity"))
    if low is None or high is None:
        raise ConfigError(f"{stack.name}/{rid}: MinSize/MaxSize cannot be read from the templates")
    start = desired if desired is not None else low
    spec = props.get("LaunchTemplate")
    if spec is None and props.get("MixedInstancesPolicy"):
        spec = props["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    if spec is None:
        pr.estimate.not_priced.append(f"{stack.name}/{rid} (no launch template)")
        return
    owner, data = pr.launch_data(stack, rid, spec)
    label = f"EC2 x{start:g} (min {low:g}, max {high:g})"
    pr.server(stack, rid, owner, data.get("InstanceType"), [], meta, label, count=start, count_max=high)
    for device in data.get("BlockDeviceMappings") or []:
        if isinstance(device, dict) and device.get("Ebs"):
            pr.volume(stack, rid, owner, device["Ebs"], f"EBS {device.get('DeviceName', '')}".strip(),
                      count=start, count_max=high, size_key="VolumeSize")


def _volume(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    pr.volume(stack, rid, stack, props, "EBS volume")


def _rds(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    engine = str(stack.value(props.get("Engine")) or "")
    if engine != "postgres":
        raise ConfigError(f"{stack.name}/{rid}: Engine {engine!r}: the price snapshot holds PostgreSQL "
                          "(allowed: postgres)")
    written = pr.literal(stack, props.get("DBInstanceClass"), "DBInstanceClass", rid)
    klass = meta.get("PricedAs") or written
    multi = str(stack.value(props.get("MultiAZ", False))).lower() == "true"
    factor = pr.p.get("rds_multi_az_factor").usd if multi else 1.0
    deploy = "Multi-AZ" if multi else "Single-AZ"
    hour = pr.p.get("rds_hour", klass, field=f"{stack.name}/{rid} DBInstanceClass")
    note = f" (priced as {klass})" if meta.get("PricedAs") else ""
    pr.add(stack, rid, f"RDS PostgreSQL {written} {deploy}{note}", pr.hours,
           "h", _scaled(hour, factor))
    iops = stack.number(props.get("Iops"))
    storage = str(stack.value(props.get("StorageType")) or ("io1" if iops else "gp2"))
    size = pr.literal(stack, props.get("AllocatedStorage"), "AllocatedStorage", rid)
    pr.add(stack, rid, f"RDS storage {storage} {float(size):g} GiB {deploy}", float(size), "GiB-mo",
           _scaled(pr.p.get("rds_gb_month", storage, field=f"{stack.name}/{rid} StorageType"), factor))
    if storage in ("io1", "io2") and iops:
        pr.add(stack, rid, f"RDS provisioned IOPS {deploy}", iops, "IOPS-mo",
               _scaled(pr.p.get("rds_iops_month", storage), factor))
    if (stack.number(props.get("MonitoringInterval"), 0) or 0) > 0:
        gb = pr.a["cloudwatch_logs_gb"]
        pr.add(stack, rid, "RDS Enhanced Monitoring logs (CloudWatch Logs)", gb, "GB", pr.p.get("logs_gb"),
               assumption=f"cloudwatch_logs_gb={gb:g}")


def _scaled(price: Price, factor: float) -> Price:
    return price if factor == 1 else Price(price.usd * factor, price.source)


def _cache(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    node = pr.literal(stack, props.get("CacheNodeType"), "CacheNodeType", rid)
    if props.get("NumCacheClusters") is not None:
        nodes = stack.number(props["NumCacheClusters"])
    elif props.get("NumCacheNodes") is not None:
        nodes = stack.number(props["NumCacheNodes"])
    else:
        groups = stack.number(props.get("NumNodeGroups"), 1)
        replicas = stack.number(props.get("ReplicasPerNodeGroup"), 0)
        nodes = groups * (replicas + 1)
    if nodes is None:
        raise ConfigError(f"{stack.name}/{rid}: the number of cache nodes cannot be read from the templates")
    pr.add(stack, rid, f"ElastiCache {node} x{nodes:g}", pr.hours, "h",
           pr.p.get("elasticache_hour", node, field=f"{stack.name}/{rid} CacheNodeType"), count=nodes)


def _nat(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    if str(stack.value(props.get("ConnectivityType", "public"))) == "private":
        pr.add(stack, rid, "NAT gateway (private) hours", pr.hours, "h", pr.p.get("nat_hour"))
    else:
        pr.add(stack, rid, "NAT gateway hours", pr.hours, "h", pr.p.get("nat_hour"))
    gb = pr.a["nat_gb_per_gateway"]
    pr.add(stack, rid, "NAT gateway data processed", gb, "GB", pr.p.get("nat_gb"),
           assumption=f"nat_gb_per_gateway={gb:g}")


def _eip(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    pr.add(stack, rid, "public IPv4 address", pr.hours, "h", pr.p.get("public_ipv4_hour"))


def _public_ips(pr: Pricer, stack: Stack, rid: str, props: dict, scheme_key: str) -> None:
    if str(stack.value(props.get(scheme_key, "internet-facing"))) == "internal":
        return
    subnets = stack.target(props.get("Subnets")) or stack.value(props.get("Subnets")) or []
    count = len(subnets) if isinstance(subnets, list) and subnets else 1
    pr.add(stack, rid, f"public IPv4 addresses (one per subnet, {count})", pr.hours, "h",
           pr.p.get("public_ipv4_hour"), count=count,
           assumption="an internet-facing load balancer holds one public IPv4 address per subnet")


def _clb(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    pr.add(stack, rid, "Classic Load Balancer hours", pr.hours, "h", pr.p.get("clb_hour"))
    gb = pr.a["lb_gb"]
    pr.add(stack, rid, "Classic Load Balancer data processed", gb, "GB", pr.p.get("clb_gb"),
           assumption=f"lb_gb={gb:g}")
    _public_ips(pr, stack, rid, props, "Scheme")


def _elbv2(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    kind = str(stack.value(props.get("Type", "application")) or "application")
    key = {"application": "alb", "network": "nlb"}.get(kind)
    if key is None:
        pr.estimate.not_priced.append(f"{stack.name}/{rid} (load balancer type {kind})")
        return
    name = "Application" if key == "alb" else "Network"
    pr.add(stack, rid, f"{name} Load Balancer hours", pr.hours, "h", pr.p.get(f"{key}_hour"))
    lcu = pr.a["lb_lcu"]
    pr.add(stack, rid, f"{name} Load Balancer capacity units", pr.hours * lcu, "LCU-h",
           pr.p.get(f"{key}_lcu_hour"), assumption=f"lb_lcu={lcu:g}")
    _public_ips(pr, stack, rid, props, "Scheme")


def _logs(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    gb = pr.a["cloudwatch_logs_gb"]
    pr.add(stack, rid, "CloudWatch Logs data ingested", gb, "GB", pr.p.get("logs_gb"),
           assumption=f"cloudwatch_logs_gb={gb:g}")


def _kms(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    pr.add(stack, rid, "KMS customer managed key", 1, "key-mo", pr.p.get("kms_key_month"))


def _secret(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    pr.add(stack, rid, "Secrets Manager secret", 1, "secret-mo", pr.p.get("secret_month"))


def _alarm(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    metrics = len(props.get("Metrics") or []) or 1
    pr.add(stack, rid, "CloudWatch alarm (standard resolution)", metrics, "alarm-metric-mo",
           pr.p.get("alarm_month"))


def _dashboard(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    pr.add(stack, rid, "CloudWatch dashboard", 1, "dashboard-mo", pr.p.get("dashboard_month"))


def _backup_vault(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    # The recovery points the plan keeps in the vault: EBS (Gitaly volumes) and RDS snapshots
    # (the S3 buckets' recovery points are not in the price snapshot: see data/prices.json).
    for kind, what in (("ebs", "EBS snapshots (Gitaly volumes)"), ("rds", "RDS snapshots")):
        gb = pr.a[f"backup_{kind}_gb"]
        pr.add(stack, rid, f"AWS Backup storage, {what}", gb, "GB-mo", pr.p.get("backup_gb_month", kind),
               assumption=f"backup_{kind}_gb={gb:g}")


def _bucket(pr: Pricer, stack: Stack, rid: str, props: dict, meta: dict) -> None:
    if pr._s3_done:
        return
    pr._s3_done = True
    gb = pr.a["s3_gb"]
    pr.add(stack, rid, "S3 Standard storage, all buckets of the stack", gb, "GB-mo",
           pr.p.get("s3_gb_month"), assumption=f"s3_gb={gb:g}")


HANDLERS = {
    "AWS::EC2::Instance": _instance,
    "AWS::AutoScaling::AutoScalingGroup": _asg,
    "AWS::EC2::Volume": _volume,
    "AWS::RDS::DBInstance": _rds,
    "AWS::ElastiCache::ReplicationGroup": _cache,
    "AWS::ElastiCache::CacheCluster": _cache,
    "AWS::EC2::NatGateway": _nat,
    "AWS::EC2::EIP": _eip,
    "AWS::ElasticLoadBalancing::LoadBalancer": _clb,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": _elbv2,
    "AWS::KMS::Key": _kms,
    "AWS::Logs::LogGroup": _logs,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudWatch::Dashboard": _dashboard,
    "AWS::Backup::BackupVault": _backup_vault,
    "AWS::S3::Bucket": _bucket,
}


def estimate(root: Stack, prices: Prices, assumptions: dict[str, float] | None = None) -> Estimate:
    return Pricer(prices, assumptions if assumptions is not None else load_assumptions()).run(root)


# -- output --------------------------------------------------------------------------------------

def money(value: float) -> str:
    return f"${value:,.2f}"


def render(est: Estimate, title: str) -> str:
    out = [f"{title}: {est.region}, on-demand, {est.prices}, {est.hours:g} h/month"]
    widths = (16, 30, 52)
    out.append(f"{'tier':<{widths[0]}} {'resource':<{widths[1]}} {'item':<{widths[2]}} "
               f"{'quantity':>12} {'unit price':>10} {'monthly':>11}")
    tiers = est.tiers()
    current = None
    for line in est.lines:
        if line.tier != current:
            if current is not None:
                out.append(_subtotal(current, tiers[current], widths))
            current = line.tier
        qty = f"{line.quantity * line.count:,.6g} {line.unit}"
        out.append(f"{line.tier:<{widths[0]}} {line.resource:<{widths[1]}} {line.item:<{widths[2]}} "
                   f"{qty:>12} {line.unit_price:>10.4g} {money(line.monthly):>11}")
    if current is not None:
        out.append(_subtotal(current, tiers[current], widths))
    out.append(f"TOTAL per month: {money(est.total)} (Auto Scaling groups at minimum), "
               f"{money(est.total_max)} at maximum")
    if est.assumptions:
        out.append("assumed usage: " + ", ".join(f"{k}={v:g}" for k, v in sorted(est.assumptions.items())))
    if est.not_priced:
        out.append("not priced: " + "; ".join(est.not_priced))
    return "\n".join(out)


def _subtotal(tier: str, totals: tuple[float, float], widths) -> str:
    low, high = totals
    extra = f" (max {money(high)})" if abs(high - low) > 0.005 else ""
    return f"{'':<{widths[0]}} {tier + ' total':<{widths[1]}} {'':<{widths[2]}} {'':>12} {'':>10} {money(low):>11}{extra}"
