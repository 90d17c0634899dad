"""E9004: every security group rule is described; only the load balancer's web ports face the world."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

WORLD = {"0.0.0.0/0", "::/0"}
PUBLIC_GROUP = "LoadBalancerSecurityGroup"
PUBLIC_PORTS = {80, 443}


def _target(rule):
    group = rule.get("GroupId")
    if isinstance(group, dict):
        if "Fn::GetAtt" in group:
            return group["Fn::GetAtt"][0]
        if "Ref" in group:
            return group["Ref"]
    return group


class SecurityGroupRules(CloudFormationLintRule):
    id = "E9004"
    shortdesc = "Security group rules are described and not open to the world"
    description = (f"Every ingress and egress rule has a Description; ingress from 0.0.0.0/0 or ::/0 is "
                   f"allowed only on ports 80 and 443 of {PUBLIC_GROUP}")
    source_url = "https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html"
    tags = ["gitlab-cfn", "ec2", "securitygroup"]

    def _check(self, name, path, rule, target, ingress):
        matches = []
        if not isinstance(rule.get("Description"), str) or not rule["Description"].strip():
            matches.append(RuleMatch(path, f"{name}: every security group rule needs a Description"))
        source = rule.get("CidrIp") or rule.get("CidrIpv6")
        if ingress and isinstance(source, str) and source in WORLD:
            ports = {rule.get("FromPort"), rule.get("ToPort")}
            ports = {int(p) for p in ports if p is not None and str(p).lstrip("-").isdigit()}
            if target != PUBLIC_GROUP or not ports or not ports <= PUBLIC_PORTS or rule.get("FromPort") != rule.get("ToPort"):
                matches.append(RuleMatch(path, f"{name}: ingress from {source} is only allowed on ports 80 and "
                                               f"443 of {PUBLIC_GROUP}"))
        return matches

    def match(self, cfn):
        matches = []
        for name, res in cfn.get_resources(["AWS::EC2::SecurityGroup"]).items():
            props = res.get("Properties", {})
            for key, ingress in (("SecurityGroupIngress", True), ("SecurityGroupEgress", False)):
                for i, rule in enumerate(props.get(key, []) or []):
                    if isinstance(rule, dict):
                        matches += self._check(name, ["Resources", name, "Properties", key, i], rule, name, ingress)
        for name, res in cfn.get_resources(["AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"]).items():
            props = res.get("Properties", {})
            ingress = res["Type"].endswith("Ingress")
            matches += self._check(name, ["Resources", name, "Properties"], props, _target(props), ingress)
        return matches
