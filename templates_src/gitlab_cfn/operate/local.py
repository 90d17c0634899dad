"""Values for a deployment on the local stand-in, where the newcomer has nothing yet.

Fills the parent's required parameters the person did not give: two or three
Availability Zones of the region, a domain under ``.test``, an ACM certificate
requested for it, the documentation address range for SSH, a key pair, and the
GitLab AMI parameter (and any other image id, such as GitalyAmiId) pointing at the
stand-in's GitLab image. Every value filled
in is reported; nothing here runs against a real AWS endpoint.
"""

from __future__ import annotations

from gitlab_cfn.compile.catalog import GITLAB_AMI_PARAMETER
from gitlab_cfn.operate.aws import Aws

DEMO_DOMAIN = "gitlab.example.test"
DEMO_CIDR = "203.0.113.0/24"      # TEST-NET-3, documentation only
DEMO_KEY = "gitlab-cfn-local"
STANDIN_GITLAB_AMI = "ami-0a11ab5e1c0de1851"


def fill(aws: Aws, region: str, template: dict, given: dict[str, str], az_count: int,
         skip: set[str] = frozenset()) -> dict[str, str]:
    """The demo values of the parameters not given and not in ``skip`` (those the stack
    already has: an update reuses them). Filling is repeatable: the same certificate,
    key pair and image parameter are found again in a persistent stand-in session, so a
    second ``deploy --local`` changes nothing that was not asked for."""
    definitions = template.get("Parameters", {})
    values: dict[str, str] = {}

    def wanted(name: str) -> bool:
        return name in definitions and name not in given and name not in skip

    if wanted("AvailabilityZones"):
        zones = aws.client("ec2", region).describe_availability_zones()["AvailabilityZones"]
        values["AvailabilityZones"] = ",".join(sorted(z["ZoneName"] for z in zones)[:az_count])
    if wanted("DomainName"):
        values["DomainName"] = DEMO_DOMAIN
    if wanted("CertificateArn"):
        domain = given.get("DomainName", DEMO_DOMAIN)
        acm = aws.client("acm", region)
        known = [c["CertificateArn"] for c in acm.list_certificates().get("CertificateSummaryList", [])
                 if c.get("DomainName") == domain]
        values["CertificateArn"] = known[0] if known else acm.request_certificate(DomainName=domain)["CertificateArn"]
    for name in ("GitSshCIDR", "RemoteAccessCIDR"):
        if wanted(name):
            values[name] = DEMO_CIDR
    if wanted("KeyPairName"):
        ec2 = aws.client("ec2", region)
        if not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [DEMO_KEY]}])["KeyPairs"]:
            ec2.create_key_pair(KeyName=DEMO_KEY)
        values["KeyPairName"] = DEMO_KEY
    ami = definitions.get("GitLabAmiId", {})
    if "GitLabAmiId" in definitions:
        if ami.get("Type", "").startswith("AWS::SSM::Parameter::Value"):
            name = given.get("GitLabAmiId", ami.get("Default", GITLAB_AMI_PARAMETER))
            ssm = aws.client("ssm", region)
            if not ssm.get_parameters(Names=[name])["Parameters"]:
                ssm.put_parameter(Name=name, Value=STANDIN_GITLAB_AMI, Type="String", DataType="aws:ec2:image")
        elif wanted("GitLabAmiId"):
            values["GitLabAmiId"] = STANDIN_GITLAB_AMI
    # Other pinned images (GitalyAmiId, ...): the stand-in's GitLab image too.
    for name, definition in definitions.items():
        if definition.get("Type") == "AWS::EC2::Image::Id" and name.endswith("AmiId") and wanted(name):
            values[name] = STANDIN_GITLAB_AMI
    return values
