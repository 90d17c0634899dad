"""E9008: a server launched from the GitLab image asks for a root volume at least the image's size."""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from gitlab_cfn.compile.images import GITLAB_IMAGE_PARAMETERS, IMAGE_ROOT_GIB
from gitlab_cfn.verify.lint_rules._helpers import ref_name

ROOT_DEVICES = ("/dev/sda1", "/dev/xvda")


def _data(resource):
    props = resource.get("Properties", {}) or {}
    if resource["Type"] == "AWS::EC2::LaunchTemplate":
        return props.get("LaunchTemplateData", {}) or {}
    return props


class RootVolumeCoversImage(CloudFormationLintRule):
    id = "E9008"
    shortdesc = "Root volumes are at least the GitLab image's size"
    description = (f"An instance or launch template launched from the GitLab image ({', '.join(GITLAB_IMAGE_PARAMETERS)}) "
                   f"sizes its root volume at least {IMAGE_ROOT_GIB} GiB, the image's snapshot: a literal, or a "
                   "parameter whose MinValue is at least that; EC2 refuses a smaller one")
    source_url = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_EbsBlockDevice.html"
    tags = ["gitlab-cfn", "ec2", "ebs"]

    def _size_problem(self, cfn, size):
        if size is None:
            return None   # the image's own size
        if isinstance(size, (int, str)) and str(size).isdigit():
            return None if int(size) >= IMAGE_ROOT_GIB else f"{size} GiB"
        name = ref_name(size)
        if name is not None and name in cfn.template.get("Parameters", {}):
            low = cfn.template["Parameters"][name].get("MinValue")
            if low is not None and str(low).isdigit() and int(low) >= IMAGE_ROOT_GIB:
                return None
            return f"parameter {name} with MinValue {low if low is not None else '(none)'}"
        return f"{size!r}, which cannot be checked"

    def match(self, cfn):
        matches = []
        resources = cfn.get_resources(["AWS::EC2::LaunchTemplate", "AWS::EC2::Instance"])
        templates = {n: r for n, r in resources.items() if r["Type"] == "AWS::EC2::LaunchTemplate"}
        # Which launch templates launch the GitLab image: their own ImageId, or an instance's.
        launched = {n for n, r in templates.items() if ref_name(_data(r).get("ImageId")) in GITLAB_IMAGE_PARAMETERS}
        for name, resource in resources.items():
            if resource["Type"] != "AWS::EC2::Instance":
                continue
            spec = _data(resource).get("LaunchTemplate") or {}
            template = ref_name(spec.get("LaunchTemplateId")) if isinstance(spec, dict) else None
            image = _data(resource).get("ImageId")
            if ref_name(image) in GITLAB_IMAGE_PARAMETERS or (image is None and template in launched):
                if template in templates:
                    launched.add(template)
                matches += self._check(cfn, name, resource)
        for name in sorted(launched):
            matches += self._check(cfn, name, templates[name])
        return matches

    def _check(self, cfn, name, resource):
        matches = []
        path = ["Resources", name, "Properties"] + (
            ["LaunchTemplateData"] if resource["Type"] == "AWS::EC2::LaunchTemplate" else [])
        for i, device in enumerate(_data(resource).get("BlockDeviceMappings", []) or []):
            if not isinstance(device, dict) or device.get("DeviceName") not in ROOT_DEVICES:
                continue
            ebs = device.get("Ebs") or {}
            problem = self._size_problem(cfn, ebs.get("VolumeSize"))
            if problem:
                matches.append(RuleMatch(path + ["BlockDeviceMappings", i, "Ebs", "VolumeSize"],
                                         f"{name}: root volume {device.get('DeviceName')} must be at least the GitLab "
                                         f"image's {IMAGE_ROOT_GIB} GiB (got {problem})"))
        return matches
