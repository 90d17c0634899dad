"""An architecture diagram drawn from a build's templates with the ``diagrams`` package (AWS's
service icons, laid out by Graphviz): the VPC, each Availability Zone with its public and
private subnets, the load balancers, Auto Scaling groups with their sizes, servers, RDS,
ElastiCache, S3, and the security groups' allowed flows as edges (port on the edge).

Everything comes from resource types and properties, followed across stacks (``Stack.target``),
so a new tier or size is drawn without code changes. Each node names its tier in brackets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitlab_cfn.errors import ConfigError
from gitlab_cfn.report.stack import Stack

FORMATS = ("png", "svg")
SG_KEYS = {"SecurityGroupIds", "SecurityGroups", "VpcSecurityGroupIds", "VPCSecurityGroups", "GroupSet", "Groups"}
ANYWHERE = {"0.0.0.0/0", "::/0"}

Key = tuple[int, str]   # (id of the stack, logical id)


@dataclass
class Node:
    key: Key
    kind: str             # icon name
    label: str
    tier: str
    place: tuple | None = None   # ("subnet", subnet key) or ("vpc",) or None (outside the VPC)


@dataclass
class Model:
    nodes: dict[Key, Node] = field(default_factory=dict)
    subnets: dict[Key, dict] = field(default_factory=dict)   # key -> {az, public, tier, label}
    edges: dict[tuple, set] = field(default_factory=lambda: defaultdict(set))  # (src, dst) -> ports
    sg_rules: int = 0
    sg_tier: str | None = None
    vpc_label: str = "VPC"
    conditional: set = field(default_factory=set)   # tiers whose stack has a condition

    def tiers(self) -> set[str]:
        found = {n.tier for n in self.nodes.values()}
        if self.sg_tier and self.edges:
            found.add(self.sg_tier)
        return found


def _k(stack: Stack, rid: str) -> Key:
    return (id(stack), rid)


def _find_keys(value: Any, keys: set[str]) -> list:
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in keys:
                found.append(v)
            else:
                found += _find_keys(v, keys)
    elif isinstance(value, list):
        for v in value:
            found += _find_keys(v, keys)
    return found


def _props(stack: Stack, rid: str) -> dict:
    return stack.resources[rid].get("Properties") or {}


def _launch_data(stack: Stack, props: dict) -> list[tuple[Stack, dict]]:
    spec = props.get("LaunchTemplate") or ((props.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}) \
        .get("LaunchTemplateSpecification")
    if not spec:
        return []
    return [(owner, (_props(owner, lt).get("LaunchTemplateData") or {}))
            for owner, lt in stack.target(spec.get("LaunchTemplateId") or spec.get("LaunchTemplateName"))]


def build_model(root: Stack) -> Model:
    m = Model()
    stacks = list(root.walk(conditional=True))
    # Subnets: AZ from Fn::Select's index, public when their route table routes to an internet gateway.
    m.conditional = {st.name for st in stacks if not st.created}
    public_tables = set()
    for st in stacks:
        for rid, res in st.resources.items():
            if res.get("Type") == "AWS::EC2::Route" and _props(st, rid).get("GatewayId"):
                public_tables |= {_k(o, t) for o, t in st.target(_props(st, rid).get("RouteTableId"))}
    table_of = {}
    for st in stacks:
        for rid, res in st.resources.items():
            if res.get("Type") == "AWS::EC2::SubnetRouteTableAssociation":
                p = _props(st, rid)
                for o, s in st.target(p.get("SubnetId")):
                    table_of[_k(o, s)] = {_k(x, t) for x, t in st.target(p.get("RouteTableId"))}
    for st in stacks:
        for rid, res in st.resources.items():
            kind = res.get("Type")
            if kind == "AWS::EC2::VPC":
                cidr = st.value(_props(st, rid).get("CidrBlock"))
                m.vpc_label = f"VPC {cidr}" if cidr else "VPC"
            if kind != "AWS::EC2::Subnet" or not st.exists(rid):
                continue
            az = _props(st, rid).get("AvailabilityZone")
            index = az.get("Fn::Select", [None])[0] if isinstance(az, dict) else None
            key = _k(st, rid)
            cidr = st.value(_props(st, rid).get("CidrBlock"))
            m.subnets[key] = {"az": f"AZ {int(index) + 1}" if isinstance(index, int) else f"AZ {st.value(az)}",
                              "public": bool(table_of.get(key, set()) & public_tables), "tier": st.name,
                              "label": f"{'public' if table_of.get(key, set()) & public_tables else 'private'} "
                                       f"subnet {cidr or ''}".strip()}

    def subnets_of(st: Stack, value: Any) -> list[Key]:
        return [k for k in (_k(o, r) for o, r in st.target(value)) if k in m.subnets]

    def place(keys: list[Key]) -> tuple:
        return ("subnet", keys[0]) if len(keys) == 1 else ("vpc",)

    def azs(keys: list[Key]) -> str:
        names = sorted({m.subnets[k]["az"] for k in keys})
        return f"across {len(names)} AZs" if len(names) > 1 else ""

    buckets: dict[str, int] = defaultdict(int)
    # Log groups and alarms: one node per tier with their count, as the buckets.
    counted: dict[tuple[str, str], int] = defaultdict(int)
    for st in stacks:
        for rid, res in st.resources.items():
            if not st.exists(rid):
                continue
            kind, p, key = res.get("Type"), _props(st, rid), _k(st, rid)
            if kind == "AWS::EC2::NatGateway":
                m.nodes[key] = Node(key, "nat", f"NAT gateway\n{rid}", st.name, place(subnets_of(st, p.get("SubnetId"))))
            elif kind == "AWS::EC2::InternetGateway":
                m.nodes[key] = Node(key, "igw", "internet gateway", st.name, ("vpc",))
            elif kind == "AWS::EC2::Instance":
                nets = subnets_of(st, p.get("SubnetId")) or subnets_of(st, _find_keys(p, {"SubnetId"}))
                itype = st.value(p.get("InstanceType"))
                if itype is None:
                    for owner, data in _launch_data(st, p):
                        itype = owner.value(data.get("InstanceType"))
                m.nodes[key] = Node(key, "ec2", f"{rid}\n{itype or ''}".strip(), st.name, place(nets) if nets else ("vpc",))
            elif kind == "AWS::AutoScaling::AutoScalingGroup":
                nets = subnets_of(st, p.get("VPCZoneIdentifier"))
                low, high = st.value(p.get("MinSize")), st.value(p.get("MaxSize"))
                itype = None
                for owner, data in _launch_data(st, p):
                    itype = owner.value(data.get("InstanceType"))
                label = f"{rid}\n{itype or ''} x {low}-{high} {azs(nets)}".strip()
                m.nodes[key] = Node(key, "asg", label, st.name, place(nets) if nets else ("vpc",))
            elif kind in ("AWS::ElasticLoadBalancing::LoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer"):
                nets = subnets_of(st, p.get("Subnets"))
                lb = "clb" if kind.endswith("ing::LoadBalancer") else \
                    ("nlb" if st.value(p.get("Type")) == "network" else "alb")
                scheme = st.value(p.get("Scheme")) or "internet-facing"
                m.nodes[key] = Node(key, lb, f"{rid}\n{lb.upper()} {scheme} {azs(nets)}".strip(), st.name, ("vpc",))
            elif kind == "AWS::RDS::DBInstance":
                multi = str(st.value(p.get("MultiAZ"))).lower() == "true"
                m.nodes[key] = Node(key, "rds", f"{rid}\nRDS {st.value(p.get('Engine')) or ''}\n"
                                              f"{st.value(p.get('DBInstanceClass')) or ''}{' Multi-AZ' if multi else ''}",
                                    st.name, ("vpc",))
            elif kind in ("AWS::ElastiCache::ReplicationGroup", "AWS::ElastiCache::CacheCluster"):
                nodes = st.value(p.get("NumCacheClusters") or p.get("NumCacheNodes"))
                m.nodes[key] = Node(key, "cache", f"{rid}\nElastiCache\n{st.value(p.get('CacheNodeType')) or ''}"
                                                  f"{f' x {nodes}' if nodes else ''}", st.name, ("vpc",))
            elif kind == "AWS::S3::Bucket":
                buckets[st.name] += 1
            elif kind == "AWS::Logs::LogGroup":
                counted[("logs", st.name)] += 1
            elif kind == "AWS::CloudWatch::Alarm":
                counted[("alarms", st.name)] += 1
            elif kind == "AWS::SNS::Topic":
                m.nodes[key] = Node(key, "sns", f"SNS topic\n{rid}", st.name, None)
            elif kind == "AWS::Backup::BackupVault":
                m.nodes[key] = Node(key, "backup", f"AWS Backup\n{rid}", st.name, None)
            elif kind == "AWS::Route53::RecordSet":
                m.nodes[key] = Node(key, "dns", f"Route 53 record\n{rid}", st.name, None)
    for tier, count in buckets.items():
        key = (0, f"s3:{tier}")
        m.nodes[key] = Node(key, "s3", f"S3\n{count} bucket{'s' if count > 1 else ''}", tier, None)
    for (what, tier), count in counted.items():
        key = (0, f"{what}:{tier}")
        label = (f"CloudWatch Logs\n{count} log group{'s' if count > 1 else ''}" if what == "logs"
                 else f"CloudWatch\n{count} alarm{'s' if count > 1 else ''}")
        m.nodes[key] = Node(key, what, label, tier, None)

    _flows(m, stacks)
    return m


def _flows(m: Model, stacks: list[Stack]) -> None:
    """Security group -> nodes that carry it; then each ingress rule as an edge."""
    carried: dict[Key, set[Key]] = defaultdict(set)
    for st in stacks:
        for rid in st.resources:
            key = _k(st, rid)
            if key not in m.nodes:
                continue
            p = _props(st, rid)
            values = _find_keys(p, SG_KEYS)
            for owner, data in _launch_data(st, p):
                values += [(owner, v) for v in _find_keys(data, SG_KEYS)]
            for value in values:
                owner, expr = value if isinstance(value, tuple) else (st, value)
                for o, sg in owner.target(expr):
                    carried[_k(o, sg)].add(key)
    outside = {}
    for st in stacks:
        for rid, res in st.resources.items():
            kind = res.get("Type")
            rules = []
            if kind == "AWS::EC2::SecurityGroupIngress" and st.exists(rid):
                rules.append((st, _props(st, rid), st.target(_props(st, rid).get("GroupId"))))
            elif kind == "AWS::EC2::SecurityGroup" and st.exists(rid):
                for rule in _props(st, rid).get("SecurityGroupIngress") or []:
                    rules.append((st, rule, [(st, rid)]))
            for owner, rule, groups in rules:
                m.sg_rules += 1
                m.sg_tier = m.sg_tier or owner.name
                port = _port(owner, rule)
                sources: set[Key] = set()
                for o, sg in owner.target(rule.get("SourceSecurityGroupId")):
                    sources |= carried.get(_k(o, sg), set())
                cidr = owner.value(rule.get("CidrIp") or rule.get("CidrIpv6"))
                if rule.get("CidrIp") or rule.get("CidrIpv6"):
                    name = "internet" if cidr in ANYWHERE else "a trusted range"
                    okey = (0, f"outside:{name}")
                    outside[okey] = name
                    sources.add(okey)
                for o, g in groups:
                    for dst in carried.get(_k(o, g), set()):
                        for src in sources:
                            if src != dst:
                                m.edges[(src, dst)].add(port)
    for key, name in outside.items():
        m.nodes[key] = Node(key, "users" if name == "internet" else "office",
                            "internet" if name == "internet" else "trusted range\n(parameter)", "", None)


def _port(stack: Stack, rule: dict) -> str:
    low, high = stack.value(rule.get("FromPort")), stack.value(rule.get("ToPort"))
    proto = stack.value(rule.get("IpProtocol")) or "tcp"
    if low in (None, -1):
        return "all" if str(proto) == "-1" else str(proto)
    return f"{low}" if low == high else f"{low}-{high}"


def dot_source(model: Model, title: str = "gitlab-cfn") -> str:
    """The diagram as Graphviz DOT text (what ``render`` draws), without running Graphviz."""
    diagram = _diagram(model, title, None, "png", draw=False)
    return diagram.dot.source


def _icons():
    from diagrams.aws import compute, database, integration, management, network, storage
    from diagrams.onprem.client import Users
    from diagrams.onprem.network import Internet

    return {"nat": network.NATGateway, "igw": network.InternetGateway, "ec2": compute.EC2,
            "asg": compute.EC2AutoScaling, "clb": network.CLB, "alb": network.ALB, "nlb": network.NLB,
            "rds": database.RDSPostgresqlInstance, "cache": database.ElastiCache, "s3": storage.S3,
            "dns": network.Route53, "users": Users, "office": Internet,
            "logs": management.CloudwatchLogs, "alarms": management.Cloudwatch,
            "sns": integration.SimpleNotificationServiceSns, "backup": storage.Backup}


def _diagram(model: Model, title: str, filename: str | None, fmt: str, draw: bool = True, splines: str = "spline"):
    """The ``diagrams`` Diagram of a model; drawn into ``filename.fmt`` by Graphviz when ``draw``."""
    from diagrams import Cluster, Diagram, Edge, setdiagram

    icons = _icons()
    made = {}
    graph = {"fontsize": "20", "pad": "0.4", "splines": splines, "nodesep": "0.5", "ranksep": "1.0"}
    diagram = Diagram(title, filename=filename or "diagram", outformat=fmt, show=False, direction="LR",
                      graph_attr=graph)
    diagram.__enter__()
    try:
        _draw(model, icons, made, Cluster, Edge)
    finally:
        if draw:
            diagram.__exit__(None, None, None)   # renders, then removes the DOT file
        else:
            setdiagram(None)
    return diagram


def _draw(model: Model, icons: dict, made: dict, Cluster, Edge) -> None:
    def node(n: Node):
        label = f"{n.label}\n[{n.tier}]" if n.tier else n.label
        if n.tier in model.conditional:
            label += "\n(only if its condition holds)"
        made[n.key] = icons[n.kind](label)

    for n in model.nodes.values():
        if n.place is None:
            node(n)
    with Cluster(model.vpc_label):
        for n in model.nodes.values():
            if n.place == ("vpc",):
                node(n)
        by_az: dict[str, list[Key]] = defaultdict(list)
        for key, sub in sorted(model.subnets.items(), key=lambda kv: (kv[1]["az"], not kv[1]["public"])):
            by_az[sub["az"]].append(key)
        for az, keys in sorted(by_az.items()):
            with Cluster(az):
                for key in keys:
                    sub = model.subnets[key]
                    with Cluster(f"{sub['label']} [{sub['tier']}]"):
                        inside = [n for n in model.nodes.values() if n.place == ("subnet", key)]
                        for n in inside:
                            node(n)
                        if not inside:
                            from diagrams.aws.network import PrivateSubnet, PublicSubnet

                            (PublicSubnet if sub["public"] else PrivateSubnet)(key[1])
    for (src, dst), ports in sorted(model.edges.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        if src in made and dst in made:
            made[src] >> Edge(label=",".join(sorted(ports, key=lambda p: (len(p), p))),
                              tooltip=f"security group rule [{model.sg_tier}]") >> made[dst]


def render(root: Stack, out: str | Path, fmt: str = "png", title: str = "gitlab-cfn") -> tuple[Path, str]:
    """Draw the diagram into ``out``; returns the path and the DOT text. Needs Graphviz's ``dot``."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if shutil.which("dot") is None:
        raise ConfigError("diagram: Graphviz's dot is not installed (Debian: apt-get install graphviz; "
                          "make build installs it)")
    try:
        import diagrams  # noqa: F401
    except ImportError:
        raise ConfigError("diagram: the diagrams package is not installed (pip install -e .)") from None
    model = build_model(root)
    title = (f"{title}: edges are the security groups' allowed flows, port on the edge "
             f"({model.sg_rules} ingress rules [{model.sg_tier}])")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gitlab-cfn-diagram-") as work:
        try:
            diagram = _diagram(model, title, str(Path(work) / "diagram"), fmt)
        except subprocess.CalledProcessError:
            # Graphviz's spline router gives up on some layouts ("triangulation failed",
            # "Pshortestpath failed", as with a monitoring server's edges to every group):
            # curved edges (no spline routing) draw the same graph.
            diagram = _diagram(model, title, str(Path(work) / "diagram"), fmt, splines="curved")
        produced = Path(work) / f"diagram.{fmt}"
        if not produced.exists():
            raise ConfigError(f"diagram: Graphviz wrote no {fmt} file")
        staging = out.with_name(f".{out.name}.tmp")
        shutil.copyfile(produced, staging)
        os.replace(staging, out)
    return out, diagram.dot.source
