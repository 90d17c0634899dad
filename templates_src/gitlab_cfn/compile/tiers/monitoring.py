"""Monitoring tier: alarms to an e-mail topic, and one dashboard per stack.

Builds an SNS topic encrypted with the stack's key (CloudWatch alarms may publish to
it: the key policy lets ``cloudwatch.amazonaws.com`` use the key, see
``policies.kms_key_policy``), subscribed by ``AlarmEmail`` when one is given; the
alarms below, each notifying the topic when it fires and when it recovers; and a
CloudWatch dashboard with the same figures.

===========================  ======================================================  ====================
alarm                        metric                                                  fires when
===========================  ======================================================  ====================
LoadBalancerUnhealthyAlarm   AWS/ELB UnHealthyHostCount                              > 0 for 5 minutes
LoadBalancer5xxAlarm         (HTTPCode_Backend_5XX + HTTPCode_ELB_5XX) / RequestCount > 5 % for 10 minutes
AppInServiceAlarm            GroupDesiredCapacity - GroupInServiceInstances          > 0 for 15 minutes
DatabaseCpuAlarm             AWS/RDS CPUUtilization                                  > 80 % for 15 minutes
DatabaseStorageAlarm         FreeStorageSpace / DBAllocatedStorage                   < 10 % free
CacheMemoryAlarm             AWS/ElastiCache DatabaseMemoryUsagePercentage (primary)  > 80 % for 15 minutes
CacheEvictionsAlarm          AWS/ElastiCache Evictions (primary)                     > 0 for 15 minutes
GitalyDiskAlarm              the agent's disk_used_percent of the Gitaly data path   > 80 % (20 % free)
                             (one per Gitaly server: Gitaly<n>DiskAlarm per cluster node)
BackupAlarm                  BackupSucceeded of the nightly backup (lib/backup.sh)   < 1 in 27 hours (ALARM),
                                                                                     none in 27 hours
                                                                                     (INSUFFICIENT_DATA, notified)
===========================  ======================================================  ====================

The Gitaly disk metric is the CloudWatch agent's (``scripts/lib/cloudwatch.sh``),
aggregated over the dimensions InstanceId, Stack, Role and path in the stack's namespace.

Exposes: ``AlarmTopicArn``, ``DashboardName``.
"""

from __future__ import annotations

import json

from troposphere import Equals, If, Not, NoValue, Ref, Sub, cloudwatch, sns

from gitlab_cfn.compile.naming import tags
from gitlab_cfn.compile.observability import GITALY_DATA_PATH
from gitlab_cfn.compile.tier import Tier

DESCRIPTION = "gitlab-cfn monitoring: alarms to an e-mail topic, and a dashboard."

FIVE_XX_PERCENT = 5
CPU_PERCENT = 80
FREE_STORAGE_PERCENT = 10
CACHE_MEMORY_PERCENT = 80
GITALY_DISK_USED_PERCENT = 80
# The nightly backup's window (BackupAlarm): a day, and up to 3 hours' change in how long
# a backup takes. An alarm of 1-hour periods may look back up to 7 days (PutMetricAlarm:
# Period x EvaluationPeriods at most 604,800 seconds).
BACKUP_WINDOW_HOURS = 27
# ElastiCache names the member clusters of a replication group <group id>-001, -002...;
# the first is the primary at creation
# (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Replication.CreatingReplGroup.NoExistingCluster.Classic.html).
PRIMARY_SUFFIX = "-001"


def _dim(name, value) -> cloudwatch.MetricDimension:
    return cloudwatch.MetricDimension(Name=name, Value=value)


def _stat(query_id, namespace, metric, dims, stat, period=60, visible=False) -> cloudwatch.MetricDataQuery:
    return cloudwatch.MetricDataQuery(
        Id=query_id, ReturnData=visible,
        MetricStat=cloudwatch.MetricStat(
            Metric=cloudwatch.Metric(Namespace=namespace, MetricName=metric, Dimensions=dims),
            Period=period, Stat=stat))


