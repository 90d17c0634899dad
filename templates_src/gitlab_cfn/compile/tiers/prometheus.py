"""Prometheus tier: the monitoring node of GitLab's reference architectures (``monitoring.node``).

GitLab's reference architectures (administration/reference_architectures/{2k..50k}_users.md,
"Configure Prometheus") give every size one monitoring server running the Linux package
with ``roles ['monitoring_role']``: Prometheus scraping every other server's exporters
(Grafana left the package in GitLab 16.3; the reference architectures' Consul service
discovery is replaced here by EC2's). Built here as:

- one server from the GitLab image, in an Auto Scaling group of exactly one over the private
  subnets (it holds only metrics, which may be lost: a replacement starts a new history),
  replaced by a rolling update that waits for the new server's signal;
- its role may call ``ec2:DescribeInstances`` (which takes no resource-level permission:
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html),
  in the stack's region only, for Prometheus's ``ec2_sd_configs``;
- its user data names the stack's VPC and the scrape jobs (``scrape.encode``): every job
  selects the instances of one role by their ``aws:cloudformation:logical-id`` tag, so the
  targets are whatever servers the stack runs, never a list written by hand;
- its security group (security-groups tier) may reach each exporter port of each role and
  nothing else inside the VPC; the other servers' exporters listen on their private address
  (``METRICS_SCRAPED``, scripts/lib/exporters.sh) because this tier exists.

Exposes: ``PrometheusAutoScalingGroupName``, ``PrometheusBootBundleParameterName``.
"""

from __future__ import annotations

from awacs import ec2 as ec2_actions
from awacs.aws import Allow, Condition, PolicyDocument, Statement, StringEquals
from troposphere import GetAtt, Join, Ref, autoscaling, iam

from gitlab_cfn.compile import scrape
from gitlab_cfn.compile.instances import (
    IMAGE_ROOT_GIB,
    bundle_parameter,
    bundle_user_data,
    from_template,
    launch_template,
    signalled_group_policies,
)
from gitlab_cfn.compile.naming import IAM_PATH, tags
from gitlab_cfn.compile.policies import assume_role, grant, managed_policy_arn
from gitlab_cfn.compile.tier import Tier
from gitlab_cfn.compile.tiers.logs import agent_grant
from gitlab_cfn.compile.userdata import user_data

DESCRIPTION = "gitlab-cfn prometheus: the monitoring server (GitLab's Prometheus) and its EC2 service discovery."

BOOT_TIMEOUT = "PT30M"
BOOT_SECONDS = 30 * 60
# The grants the server reads with while it boots and scrapes: the group depends on them.
BOOT_GRANTS = ("PrometheusBootRead", "PrometheusDiscovery", "PrometheusCloudWatchAgent")


def discovery_policy() -> PolicyDocument:
    """``ec2:DescribeInstances`` and ``ec2:DescribeAvailabilityZones`` in the stack's region: what
    ``ec2_sd_configs`` calls. Prometheus's EC2 discovery (prometheus/prometheus
    discovery/aws/ec2.go) reads the zones for ``__meta_ec2_availability_zone_id`` (refreshAZIDs;
    v3.6/v3.11, bundled by GitLab 18.11/19.3, log a denial at debug and leave the label empty),
    and newer releases call DescribeAvailabilityZones as their credential check when the
    discovery starts ("unable to describe availability zones"), failing the whole discovery on a
    denial. Both are read-only and take no resource-level permission (resource "*",
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html)."""
    return PolicyDocument(Version="2012-10-17", Statement=[Statement(
        Sid="DiscoverScrapeTargets", Effect=Allow,
        Action=[ec2_actions.DescribeInstances, ec2_actions.DescribeAvailabilityZones],
        Resource=["*"],
        Condition=Condition(StringEquals("aws:RequestedRegion", Ref("AWS::Region"))),
    )])


def build(tier: Tier) -> None:
    tier.stack_name()
    cfg = tier.cfg
    role = tier.add(iam.Role(
        "PrometheusRole",
        Path=IAM_PATH,
        Description="GitLab monitoring server: EC2 service discovery, its boot bundle, Session Manager, CloudWatch agent.",
        AssumeRolePolicyDocument=assume_role("ec2.amazonaws.com"),
        ManagedPolicyArns=[managed_policy_arn("AmazonSSMManagedInstanceCore")],
        Tags=tags("prometheus"),
    ))
    profile = tier.add(iam.InstanceProfile("PrometheusInstanceProfile", Path=IAM_PATH, Roles=[Ref(role)]))
    tier.add(grant("PrometheusDiscovery", discovery_policy(), [Ref(role)]))
    # The CloudWatch agent ships its boot log to the stack's boot log group (tier logs) and
    # publishes its memory and disk metrics, as every server's does.
    tier.add(agent_grant("PrometheusCloudWatchAgent", [Ref(role)]))
    parameter = bundle_parameter(tier, "monitoring", logical_id="PrometheusBootBundleParameter",
                                 grant_id="PrometheusBootRead", role_names=[Ref(role)],
                                 what="the monitoring server")
    values = {
        "AWS_REGION": Ref("AWS::Region"),
        "CFN_STACK": Ref("AWS::StackName"),
        "CFN_RESOURCE": "PrometheusAutoScalingGroup",
        # Service discovery looks in the stack's VPC only.
        "VPC_ID": tier.input("VpcId"),
        "SCRAPE_JOBS": scrape.encode(scrape.jobs(cfg)),
        # The stack's log groups (tier logs), as the other servers name them.
        "LOG_GROUP_ID": tier.input("LogGroupId"),
        **bundle_user_data(parameter, pin=True),
    }
    template = launch_template(
        tier, "PrometheusLaunchTemplate",
        name="prometheus",
        image_id=tier.param("GitLabAmiId"),
        instance_type=tier.param("MonitoringInstanceType"),
        profile_arn=GetAtt(profile, "Arn"),
        security_group_ids=[tier.input("MonitoringSecurityGroupId")],
        root_size=IMAGE_ROOT_GIB,
        user_data=user_data("monitoring", values),
        detailed_monitoring=True,
    )
    group = tier.add(autoscaling.AutoScalingGroup(
        "PrometheusAutoScalingGroup",
        VPCZoneIdentifier=tier.input("PrivateSubnetIds"),
        LaunchTemplate=autoscaling.LaunchTemplateSpecification(**from_template(template)),
        MinSize="1",
        MaxSize="1",
        HealthCheckType="EC2",
        HealthCheckGracePeriod=BOOT_SECONDS,
        MetricsCollection=[autoscaling.MetricsCollection(Granularity="1Minute")],
        Tags=autoscaling.Tags(Name=(Join("-", [tier.stack_name(), "prometheus"]), True)),
        # One server: an update replaces it (none stays in service) and waits for the new one.
        **signalled_group_policies(1, 0, BOOT_TIMEOUT, BOOT_TIMEOUT),
        DependsOn=list(BOOT_GRANTS),
    ))
    tier.output("PrometheusAutoScalingGroupName", Ref(group),
                "Auto Scaling group of the monitoring server (Prometheus).", public=True)
    tier.output("PrometheusBootBundleParameterName", Ref(parameter),
                "SSM parameter naming the monitoring server's boot bundle.")
