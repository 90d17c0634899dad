"""Security groups tier: the firewall of GitLab's guide, tightened.

Groups: load balancer, GitLab application servers, database, cache, Gitaly and
(when built) bastions. Each group starts with no outbound access; every
allowed flow is written once by ``allow``, which adds the ingress rule on the
target and, between two groups, the matching egress rule on the source. Every
rule carries a description.

- load balancer: 80/443 from anywhere (IPv4 and IPv6), 22 from ``GitSshCIDR``
- application: 80 and 22 from the load balancer only; 22 from the bastions
- database: 5432 from the application only; cache: 6379 from the application only
- Gitaly: 8075 from the application only; 22 from the bastions
- bastion: 22 from ``RemoteAccessCIDR`` (a Rule refuses 0.0.0.0/0)
- application (and Sidekiq), with ``EmailSender``: out on 587 (SMTP, STARTTLS) to Amazon SES

With a Sidekiq group (sizes from 2k), Sidekiq servers: no inbound traffic but SSH from the
bastions; out to the database, Redis and Gitaly (or the internal load balancer).

With a Gitaly Cluster (sizes from 3k), following the flows of GitLab's Gitaly Cluster
network requirements (https://docs.gitlab.com/administration/gitaly/praefect/configure/#network-connectivity-requirements):

- internal load balancer (a Network Load Balancer with this group): 2305 from the
  application and Sidekiq servers; out to the Praefect servers on 2305 only (its
  health checks come from this group too, so no range wider than a group is opened)
- Praefect: 2305 from the internal load balancer; out to Gitaly 8075, the database
  5432, and HTTPS (GitLab's internal API through the external load balancer, AWS APIs)
- Gitaly: 8075 from Praefect and from the other Gitaly servers (replication between
  the nodes of the cluster); from the application servers only when the single
  server is kept beside the cluster

With a monitoring node (``monitoring.node``), the monitoring server: in, SSH from the bastions
only; out, HTTPS (AWS APIs: EC2 service discovery, the boot bundle) and, to each group of
servers, exactly the ports of that role's exporters (``scrape.jobs``: node_exporter 9100 on
every server, Workhorse 9229 and Puma's exporter 8083 on the application servers, Sidekiq's
8082 where Sidekiq runs, Gitaly 9236, Praefect 9652), each allowed into the group from the
monitoring server's group only; out, HTTP to package repositories as every server.

Exposes: ``<Group>SecurityGroupId`` for each group.
"""

from __future__ import annotations

from troposphere import Equals, GetAtt, Not, ec2

from gitlab_cfn.compile import scrape
from gitlab_cfn.compile.naming import tags
from gitlab_cfn.compile.tier import Tier, scanner_skip

DESCRIPTION = "gitlab-cfn security groups: load balancer, app, database, cache, Gitaly, bastion."

ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"
# A rule that matches nothing: with it in place CloudFormation drops the
# default allow-all egress rule (the AWS CDK does the same).
NO_EGRESS = ec2.SecurityGroupRule(
    IpProtocol="icmp", FromPort=252, ToPort=86, CidrIp="255.255.255.255/32",
    Description="Disallow all traffic")

SMTP_PORT = 587
PORTS = {"http": 80, "https": 443, "ssh": 22, "postgres": 5432, "redis": 6379, "gitaly": 8075,
         "praefect": 2305,
         # The exporters the monitoring node scrapes: '<exporter>metrics'.
         **{f"{name}metrics": port for name, port in scrape.PORTS.items()}}