def _alarm(tier: Tier, logical_id: str, description: str, topic, **props) -> cloudwatch.Alarm:
    actions = [Ref(topic)]
    return tier.add(cloudwatch.Alarm(
        logical_id,
        AlarmDescription=Sub(f"gitlab-cfn ${{ParentStackName}}: {description}"),
        AlarmActions=actions,
        OKActions=actions,
        **props,
    ))


def alarms(tier: Tier, topic) -> dict[str, cloudwatch.Alarm]:
    lb = [_dim("LoadBalancerName", tier.input("LoadBalancerName"))]
    group = [_dim("AutoScalingGroupName", tier.input("AutoScalingGroupName"))]
    db = [_dim("DBInstanceIdentifier", tier.input("DatabaseInstanceId"))]
    cache = [_dim("CacheClusterId", Sub(f"${{RedisReplicationGroupId}}{PRIMARY_SUFFIX}"))]
    tier.input("RedisReplicationGroupId")
    namespace = tier.input("MetricsNamespace")
    made = {}
    made["LoadBalancerUnhealthyAlarm"] = _alarm(
        tier, "LoadBalancerUnhealthyAlarm", "a GitLab server fails the load balancer's health check", topic,
        Namespace="AWS/ELB", MetricName="UnHealthyHostCount", Dimensions=lb, Statistic="Maximum",
        Period=60, EvaluationPeriods=5, Threshold=0, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching")
    made["LoadBalancer5xxAlarm"] = _alarm(
        tier, "LoadBalancer5xxAlarm", f"more than {FIVE_XX_PERCENT}% of requests answered 5xx", topic,
        Metrics=[
            _stat("backend", "AWS/ELB", "HTTPCode_Backend_5XX", lb, "Sum", 300),
            _stat("elb", "AWS/ELB", "HTTPCode_ELB_5XX", lb, "Sum", 300),
            _stat("requests", "AWS/ELB", "RequestCount", lb, "Sum", 300),
            cloudwatch.MetricDataQuery(
                Id="rate", ReturnData=True, Label="5xx answers (%)",
                Expression="100 * (FILL(backend, 0) + FILL(elb, 0)) / FILL(requests, 1)"),
        ],
        EvaluationPeriods=2, Threshold=FIVE_XX_PERCENT, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching")
    made["AppInServiceAlarm"] = _alarm(
        tier, "AppInServiceAlarm", "fewer GitLab servers in service than desired", topic,
        Metrics=[
            _stat("desired", "AWS/AutoScaling", "GroupDesiredCapacity", group, "Maximum", 300),
            _stat("inservice", "AWS/AutoScaling", "GroupInServiceInstances", group, "Minimum", 300),
            cloudwatch.MetricDataQuery(Id="missing", ReturnData=True, Label="servers missing",
                                       Expression="desired - inservice"),
        ],
        EvaluationPeriods=3, Threshold=0, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching")
    made["DatabaseCpuAlarm"] = _alarm(
        tier, "DatabaseCpuAlarm", f"database CPU above {CPU_PERCENT}%", topic,
        Namespace="AWS/RDS", MetricName="CPUUtilization", Dimensions=db, Statistic="Average",
        Period=300, EvaluationPeriods=3, Threshold=CPU_PERCENT, ComparisonOperator="GreaterThanThreshold")
    made["DatabaseStorageAlarm"] = _alarm(
        tier, "DatabaseStorageAlarm", f"database storage less than {FREE_STORAGE_PERCENT}% free", topic,
        Metrics=[
            _stat("free", "AWS/RDS", "FreeStorageSpace", db, "Minimum", 300),
            cloudwatch.MetricDataQuery(
                Id="freepercent", ReturnData=True, Label="free storage (%)",
                # FreeStorageSpace is in bytes; DBAllocatedStorage in GiB.
                Expression=Sub("100 * free / (${DBAllocatedStorage} * 1073741824)",
                               DBAllocatedStorage=tier.param("DBAllocatedStorage"))),
        ],
        EvaluationPeriods=1, Threshold=FREE_STORAGE_PERCENT, ComparisonOperator="LessThanThreshold")
    made["CacheMemoryAlarm"] = _alarm(
        tier, "CacheMemoryAlarm", f"Redis memory above {CACHE_MEMORY_PERCENT}% of its maximum", topic,
        Namespace="AWS/ElastiCache", MetricName="DatabaseMemoryUsagePercentage", Dimensions=cache,
        Statistic="Maximum", Period=300, EvaluationPeriods=3, Threshold=CACHE_MEMORY_PERCENT,
        ComparisonOperator="GreaterThanThreshold")
    made["CacheEvictionsAlarm"] = _alarm(
        tier, "CacheEvictionsAlarm", "Redis evicts keys (memory full)", topic,
        Namespace="AWS/ElastiCache", MetricName="Evictions", Dimensions=cache,
        Statistic="Sum", Period=300, EvaluationPeriods=3, Threshold=0,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
    # One alarm per Gitaly server (the single server, each Gitaly Cluster node), on the
    # agent's per-server aggregation (InstanceId, Stack, Role, path: scripts/lib/cloudwatch.sh).
    cfg = tier.cfg
    servers = []
    if not cfg.cluster or cfg.gitaly.keep_single_server:
        servers.append(("Gitaly", "the Gitaly data volume"))
    if cfg.cluster:
        servers += [(f"Gitaly{n}", f"the data volume of Gitaly server gitaly-{n}")
                    for n in range(1, cfg.gitaly.nodes + 1)]
    for prefix, what in servers:
        made[f"{prefix}DiskAlarm"] = _alarm(
            tier, f"{prefix}DiskAlarm",
            f"{what} is more than {GITALY_DISK_USED_PERCENT}% full", topic,
            Namespace=namespace, MetricName="disk_used_percent",
            Dimensions=[_dim("InstanceId", tier.input(f"{prefix}InstanceId")), _dim("Stack", tier.stack_name()),
                        _dim("Role", "gitaly"), _dim("path", GITALY_DATA_PATH)],
            Statistic="Maximum", Period=300, EvaluationPeriods=1, Threshold=GITALY_DISK_USED_PERCENT,
            ComparisonOperator="GreaterThanThreshold")
    # scripts/lib/backup.sh publishes BackupSucceeded (1 or 0) after each nightly run. The
    # alarm looks at the last BACKUP_WINDOW_HOURS hours, an hour at a time (a day and the
    # changes in a backup's duration: the nightly runs end some 24 hours apart):
    # - ALARM when a run reported 0 (failed) in that window;
    # - INSUFFICIENT_DATA when no run reported anything in it (late, or the schedule stopped):
    #   missing data is "missing", and with every data point of the evaluation range missing
    #   the alarm goes to INSUFFICIENT_DATA
    #   (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-missing-data.html),
    #   which notifies the topic (InsufficientDataActions) as ALARM does.
    # A new alarm starts in INSUFFICIENT_DATA ("When this operation creates an alarm, the alarm
    # state is immediately set to INSUFFICIENT_DATA", PutMetricAlarm) and actions run on a change
    # of state only ("breaching" missing data fired it at once on every new stack). So a
    # schedule broken from day one would never be heard: the first application server of a new
    # stack runs one real backup at the end of its boot (scripts/lib/backup.sh,
    # start_first_backup), whose result turns the alarm OK (or ALARM) within the hour; nightly
    # runs that never follow then leave the window empty and turn it INSUFFICIENT_DATA, which
    # notifies. tests/test_backup_alarm.py plays these against CloudWatch's documented evaluation.
    made["BackupAlarm"] = _alarm(
        tier, "BackupAlarm",
        f"the nightly GitLab backup failed, or none reported for {BACKUP_WINDOW_HOURS} hours", topic,
        Namespace=namespace, MetricName="BackupSucceeded",
        Dimensions=[_dim("Stack", tier.stack_name())],
        Statistic="Minimum", Period=3600, EvaluationPeriods=BACKUP_WINDOW_HOURS, DatapointsToAlarm=1,
        Threshold=1, ComparisonOperator="LessThanThreshold", TreatMissingData="missing",
        InsufficientDataActions=[Ref(topic)])
    return made


def dashboard_body() -> dict:
    """The dashboard's widgets; ``${Name}`` placeholders are filled by Fn::Sub."""
    def graph(title, metrics, stat="Sum", y_max=None):
        props = {"title": title, "region": "${AWS::Region}", "view": "timeSeries", "stacked": False,
                 "period": 300, "stat": stat, "metrics": metrics}
        if y_max is not None:
            props["yAxis"] = {"left": {"min": 0, "max": y_max}}
        return {"type": "metric", "width": 12, "height": 6, "properties": props}

    return {"widgets": [
        {"type": "alarm", "width": 24, "height": 3,
         "properties": {"title": "Alarms", "alarms": ["${Alarms}"]}},
        graph("Load balancer: requests and 5xx answers", [
            ["AWS/ELB", "RequestCount", "LoadBalancerName", "${LoadBalancerName}"],
            [".", "HTTPCode_Backend_5XX", ".", "."],
            [".", "HTTPCode_ELB_5XX", ".", "."]]),
        graph("Load balancer: healthy and unhealthy servers", [
            ["AWS/ELB", "HealthyHostCount", "LoadBalancerName", "${LoadBalancerName}"],
            [".", "UnHealthyHostCount", ".", "."]], stat="Maximum"),
        graph("GitLab servers: desired and in service", [
            ["AWS/AutoScaling", "GroupDesiredCapacity", "AutoScalingGroupName", "${AutoScalingGroupName}"],
            [".", "GroupInServiceInstances", ".", "."]], stat="Maximum"),
        graph("GitLab servers: CPU and memory (%)", [
            ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", "${AutoScalingGroupName}"],
            ["${MetricsNamespace}", "mem_used_percent", "Stack", "${ParentStackName}", "Role", "gitlab-app"]],
            stat="Average", y_max=100),
        graph("Database: CPU (%)", [
            ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", "${DatabaseInstanceId}"]],
            stat="Average", y_max=100),
        graph("Database: free storage (bytes)", [
            ["AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier", "${DatabaseInstanceId}"]], stat="Minimum"),
        graph("Redis: memory (%) and evictions", [
            ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", "${CachePrimary}"],
            [".", "Evictions", ".", ".", {"stat": "Sum", "yAxis": "right"}]], stat="Maximum"),
        graph("Gitaly: data volume used (%)", [
            ["${MetricsNamespace}", "disk_used_percent", "Stack", "${ParentStackName}", "Role", "gitaly",
             "path", GITALY_DATA_PATH]], stat="Maximum", y_max=100),
    ]}


def build(tier: Tier) -> None:
    tier.stack_name()
    email = tier.param("AlarmEmail")
    tier.template.add_condition("AlarmEmailGiven", Not(Equals(email, "")))
    topic = tier.add(sns.Topic(
        "AlarmTopic",
        DisplayName="GitLab alarms",
        KmsMasterKeyId=tier.input("KmsKeyArn"),
        Subscription=If("AlarmEmailGiven", [sns.Subscription(Protocol="email", Endpoint=email)], NoValue),
        Tags=tags("alarms"),
    ))
    made = alarms(tier, topic)
    body = json.dumps(dashboard_body(), sort_keys=True)
    # The alarm widget takes ARNs; one list item per alarm.
    body = body.replace('"${Alarms}"', ", ".join(f'"${{{name}.Arn}}"' for name in made))
    dashboard = tier.add(cloudwatch.Dashboard(
        "Dashboard",
        DashboardBody=Sub(body, CachePrimary=Sub(f"${{RedisReplicationGroupId}}{PRIMARY_SUFFIX}")),
    ))
    tier.output("AlarmTopicArn", Ref(topic), "SNS topic the alarms notify (subscribe more endpoints to it).",
                public=True)
    tier.output("DashboardName", Ref(dashboard), "CloudWatch dashboard of the stack.", public=True)
