"""Whether every server can reach what its boot scripts and GitLab connect to.

Each server of the build (``access.servers``: instances and launch templates with
gitlab-cfn user data) gets its flows from its user data preamble and its scripts:

- ``<X>_HOST`` with ``<X>_PORT``: TCP to the resource the host names (RDS, ElastiCache, ...);
- ``*_ADDRESS`` (``tcp://host:port``) and ``*_NODES`` (``name=host,...`` on ``NODE_PORT``);
- ``SCRAPE_JOBS`` (the monitoring server, ``compile/scrape.py``): TCP to each exporter port of
  the servers whose logical id a job names (an Auto Scaling group's launch template, or an
  instance), as Prometheus's EC2 service discovery finds them;
- ``GITLAB_DOMAIN``: HTTPS to the internet-facing load balancer, through the NAT gateway
  (Gitaly's internal API calls go to ``https://<domain>``);
- every AWS service its calls use (``access.script_calls``; ``BUCKET_*`` is S3): HTTPS to the
  regional endpoint, through a VPC interface endpoint of the service when the VPC has one
  with private DNS, an S3 gateway endpoint on the subnet's route table, or else the internet;
- package downloads (``apt-get``, ``pip install``, ``curl https://``): the internet, 80 and 443;
- each load balancer to its instances, on every listener's instance port and the health check;
- and each node of a list of ``*_NODES`` to every other node of it, on ``NODE_PORT``: the Gitaly
  servers of a cluster (the Praefect servers' ``GITALY_NODES``) replicate a repository by
  calling the node that holds it (``peer_flows``).

A flow holds when, for every subnet the source can run in: the source's security groups
allow it out (egress), the destination's allow it in (ingress, by group or by a CIDR that
holds the source's subnet), the route table of the subnet leads there (a VPC-local
destination always; the internet through a NAT gateway that sits in a subnet routed to an
attached internet gateway, or directly through the internet gateway for a server with a
public address) and the network ACLs of the subnets on the way allow the packets and their
answers (ephemeral ports 1024-65535). A destination whose TLS setting differs from what the
client speaks (``TLS`` markers in the scripts) fails too: a TLS client cannot talk to a plain
Redis, nor the reverse.

New tiers are table entries: ``ENDPOINT_TYPES`` (where a kind of resource sits),
``SERVICE_OF`` (AWS service of a CLI service), ``NODE_PORT`` and ``TLS``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from gitlab_cfn.verify import access
from gitlab_cfn.verify.lint import Finding
from gitlab_cfn.verify.stackmodel import Model, Stack

INTERNET = "0.0.0.0/0"
EPHEMERAL = (1024, 65535)
# CLI service -> endpoint service name (com.amazonaws.<region>.<name>).
SERVICE_OF = {"s3api": "s3", "s3": "s3", "secretsmanager": "secretsmanager", "ssm": "ssm",
              "cloudformation": "cloudformation", "ec2": "ec2", "kms": "kms", "sts": "sts",
              # CloudWatch's API endpoint is monitoring.<region>.amazonaws.com (com.amazonaws.<region>.monitoring).
              "cloudwatch": "monitoring",
              # The CloudWatch agent (access.CLIENTS): log events to CloudWatch Logs, metrics to CloudWatch.
              "cloudwatch-agent": ("logs", "monitoring"),
              # Gitaly's server-side repository backups (access.CLIENTS): S3.
              "gitaly-backup-sink": "s3"}
# Outbound e-mail (scripts/lib/email.sh, with EMAIL_SENDER): SMTP with STARTTLS to Amazon SES's
# public endpoint email-smtp.<region>.amazonaws.com on 587
# (https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html), through the internet.
SMTP = (re.compile(r"smtp_port'\]\s*=\s*\$SMTP_PORT"), re.compile(r"^SMTP_PORT=(\d+)$", re.M))
# Gitaly listens on 8075 on every node Praefect names (contract-i11, GITALY_NODES).
NODE_PORT = 8075
# A client speaking TLS to a host variable's prefix, read from the scripts: prefix -> marker.
TLS = {"REDIS": re.compile(r"redis_ssl'\]\s*=\s*true"),
       "REDIS_CACHE": re.compile(r"redis_cache_instance.*rediss://|redis_cache_ssl'\]\s*=\s*true")}
# Where package downloads come from: marker in the scripts -> ports on the internet.
DOWNLOADS = {re.compile(r"\bapt-get\s+(-\S+\s+)*(update|install)\b"): ("apt-get", (80, 443)),
             re.compile(r"\bpip\S*\s+install\b"): ("pip install", (443,)),
             re.compile(r"\bcurl\b[^\n]*https://"): ("curl https://", (443,))}


@dataclass(frozen=True)
class Place:
    """Where traffic leaves or arrives: security groups, subnets, a public address."""
    label: str
    groups: tuple[str, ...]
    subnets: tuple[str, ...]
    public: bool = False
    tls: bool | None = None          # for destinations: whether they speak TLS


@dataclass(frozen=True)
class Flow:
    source: str                      # server label
    role: str
    why: str
    port: int
    destination: Place | None        # None: an AWS service or the internet
    service: str | None = None       # endpoint service name for AWS APIs
    tls: bool | None = None


# -- placements ---------------------------------------------------------------

def _ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.split(",") if v)
    return tuple(str(v) for v in value)


def _subnet_group(model: Model, stack: Stack, name: Any, kind: str) -> tuple[str, ...]:
    for gstack, glogical, _ in model.resources(kind):
        if model.ref(gstack, glogical) == name or glogical == name:
            return _ids(model.props(gstack, glogical).get("SubnetIds"))
    return ()


def place_of(model: Model, stack: Stack, logical: str) -> Place:
    """Security groups and subnets of a resource that traffic reaches."""
    kind = stack.resources[logical]["Type"]
    props = model.props(stack, logical)
    label = f"{stack.file}:{logical}"
    if kind == "AWS::RDS::DBInstance":
        return Place(label, _ids(props.get("VPCSecurityGroups")),
                     _subnet_group(model, stack, props.get("DBSubnetGroupName"), "AWS::RDS::DBSubnetGroup"),
                     tls=True)   # RDS PostgreSQL always offers TLS; rds.force_ssl makes it required
    if kind == "AWS::ElastiCache::ReplicationGroup":
        return Place(label, _ids(props.get("SecurityGroupIds")),
                     _subnet_group(model, stack, props.get("CacheSubnetGroupName"), "AWS::ElastiCache::SubnetGroup"),
                     tls=str(props.get("TransitEncryptionEnabled", False)).lower() == "true")
    if kind in ("AWS::EC2::Instance", "AWS::EC2::LaunchTemplate"):
        raw = stack.resources[logical].get("Properties") or {}
        raw = raw.get("LaunchTemplateData", {}) if kind == "AWS::EC2::LaunchTemplate" else raw
        data = model.value(stack, {k: v for k, v in access.launch_data(model, stack, raw).items() if k != "UserData"})
        groups = list(_ids(data.get("SecurityGroupIds"))) + list(_ids(data.get("SecurityGroups")))
        subnets = list(_ids(data.get("SubnetId")))
        public = False
        for nic in data.get("NetworkInterfaces") or []:
            groups += _ids(nic.get("GroupSet") or nic.get("Groups"))
            subnets += _ids(nic.get("SubnetId"))
            public = public or str(nic.get("AssociatePublicIpAddress", "")).lower() == "true"
        if kind == "AWS::EC2::LaunchTemplate":
            for gstack, glogical, _ in model.resources("AWS::AutoScaling::AutoScalingGroup"):
                gprops = model.props(gstack, glogical)
                if (gprops.get("LaunchTemplate") or {}).get("LaunchTemplateId") == model.ref(stack, logical):
                    subnets += _ids(gprops.get("VPCZoneIdentifier"))
        return Place(label, tuple(groups), tuple(subnets), public or _public_subnets(model, subnets))
    if kind in ("AWS::ElasticLoadBalancing::LoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer"):
        subnets = _ids(props.get("Subnets")) + tuple(m.get("SubnetId") for m in props.get("SubnetMappings") or [])
        return Place(label, _ids(props.get("SecurityGroups")), subnets,
                     props.get("Scheme", "internet-facing") == "internet-facing")
    raise access.Unresolved(f"{label}: traffic to a {kind} is not modelled (add it to flows.place_of)")


def _public_subnets(model: Model, subnets: list[str]) -> bool:
    for subnet in subnets:
        found = model.owner(subnet)
        if found and str(model.props(*found).get("MapPublicIpOnLaunch", "false")).lower() == "true":
            return True
    return False


# -- the flows of a server ----------------------------------------------------

def _owner_place(model: Model, host: str, why: str) -> Place:
    found = model.owner(str(host))
    if not found:
        raise access.Unresolved(f"{why}: {host} is no resource of the stack")
    return place_of(model, *found)


def server_flows(model: Model, server: access.Server, calls: list[access.Call],
                 sources: tuple[tuple[str, str], ...]) -> tuple[list[Flow], list[str]]:
    text = "\n".join(t for _, t in sources)
    label = f"{server.stack.file}:{server.logical}"
    flows, problems = [], []
    values = server.values

    def add(why: str, port: Any, destination: Place | None, service: str | None = None, tls: bool | None = None):
        try:
            flows.append(Flow(label, server.role, why, int(port), destination, service, tls))
        except (TypeError, ValueError):
            problems.append(f"{why}: port {port!r} is not a number")

    for name, host in sorted(values.items()):
        try:
            if name.endswith("_HOST"):
                prefix = name[:-len("_HOST")]
                if f"{prefix}_PORT" not in values:
                    problems.append(f"${name} has no ${prefix}_PORT in the user data")
                    continue
                tls = bool(TLS[prefix].search(text)) if prefix in TLS else None
                add(f"${name}:${prefix}_PORT", values[f"{prefix}_PORT"], _owner_place(model, host, f"${name}"), tls=tls)
            elif name.endswith("_ADDRESS"):
                match = re.match(r"^(\w+)://(.+):(\d+)$", str(host))
                if not match:
                    problems.append(f"${name} {host!r} is not scheme://host:port")
                    continue
                add(f"${name}", match.group(3), _owner_place(model, match.group(2), f"${name}"))
            elif name.endswith("_NODES"):
                for node in str(host).split(","):
                    add(f"${name} {node.split('=', 1)[0]}", NODE_PORT,
                        _owner_place(model, node.split("=", 1)[-1], f"${name}"))
            elif name == "SCRAPE_JOBS":
                for why, port, place in scrape_targets(model, str(host)):
                    add(why, port, place)
            elif name == "GITLAB_DOMAIN" and re.search(r"https://\$\{?GITLAB_DOMAIN", text):
                balancers = [place_of(model, s, lg) for kind in ("AWS::ElasticLoadBalancing::LoadBalancer",
                                                                  "AWS::ElasticLoadBalancingV2::LoadBalancer")
                             for s, lg, _ in model.resources(kind)]
                balancers = [b for b in balancers if b.public]
                if not balancers:
                    problems.append("https://$GITLAB_DOMAIN: no internet-facing load balancer in the stack")
                for balancer in balancers:
                    add("https://$GITLAB_DOMAIN (GitLab's URL: the internal API)", 443, balancer)
        except access.Unresolved as exc:
            problems.append(str(exc))
    services = set()
    for c in calls:
        if (c.service, c.command) in access.CALLS:
            endpoint = SERVICE_OF.get(c.service)
            services |= set(endpoint) if isinstance(endpoint, tuple) else {endpoint}
    if values.get("EMAIL_SENDER") and SMTP[0].search(text):
        port = SMTP[1].search(text)
        if not port:
            problems.append("the e-mail settings use $SMTP_PORT, which no script sets")
        else:
            add("SMTP to Amazon SES ($EMAIL_SENDER)", port.group(1), None)
    unknown = {c.service for c in calls if c.service not in SERVICE_OF}
    problems += [f"AWS service {s} has no endpoint in flows.SERVICE_OF" for s in sorted(unknown)]
    if any(access.OBJECT_STORAGE.match(n) for n in values):
        services.add("s3")
    for service in sorted(s for s in services if s):
        add(f"{service} API", 443, None, service)
    for marker, (name, ports) in DOWNLOADS.items():
        if marker.search(text):
            for port in ports:
                if not any(f.destination is None and f.service is None and f.port == port for f in flows):
                    add(f"downloads ({name})", port, None)
    return flows, problems


def scrape_targets(model: Model, jobs: str) -> list[tuple[str, int, Place]]:
    """(why, port, servers) of each job of a monitoring server's ``SCRAPE_JOBS`` (compile/scrape.py):
    Prometheus's EC2 service discovery selects the instances whose ``aws:cloudformation:logical-id``
    is one of the job's, so each named Auto Scaling group's launch template or instance of the
    stack is a destination; a name that is no server of the stack is an error (it would scrape nothing)."""
    from gitlab_cfn.compile import scrape

    try:
        decoded = scrape.decode(jobs)
    except ValueError as exc:
        raise access.Unresolved(f"$SCRAPE_JOBS: {exc}") from None
    out = []
    for role, exporter, port, ids in decoded:
        for logical in ids:
            found = None
            for stack, resource, _ in model.resources("AWS::AutoScaling::AutoScalingGroup"):
                if resource == logical:
                    found = model.owner((model.props(stack, resource).get("LaunchTemplate") or {}).get("LaunchTemplateId"))
            for stack, resource, _ in model.resources("AWS::EC2::Instance"):
                if resource == logical:
                    found = (stack, resource)
            if not found:
                raise access.Unresolved(f"$SCRAPE_JOBS {role}-{exporter}: {logical} is no server of the stack")
            out.append((f"$SCRAPE_JOBS {role}-{exporter} ({logical})", port, place_of(model, *found)))
    return out


def peer_flows(model: Model) -> list[tuple[Place, Flow]]:
    """Node to node on ``NODE_PORT`` within every node list a server is given: Gitaly replication.

    A Gitaly node of a cluster replicates a repository from the node that holds it (Praefect
    asks the target, which fetches from the source); the firewall table of "Configure Gitaly
    Cluster" (https://docs.gitlab.com/administration/gitaly/praefect/configure/, "Network
    latency and connectivity") lists Gitaly to Gitaly on 8075. So each node of a cluster
    reaches every other one. Node lists that do not resolve to
    resources are the server's own findings (``server_flows``)."""
    out, seen = [], set()
    for server in access.servers(model):
        for name, value in sorted(server.values.items()):
            if not name.endswith("_NODES"):
                continue
            nodes = []
            for node in str(value).split(","):
                found = model.owner(node.split("=", 1)[-1])
                if found:
                    nodes.append((node.split("=", 1)[0], *found))
            for a_name, a_stack, a_logical in nodes:
                try:
                    source = place_of(model, a_stack, a_logical)
                except access.Unresolved:
                    continue
                for b_name, b_stack, b_logical in nodes:
                    key = (a_stack.file, a_logical, b_stack.file, b_logical)
                    if (a_stack.file, a_logical) == (b_stack.file, b_logical) or key in seen:
                        continue
                    seen.add(key)
                    try:
                        destination = place_of(model, b_stack, b_logical)
                    except access.Unresolved:
                        continue
                    out.append((source, Flow(f"{a_stack.file}:{a_logical}", "gitaly",
                                             f"Gitaly replication: {a_name} to {b_name} (${name})", NODE_PORT,
                                             destination)))
    return out