class Groups:
    def __init__(self, tier: Tier, vpc_id):
        self.tier = tier
        self.vpc_id = vpc_id
        self.groups: dict[str, ec2.SecurityGroup] = {}

    def group(self, name: str, description: str) -> ec2.SecurityGroup:
        sg = self.tier.add(ec2.SecurityGroup(
            f"{name}SecurityGroup",
            GroupDescription=description,
            VpcId=self.vpc_id,
            SecurityGroupEgress=[NO_EGRESS],
            Tags=tags(name.lower()),
        ))
        self.groups[name] = sg
        return sg

    def allow(self, target: str, source, port: str, description: str) -> None:
        """Allow TCP ``port`` into group ``target`` from a group name or a CIDR."""
        number = PORTS[port]
        rule = dict(IpProtocol="tcp", FromPort=number, ToPort=number, Description=description)
        dest = GetAtt(self.groups[target], "GroupId")
        if isinstance(source, str) and source in self.groups:
            src = GetAtt(self.groups[source], "GroupId")
            self.tier.add(ec2.SecurityGroupIngress(
                f"{target}From{source}{port.capitalize()}",
                GroupId=dest, SourceSecurityGroupId=src, **rule))
            self.tier.add(ec2.SecurityGroupEgress(
                f"{source}To{target}{port.capitalize()}",
                GroupId=src, DestinationSecurityGroupId=dest, **rule))
            return
        key = "CidrIpv6" if source == ANYWHERE_V6 else "CidrIp"
        suffix = {ANYWHERE_V4: "Anywhere", ANYWHERE_V6: "AnywhereIpv6"}.get(source, "Cidr")
        ingress = self.tier.add(ec2.SecurityGroupIngress(
            f"{target}From{suffix}{port.capitalize()}", GroupId=dest, **{key: source}, **rule))
        if source in (ANYWHERE_V4, ANYWHERE_V6) and port == "http":
            scanner_skip(ingress, "CKV_AWS_260", "public load balancer: GitLab is served to everyone on 80 as on 443")

    def allow_out(self, source: str, port: str, description: str) -> None:
        """Allow TCP ``port`` out of group ``source`` to any IPv4 address (through NAT)."""
        number = PORTS[port]
        self.tier.add(ec2.SecurityGroupEgress(
            f"{source}ToInternet{port.capitalize()}",
            GroupId=GetAtt(self.groups[source], "GroupId"),
            IpProtocol="tcp", FromPort=number, ToPort=number, CidrIp=ANYWHERE_V4,
            Description=description))


def monitoring_flows(g: Groups, cfg) -> None:
    """The monitoring server to each exporter of each role's servers (``scrape.jobs``), and
    HTTPS out (EC2's DescribeInstances for service discovery, the boot bundle, SSM)."""
    for job in scrape.jobs(cfg):
        g.allow(job.group, "Monitoring", f"{job.exporter}metrics",
                f"Prometheus scrapes {job.exporter} metrics ({job.port}) from the monitoring server")
    g.allow_out("Monitoring", "https", "HTTPS to AWS APIs (EC2 service discovery, S3, SSM)")
    g.allow_out("Monitoring", "http", "HTTP to package repositories (the bootstrap's AWS CLI)")


