"""DNS tier: "Configure DNS for Load Balancer", when a hosted zone is given.

Builds a Route 53 alias A record for the GitLab domain in an existing hosted
zone, pointing at the load balancer (simple routing, target health not
evaluated, as in the guide). The parent creates this stack only when
``HostedZoneId`` is not empty; otherwise the domain is left to the operator.

Exposes: ``DnsRecordName``.
"""

from __future__ import annotations

from troposphere import Ref, route53

from gitlab_cfn.compile.tier import Tier

DESCRIPTION = "gitlab-cfn dns: Route 53 alias record for GitLab's domain."


def build(tier: Tier) -> None:
    tier.skip_when = ("HasHostedZone", "HostedZoneId", "")
    record = tier.add(route53.RecordSetType(
        "GitLabRecord",
        HostedZoneId=tier.param("HostedZoneId"),
        Name=tier.param("DomainName"),
        Type="A",
        AliasTarget=route53.AliasTarget(
            HostedZoneId=tier.input("LoadBalancerHostedZoneId"),
            DNSName=tier.input("LoadBalancerDNSName"),
            EvaluateTargetHealth=False,
        ),
    ))
    tier.output("DnsRecordName", Ref(record), "Route 53 record of GitLab's domain.", public=True)