def balancer_flows(model: Model) -> tuple[list[tuple[Place, Place, int, str]], list[str]]:
    """(load balancer, instances, port, why) for every load balancer and its targets."""
    out, problems = [], []
    for stack, logical, _ in model.resources("AWS::ElasticLoadBalancing::LoadBalancer"):
        props = model.props(stack, logical)
        balancer = place_of(model, stack, logical)
        ports = {int(l["InstancePort"]): f"listener {l['LoadBalancerPort']}" for l in props.get("Listeners") or []}
        target = str((props.get("HealthCheck") or {}).get("Target", ""))
        match = re.match(r"^\w+:(\d+)", target)
        if match:
            ports.setdefault(int(match.group(1)), "health check")
        for gstack, glogical, _ in model.resources("AWS::AutoScaling::AutoScalingGroup"):
            gprops = model.props(gstack, glogical)
            if model.ref(stack, logical) not in (gprops.get("LoadBalancerNames") or []):
                continue
            template = (gprops.get("LaunchTemplate") or {}).get("LaunchTemplateId")
            found = model.owner(template)
            if not found:
                problems.append(f"{gstack.file}:{glogical}: launch template {template} not found")
                continue
            members = place_of(model, *found)
            for port, why in sorted(ports.items()):
                out.append((balancer, members, port, f"{balancer.label} {why} -> {members.label}:{port}"))
    # Application and Network Load Balancers: listener -> target group -> its instances and groups.
    for stack, logical, _ in model.resources("AWS::ElasticLoadBalancingV2::Listener"):
        props = model.props(stack, logical)
        found = model.owner(props.get("LoadBalancerArn"))
        if not found:
            problems.append(f"{stack.file}:{logical}: load balancer {props.get('LoadBalancerArn')} not found")
            continue
        balancer = place_of(model, *found)
        groups = [a.get("TargetGroupArn") for a in props.get("DefaultActions") or [] if a.get("TargetGroupArn")]
        groups += [g.get("TargetGroupArn") for a in props.get("DefaultActions") or []
                   for g in (a.get("ForwardConfig") or {}).get("TargetGroups") or []]
        for group in groups:
            owner = model.owner(group)
            if not owner:
                problems.append(f"{stack.file}:{logical}: target group {group} not found")
                continue
            gprops = model.props(*owner)
            port = int(gprops.get("Port", props.get("Port")))
            health = gprops.get("HealthCheckPort", "traffic-port")
            ports = {port: "traffic"}
            if str(health) != "traffic-port":
                ports.setdefault(int(health), "health check")
            members = [model.owner(t.get("Id")) for t in gprops.get("Targets") or []]
            for astack, alogical, _ in model.resources("AWS::AutoScaling::AutoScalingGroup"):
                aprops = model.props(astack, alogical)
                if group in (aprops.get("TargetGroupARNs") or []):
                    members.append(model.owner((aprops.get("LaunchTemplate") or {}).get("LaunchTemplateId")))
            if not any(members):
                problems.append(f"{owner[0].file}:{owner[1]}: target group without targets in the stack")
            for member in filter(None, members):
                place = place_of(model, *member)
                for p, why in sorted(ports.items()):
                    out.append((balancer, place, p, f"{balancer.label} {why} -> {place.label}:{p}"))
    return out, problems