def build(tier: Tier) -> None:
    tier.stack_name()
    g = Groups(tier, tier.input("VpcId"))
    bastions = tier.cfg.bastions

    g.group("LoadBalancer", "GitLab load balancer: HTTP/HTTPS from anywhere, Git over SSH from a trusted range")
    g.group("App", "GitLab application servers: traffic from the load balancer only")
    g.group("Database", "GitLab RDS PostgreSQL: from the application servers only")
    g.group("Cache", "GitLab ElastiCache Redis: from the application servers only")
    g.group("Gitaly", "GitLab Gitaly server: from the application servers only")
    cfg = tier.cfg
    if cfg.sidekiq_group:
        g.group("Sidekiq", "GitLab Sidekiq servers: no inbound traffic but administrator SSH")
    if cfg.cluster:
        g.group("InternalLoadBalancer", "GitLab internal load balancer: Praefect from the GitLab servers")
        g.group("Praefect", "GitLab Praefect servers: from the internal load balancer only")
    if cfg.monitoring.node:
        g.group("Monitoring", "GitLab monitoring server (Prometheus): no inbound traffic but administrator SSH")
    if bastions:
        g.group("Bastion", "GitLab bastion hosts: SSH from the remote access range")

    for port in ("http", "https"):
        g.allow("LoadBalancer", ANYWHERE_V4, port, f"{port.upper()} to GitLab from anywhere (IPv4)")
        g.allow("LoadBalancer", ANYWHERE_V6, port, f"{port.upper()} to GitLab from anywhere (IPv6)")
    g.allow("LoadBalancer", tier.param("GitSshCIDR"), "ssh", "Git over SSH from the trusted range")

    g.allow("App", "LoadBalancer", "http", "HTTP and TLS-terminated HTTPS from the load balancer")
    g.allow("App", "LoadBalancer", "ssh", "Git over SSH forwarded by the load balancer")
    g.allow("Database", "App", "postgres", "PostgreSQL from the GitLab application servers")
    g.allow("Cache", "App", "redis", "Redis from the GitLab application servers")
    servers = ["App"] + (["Sidekiq"] if cfg.sidekiq_group else [])
    if cfg.sidekiq_group:
        g.allow("Database", "Sidekiq", "postgres", "PostgreSQL from the GitLab Sidekiq servers")
        g.allow("Cache", "Sidekiq", "redis", "Redis from the GitLab Sidekiq servers")
    if not cfg.cluster or cfg.gitaly.keep_single_server:
        for source in servers:
            what = "application" if source == "App" else "Sidekiq"
            g.allow("Gitaly", source, "gitaly", f"Gitaly RPC from the GitLab {what} servers")
    if cfg.cluster:
        for source in servers:
            what = "application" if source == "App" else "Sidekiq"
            g.allow("InternalLoadBalancer", source, "praefect", f"Praefect RPC from the GitLab {what} servers")
        g.allow("Praefect", "InternalLoadBalancer", "praefect",
                "Praefect RPC and TCP health checks from the internal load balancer")
        g.allow("Gitaly", "Praefect", "gitaly", "Gitaly RPC from the Praefect servers")
        g.allow("Gitaly", "Gitaly", "gitaly", "Gitaly RPC between the Gitaly servers (replication)")
        g.allow("Database", "Praefect", "postgres", "PostgreSQL from the Praefect servers (Praefect database)")
    if cfg.monitoring.node:
        monitoring_flows(g, cfg)
    outbound = servers + ["Gitaly"] + (["Praefect"] if cfg.cluster else [])
    for source in outbound:
        g.allow_out(source, "https", "HTTPS to AWS APIs, package repositories and GitLab's URL")
        g.allow_out(source, "http", "HTTP to package repositories")
    if bastions:
        g.allow("Bastion", tier.param("RemoteAccessCIDR"), "ssh", "Administrator SSH from the remote access range")
        g.allow("App", "Bastion", "ssh", "Administrator SSH from the bastion hosts")
        g.allow("Gitaly", "Bastion", "ssh", "Administrator SSH from the bastion hosts")
        for extra in ("Sidekiq", "Praefect", "Monitoring"):
            if extra in g.groups:
                g.allow(extra, "Bastion", "ssh", "Administrator SSH from the bastion hosts")
        g.allow_out("Bastion", "https", "HTTPS to AWS APIs and package repositories")
        g.allow_out("Bastion", "http", "HTTP to package repositories")

    # Outbound e-mail through Amazon SES (scripts/lib/email.sh): STARTTLS on 587 to SES's
    # public SMTP endpoint, only when the stack has a sender. From the Sidekiq servers too:
    # Sidekiq delivers GitLab's notification mail (ActionMailer deliver_later jobs).
    tier.template.add_condition("EmailOn", Not(Equals(tier.param("EmailSender"), "")))
    for source in servers:
        tier.add(ec2.SecurityGroupEgress(
            f"{source}ToSesSmtp", Condition="EmailOn",
            GroupId=GetAtt(g.groups[source], "GroupId"),
            IpProtocol="tcp", FromPort=SMTP_PORT, ToPort=SMTP_PORT, CidrIp=ANYWHERE_V4,
            Description="SMTP with STARTTLS to Amazon SES"))

    for name, sg in g.groups.items():
        tier.output(f"{name}SecurityGroupId", GetAtt(sg, "GroupId"), f"{name} security group.")
