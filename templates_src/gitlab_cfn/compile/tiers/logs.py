"""Logs tier: the stack's CloudWatch log groups and what the CloudWatch agent may do.

Builds one log group per GitLab log family (``observability.LOG_FAMILIES``), named
``/gitlab-cfn/<parent stack>/<8 characters of this stack's id>/<family>`` (kept when
the stack is deleted, so a later stack of the same name gets new ones), whose events
are kept ``LogRetentionDays`` days, encrypted
with the stack's KMS key (whose key policy lets CloudWatch Logs use it for exactly
these groups, see ``policies.kms_key_policy``); and the managed policy of the
CloudWatch agent on every server: write log events to these groups only, put
metrics in the stack's own namespace only (``cloudwatch:namespace`` condition).
Granted here to the GitLab servers' roles (application and Sidekiq); the Gitaly and
Praefect tiers grant the same policy to their own roles with ``agent_grant``.

Created before the servers, so that the groups exist when the agent starts (the
agent may not create groups: ``logs:CreateLogGroup`` is not granted).

Exposes: ``LogGroupPrefix``, ``LogGroupId``, ``MetricsNamespace``.
"""

from __future__ import annotations

from awacs import cloudwatch as cw
from awacs import logs as awslogs
from awacs.aws import Allow, Condition, PolicyDocument, Statement, StringEquals
from troposphere import Join, Ref, Select, Split, Sub, iam, logs

from gitlab_cfn.compile.observability import (
    LOG_FAMILIES,
    LOG_GROUP_PREFIX,
    METRICS_NAMESPACE,
    log_group_logical_id,
)
from gitlab_cfn.compile.policies import VERSION, grant
from gitlab_cfn.compile.tier import Tier, gitlab_roles

DESCRIPTION = "gitlab-cfn logs: CloudWatch log groups of GitLab's logs, the CloudWatch agent's policy."



def agent_policy() -> PolicyDocument:
    """The agent's rights, from the parent stack's name (``ParentStackName``) alone:
    any tier can grant them to its servers' role.

    What the agent calls to ship files into existing groups and to publish metrics
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/create-iam-roles-for-cloudwatch-agent.html,
    the CloudWatchAgentServerPolicy it describes, narrowed: no CreateLogGroup, no
    ssm:GetParameter, no ec2:Describe*; the configuration comes with the boot bundle
    and names no EC2 tag dimension)."""
    group_arns = [Sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                      + LOG_GROUP_PREFIX + "/*")]
    return PolicyDocument(
        Version=VERSION,
        Statement=[
            Statement(
                Sid="StreamsInStackGroups",
                Effect=Allow,
                Action=[awslogs.CreateLogStream, awslogs.DescribeLogStreams],
                Resource=list(group_arns),
            ),
            Statement(
                Sid="EventsToStackStreams",
                Effect=Allow,
                Action=[awslogs.PutLogEvents],
                # Streams are "<group arn>:log-stream:<name>" (the Service Authorization
                # Reference, CloudWatch Logs resource types log-group and log-stream).
                Resource=[Sub("${Arn}:log-stream:*", Arn=arn) for arn in group_arns],
            ),
            Statement(
                Sid="PutStackMetrics",
                Effect=Allow,
                Action=[cw.PutMetricData],
                # PutMetricData has no resource-level permissions; the namespace condition
                # scopes it (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html).
                Resource=["*"],
                Condition=Condition(StringEquals("cloudwatch:namespace", Sub(METRICS_NAMESPACE))),
            ),
        ],
    )


def agent_grant(logical_id: str, role_names: list, depends_on: list | None = None) -> iam.PolicyType:
    """The CloudWatch agent's policy on the given roles (an ``AWS::IAM::Policy``)."""
    policy = grant(logical_id, agent_policy(), role_names)
    if depends_on:
        policy.DependsOn = depends_on
    return policy


def build(tier: Tier) -> None:
    tier.stack_name()
    key_arn = tier.input("KmsKeyArn")
    retention = tier.param("LogRetentionDays")
    groups = []
    suffix = Select(0, Split("-", Select(2, Split("/", Ref("AWS::StackId")))))
    prefix = Join("/", [Sub(LOG_GROUP_PREFIX), suffix])
    for family in LOG_FAMILIES:
        # Kept when the stack goes (audit logs outlive it); they expire by retention.
        group = tier.keep(logs.LogGroup(
            log_group_logical_id(family),
            LogGroupName=Sub(f"${{Prefix}}/{family}", Prefix=prefix),
            RetentionInDays=retention,
            KmsKeyId=key_arn,
        ))
        groups.append(group.title)
    # The GitLab servers' roles (application, and Sidekiq's when it has servers of its own);
    # other roles get the same grant in their own tier (agent_grant), made from the stack
    # name alone.
    tier.add(agent_grant("AppCloudWatchAgent", gitlab_roles(tier), depends_on=list(groups)))
    tier.output("LogGroupPrefix", prefix, "Prefix of the stack's CloudWatch log groups.",
                public=True)
    # What the servers' user data carries: the prefix's last part only (the boot reads the
    # parent stack's name from its bundle parameter's name, lib/cloudwatch.sh).
    tier.output("LogGroupId", suffix, "Last part of the log group prefix (8 characters of this stack's id).")
    tier.output("MetricsNamespace", Sub(METRICS_NAMESPACE),
                "CloudWatch namespace of the servers' memory, disk and backup metrics.")