# -- the network --------------------------------------------------------------

@dataclass
class Rule:
    egress: bool
    protocol: str
    ports: tuple[int, int]
    cidr: str | None
    group: str | None
    prefix_list: str | None
    label: str


class Network:
    """Security group rules, subnets, route tables, gateways, endpoints and ACLs of a model."""

    def __init__(self, model: Model):
        self.m = model
        self.rules: dict[str, list[Rule]] = {}
        for stack, logical, _ in model.resources("AWS::EC2::SecurityGroup"):
            group = model.ref(stack, logical)
            props = model.props(stack, logical)
            rules = self.rules.setdefault(group, [])
            for direction, egress in (("SecurityGroupIngress", False), ("SecurityGroupEgress", True)):
                for i, rule in enumerate(props.get(direction) or []):
                    rules.append(self._rule(rule, egress, f"{stack.file}:{logical}.{direction}[{i}]"))
            if "SecurityGroupEgress" not in props:
                # "If you do not specify an egress rule, we add egress rules that allow ... all
                # ports and protocols to any destination" (AWS::EC2::SecurityGroup, SecurityGroupEgress).
                rules.append(Rule(True, "-1", (0, 65535), INTERNET, None, None, f"{stack.file}:{logical} default egress"))
        for kind, egress in (("AWS::EC2::SecurityGroupIngress", False), ("AWS::EC2::SecurityGroupEgress", True)):
            for stack, logical, _ in model.resources(kind):
                props = model.props(stack, logical)
                self.rules.setdefault(props["GroupId"], []).append(self._rule(props, egress, f"{stack.file}:{logical}"))
        self.subnet_cidr = {model.ref(s, lg): model.props(s, lg)["CidrBlock"]
                            for s, lg, _ in model.resources("AWS::EC2::Subnet")}
        self.subnet_table = {}
        for s, lg, _ in model.resources("AWS::EC2::SubnetRouteTableAssociation"):
            p = model.props(s, lg)
            self.subnet_table[p["SubnetId"]] = p["RouteTableId"]
        self.routes: dict[str, list[dict]] = {}
        for s, lg, _ in model.resources("AWS::EC2::Route"):
            p = model.props(s, lg)
            self.routes.setdefault(p["RouteTableId"], []).append({**p, "label": f"{s.file}:{lg}"})
        self.nat_subnet = {model.ref(s, lg): model.props(s, lg).get("SubnetId")
                           for s, lg, _ in model.resources("AWS::EC2::NatGateway")}
        self.attached_igws = {model.props(s, lg).get("InternetGatewayId")
                              for s, lg, _ in model.resources("AWS::EC2::VPCGatewayAttachment")}
        self.endpoints = [model.props(s, lg) for s, lg, _ in model.resources("AWS::EC2::VPCEndpoint")]
        self.acl_of: dict[str, str] = {}
        for s, lg, _ in model.resources("AWS::EC2::SubnetNetworkAclAssociation"):
            p = model.props(s, lg)
            self.acl_of[p["SubnetId"]] = p["NetworkAclId"]
        self.acl_entries: dict[str, list[dict]] = {}
        for s, lg, _ in model.resources("AWS::EC2::NetworkAclEntry"):
            p = model.props(s, lg)
            self.acl_entries.setdefault(p["NetworkAclId"], []).append({**p, "label": f"{s.file}:{lg}"})

    @staticmethod
    def _rule(rule: dict, egress: bool, label: str) -> Rule:
        protocol = str(rule.get("IpProtocol", "-1")).lower()
        if protocol in ("-1", "all"):
            ports = (0, 65535)
        else:
            ports = (int(rule.get("FromPort", 0)), int(rule.get("ToPort", 65535)))
            if ports == (-1, -1):
                ports = (0, 65535)
        other = rule.get("DestinationSecurityGroupId" if egress else "SourceSecurityGroupId")
        return Rule(egress, protocol, ports, rule.get("CidrIp"), other,
                    rule.get("DestinationPrefixListId" if egress else "SourcePrefixListId"), label)

    # -- security groups
    def allows(self, groups: tuple[str, ...], egress: bool, port: int, peer_groups: tuple[str, ...],
               peer_cidrs: list[str], prefix_lists: tuple[str, ...] = ()) -> bool:
        """Whether any rule of ``groups`` lets TCP ``port`` out to (or in from) the peer."""
        if not groups:
            return False
        for group in groups:
            for rule in self.rules.get(group, []):
                if rule.egress != egress or rule.protocol not in ("tcp", "6", "-1"):
                    continue
                if not rule.ports[0] <= port <= rule.ports[1]:
                    continue
                if rule.group and rule.group in peer_groups:
                    return True
                if rule.prefix_list and rule.prefix_list in prefix_lists:
                    return True
                if rule.cidr and peer_cidrs and all(_contains(rule.cidr, c) for c in peer_cidrs):
                    return True
        return False

    # -- routes
    def route_out(self, subnet: str, public_address: bool) -> tuple[str | None, str]:
        """How a subnet reaches the internet: (NAT subnet or "igw", why) or (None, the reason not)."""
        table = self.subnet_table.get(subnet)
        if table is None:
            return None, f"subnet {subnet} has no route table (the VPC's main table routes nothing out)"
        for route in self.routes.get(table, []):
            if route.get("DestinationCidrBlock") != INTERNET:
                continue
            if route.get("NatGatewayId"):
                nat_subnet = self.nat_subnet.get(route["NatGatewayId"])
                if nat_subnet is None:
                    return None, f"{route['label']}: NAT gateway {route['NatGatewayId']} is not in the stack"
                back, why = self.route_out(nat_subnet, True)
                if back != "igw":
                    return None, f"{route['label']}: the NAT gateway's subnet does not reach the internet ({why})"
                return nat_subnet, f"through NAT ({route['label']})"
            if route.get("GatewayId"):
                if route["GatewayId"] not in self.attached_igws:
                    return None, f"{route['label']}: internet gateway {route['GatewayId']} is not attached to the VPC"
                if not public_address:
                    return None, f"{route['label']}: routes to the internet gateway, but the server has no public address"
                return "igw", f"through the internet gateway ({route['label']})"
        return None, f"route table {table} of subnet {subnet} has no route to 0.0.0.0/0"

    def gateway_endpoint(self, subnet: str, service: str) -> bool:
        table = self.subnet_table.get(subnet)
        for e in self.endpoints:
            if str(e.get("ServiceName", "")).endswith(f".{service}") and e.get("VpcEndpointType", "Gateway") == "Gateway" \
                    and table in (e.get("RouteTableIds") or []):
                return True
        return False

    def interface_endpoint(self, service: str) -> dict | None:
        for e in self.endpoints:
            if str(e.get("ServiceName", "")).endswith(f".{service}") and e.get("VpcEndpointType") == "Interface" \
                    and str(e.get("PrivateDnsEnabled", "false")).lower() == "true":
                return e
        return None

    # -- network ACLs
    def acl_allows(self, subnet: str, egress: bool, port: int | tuple[int, int], peer: str) -> tuple[bool, str]:
        acl = self.acl_of.get(subnet)
        if acl is None:
            return True, ""          # the VPC's default ACL allows everything
        low, high = (port, port) if isinstance(port, int) else port
        entries = sorted((e for e in self.acl_entries.get(acl, [])
                          if str(e.get("Egress", False)).lower() == str(egress).lower()),
                         key=lambda e: int(e["RuleNumber"]))
        for e in entries:
            protocol = str(e.get("Protocol", "-1"))
            if protocol not in ("-1", "6"):
                continue
            ports = e.get("PortRange") or {"From": 0, "To": 65535}
            if protocol == "6" and (int(ports["To"]) < low or int(ports["From"]) > high):
                continue
            cidr = e.get("CidrBlock", INTERNET)
            if not _overlaps(cidr, peer):
                continue
            covers = protocol == "-1" or (int(ports["From"]) <= low and high <= int(ports["To"]))
            if e.get("RuleAction") == "deny":
                return False, f"{e['label']} denies {'out' if egress else 'in'} {low}-{high} {cidr}"
            if covers and _contains(cidr, peer):
                return True, ""
        return False, f"network ACL {acl} of {subnet} allows no {'egress' if egress else 'ingress'} {low}-{high} for {peer}"


