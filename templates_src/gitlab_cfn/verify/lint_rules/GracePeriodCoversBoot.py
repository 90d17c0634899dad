"""E9009: ELB health checks never count against a server that is still booting."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.verify.lint_rules._helpers import duration_seconds, ref_name


class GracePeriodCoversBoot(CloudFormationLintRule):
    id = "E9009"
    shortdesc = "The health-check grace period covers the boot"
    description = ("An Auto Scaling group with ELB health checks has a HealthCheckGracePeriod at least its "
                   "CreationPolicy signal timeout and its rolling update's PauseTime: a server still within its "
                   "signal timeout must not be replaced as unhealthy")
    source_url = "https://docs.aws.amazon.com/autoscaling/ec2/userguide/health-check-grace-period.html"
    tags = ["gitlab-cfn", "autoscaling"]

    def _grace(self, cfn, value):
        if value is None:
            return 0   # the API's default
        if isinstance(value, (int, str)) and str(value).isdigit():
            return int(value)
        name = ref_name(value)
        low = cfn.template.get("Parameters", {}).get(name, {}).get("MinValue") if name else None
        return int(low) if low is not None and str(low).isdigit() else None

    def match(self, cfn):
        matches = []
        for name, resource in cfn.get_resources(["AWS::AutoScaling::AutoScalingGroup"]).items():
            props = resource.get("Properties", {}) or {}
            if props.get("HealthCheckType") != "ELB":
                continue
            grace = self._grace(cfn, props.get("HealthCheckGracePeriod"))
            path = ["Resources", name, "Properties"]
            if grace is None:
                matches.append(RuleMatch(path, f"{name}: HealthCheckGracePeriod must be a number of seconds "
                                               "(or a parameter with a MinValue) to be checked against the boot"))
                continue
            waits = {
                "CreationPolicy signal timeout": ((resource.get("CreationPolicy") or {}).get("ResourceSignal")
                                                  or {}).get("Timeout"),
                "rolling update PauseTime": ((resource.get("UpdatePolicy") or {}).get("AutoScalingRollingUpdate")
                                             or {}).get("PauseTime"),
            }
            for what, duration in waits.items():
                if duration is None:
                    continue
                seconds = duration_seconds(duration)
                if seconds is None:
                    matches.append(RuleMatch(path, f"{name}: {what} {duration!r} is not an ISO 8601 duration"))
                elif grace < seconds:
                    matches.append(RuleMatch(path + ["HealthCheckGracePeriod"],
                                             f"{name}: HealthCheckGracePeriod {grace} s is shorter than its {what} "
                                             f"{duration} ({seconds} s): servers still booting would be replaced"))
        return matches