def _contains(outer: str, inner: str) -> bool:
    try:
        return ipaddress.ip_network(inner, strict=False).subnet_of(ipaddress.ip_network(outer, strict=False))
    except (ValueError, TypeError):
        return False


def _overlaps(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b, strict=False))
    except (ValueError, TypeError):
        return False


# -- the check ----------------------------------------------------------------

def check_flow(net: Network, source: Place, flow: Flow) -> list[str]:
    """Why a flow fails from each subnet of its source (empty: it holds)."""
    problems = []
    dst = flow.destination
    what = f"{flow.source} ({flow.role}) -> {dst.label if dst else flow.service or 'internet'}:{flow.port} [{flow.why}]"
    if not source.subnets:
        return [f"{what}: the source runs in no subnet"]
    if dst is not None and flow.tls is not None and dst.tls is not None and flow.tls != dst.tls:
        problems.append(f"{what}: the client {'speaks' if flow.tls else 'does not speak'} TLS, "
                        f"the destination {'requires' if dst.tls else 'does not offer'} it")
    for subnet in source.subnets:
        src_cidr = net.subnet_cidr.get(subnet)
        if src_cidr is None:
            problems.append(f"{what}: subnet {subnet} is not in the stack")
            continue
        if dst is not None and not dst.public:
            dst_cidrs = [net.subnet_cidr[s] for s in dst.subnets if s in net.subnet_cidr]
            if not dst_cidrs:
                problems.append(f"{what}: the destination runs in no subnet of the stack")
                continue
            if not net.allows(source.groups, True, flow.port, dst.groups, dst_cidrs):
                problems.append(f"{what}: no egress rule of {', '.join(source.groups)} allows TCP {flow.port} to it")
            if not net.allows(dst.groups, False, flow.port, source.groups, [src_cidr]):
                problems.append(f"{what}: no ingress rule of {', '.join(dst.groups)} allows TCP {flow.port} "
                                f"from {', '.join(source.groups)} ({src_cidr})")
            for dst_cidr in dst_cidrs:
                for ok, why in (net.acl_allows(subnet, True, flow.port, dst_cidr),
                                net.acl_allows(subnet, False, EPHEMERAL, dst_cidr)):
                    if not ok:
                        problems.append(f"{what}: {why}")
            for dsub in dst.subnets:
                for ok, why in (net.acl_allows(dsub, False, flow.port, src_cidr),
                                net.acl_allows(dsub, True, EPHEMERAL, src_cidr)):
                    if not ok:
                        problems.append(f"{what}: {why}")
            continue
        # Out of the VPC: an AWS API, the internet, or a public load balancer.
        if flow.service and net.interface_endpoint(flow.service):
            endpoint = net.interface_endpoint(flow.service)
            groups = _ids(endpoint.get("SecurityGroupIds"))
            vpc_cidrs = [c for s, c in net.subnet_cidr.items() if s in _ids(endpoint.get("SubnetIds"))]
            if not net.allows(source.groups, True, flow.port, groups, vpc_cidrs or [INTERNET]):
                problems.append(f"{what}: no egress rule allows TCP {flow.port} to the {flow.service} endpoint")
            if not net.allows(groups, False, flow.port, source.groups, [src_cidr]):
                problems.append(f"{what}: the {flow.service} endpoint's groups allow no TCP {flow.port} from it")
            continue
        gateway = flow.service is not None and net.gateway_endpoint(subnet, flow.service)
        if not gateway:
            via, why = net.route_out(subnet, source.public)
            if via is None:
                problems.append(f"{what}: no route out of {subnet}: {why}")
                continue
            if via != "igw":
                for ok, reason in (net.acl_allows(via, False, flow.port, src_cidr),
                                   net.acl_allows(via, True, flow.port, INTERNET),
                                   net.acl_allows(via, False, EPHEMERAL, INTERNET),
                                   net.acl_allows(via, True, EPHEMERAL, src_cidr)):
                    if not ok:
                        problems.append(f"{what}: NAT subnet: {reason}")
        if not net.allows(source.groups, True, flow.port, dst.groups if dst else (), [INTERNET],
                          ()):
            problems.append(f"{what}: no egress rule of {', '.join(source.groups)} allows TCP {flow.port} "
                            "to 0.0.0.0/0")
        for ok, why in (net.acl_allows(subnet, True, flow.port, INTERNET),
                        net.acl_allows(subnet, False, EPHEMERAL, INTERNET)):
            if not ok:
                problems.append(f"{what}: {why}")
        if dst is not None:
            # The internet-facing load balancer sees the NAT gateway's public address.
            if not net.allows(dst.groups, False, flow.port, (), [INTERNET]):
                problems.append(f"{what}: no ingress rule of {', '.join(dst.groups)} allows TCP {flow.port} "
                                "from the NAT gateway's public address")
    return problems


@dataclass
class FlowResult:
    flows: list[tuple[Place, Flow]]
    findings: list[Finding]


def check(model: Model, calls: dict[str, list[access.Call]] | None = None,
          sources: dict[str, tuple] | None = None) -> FlowResult:
    net = Network(model)
    findings, checked = [], []
    for server in access.servers(model):
        if server.role not in access.userdata.ROLES:
            continue
        role_sources = (sources or {}).get(server.role) or access.role_sources(server.role)
        role_calls = (calls or {}).get(server.role)
        if role_calls is None:
            role_calls = access.script_calls(server.role, role_sources)
        label = f"{server.stack.file}:{server.logical} ({server.role})"
        try:
            source = place_of(model, server.stack, server.logical)
        except access.Unresolved as exc:
            findings.append(_finding(f"{label}: {exc}"))
            continue
        flows, problems = server_flows(model, server, role_calls, role_sources)
        findings += [_finding(f"{label}: {p}") for p in problems]
        for flow in flows:
            checked.append((source, flow))
            findings += [_finding(p) for p in check_flow(net, source, flow)]
    for source, flow in peer_flows(model):
        checked.append((source, flow))
        findings += [_finding(p) for p in check_flow(net, source, flow)]
    lb_flows, problems = balancer_flows(model)
    findings += [_finding(p) for p in problems]
    for balancer, members, port, why in lb_flows:
        flow = Flow(balancer.label, "load balancer", why, port, members)
        checked.append((balancer, flow))
        findings += [_finding(p) for p in check_flow(net, balancer, flow)]
    return FlowResult(checked, sorted(set(findings)))


def _finding(message: str) -> Finding:
    return Finding("network", 1, 1, "GLC021", "error", message)
