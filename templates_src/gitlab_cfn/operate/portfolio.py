"""``gitlab-cfn catalog publish``: a published version becomes a version of the product.

The portfolio stack (``service-catalog.template.yaml``, launched once per region)
created the product with its first version. Each later ``gitlab-cfn publish
--version V`` is added here as a provisioning artifact named ``V`` whose
template is that version's ``product.template.yaml`` (the main template with
its location filled in), in every region given; older
versions can be marked deprecated (still running, no longer offered for new
launches).

Everything is checked in every region before anything changes: the portfolio
stack exists and is complete, the version is published at the URL its stacks
will read. Adding a version that is already there with the same template does
nothing; the same name with another template is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from gitlab_cfn.compile.naming import template_url
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.progress import Progress
from gitlab_cfn.operate.publish import PRODUCT, PRODUCT_TEMPLATE, PublishRequest

COMPLETE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")
ARTIFACT_TYPE = "CLOUD_FORMATION_TEMPLATE"


@dataclass
class CatalogRequest:
    portfolio_stack: str
    publish: PublishRequest
    deprecate_older: bool = False


@dataclass
class RegionResult:
    region: str
    product_id: str
    version: str
    artifact_id: str
    added: bool
    template_url: str
    deprecated: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)   # every version after the change, oldest first


@dataclass
class _Plan:
    region: str
    product_id: str
    url: str
    existing: dict | None          # the artifact already named like the version, if any
    artifacts: list[dict]


def _product_id(cfn, stack: str, region: str) -> str:
    try:
        (found,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise ConfigError(f"--portfolio-stack: no stack {stack} in {region}; launch "
                              "templates/service-catalog.template.yaml there first") from None
        raise
    if found["StackStatus"] not in COMPLETE:
        raise ConfigError(f"--portfolio-stack: stack {stack} in {region} is {found['StackStatus']}, not complete")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    if "ProductId" not in outputs:
        raise ConfigError(f"--portfolio-stack: stack {stack} in {region} has no ProductId output; "
                          "is it a gitlab-cfn portfolio stack?")
    return outputs["ProductId"]


def _published(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return False
        raise
    return True


def _plan(request: CatalogRequest, aws: Aws, region: str) -> _Plan:
    pub = request.publish
    product_id = _product_id(aws.client("cloudformation", region), request.portfolio_stack, region)
    bucket, bucket_region = pub.bucket_for(region)
    url = template_url(bucket, bucket_region, pub.key_prefix, PRODUCT)
    key = f"{pub.key_prefix}{PRODUCT_TEMPLATE}"
    if not _published(aws.client("s3", bucket_region), bucket, key):
        raise ConfigError(f"--version: {pub.version} is not published at s3://{bucket}/{key}; "
                          "run 'gitlab-cfn publish' with the same --bucket, --prefix and --version first")
    sc = aws.client("servicecatalog", region)
    artifacts = sc.list_provisioning_artifacts(ProductId=product_id)["ProvisioningArtifactDetails"]
    existing = next((a for a in artifacts if a["Name"] == pub.version), None)
    if existing is not None:
        info = sc.describe_provisioning_artifact(ProductId=product_id, ProvisioningArtifactId=existing["Id"])["Info"]
        if info.get("LoadTemplateFromURL") != url:
            raise ConfigError(f"--version: product {product_id} in {region} already has a version {pub.version} "
                              f"with another template ({info.get('LoadTemplateFromURL')}); publish a new --version")
    return _Plan(region, product_id, url, existing, artifacts)


def add_version(request: CatalogRequest, aws: Aws, progress: Progress) -> list[RegionResult]:
    pub = request.publish
    # Every region is checked before any region changes.
    plans = [_plan(request, aws, region) for region in pub.regions]
    results = []
    for plan in plans:
        sc = aws.client("servicecatalog", plan.region)
        if plan.existing is not None:
            artifact_id, added = plan.existing["Id"], False
            progress.done(f"{plan.region}: version {pub.version} is already in product {plan.product_id}")
        else:
            token = hashlib.sha256(f"{plan.product_id}:{pub.version}:{plan.url}".encode()).hexdigest()[:32]
            created = sc.create_provisioning_artifact(
                ProductId=plan.product_id, IdempotencyToken=token,
                Parameters={"Name": pub.version, "Description": f"gitlab-cfn templates {pub.version}",
                            "Info": {"LoadTemplateFromURL": plan.url}, "Type": ARTIFACT_TYPE})
            artifact_id, added = created["ProvisioningArtifactDetail"]["Id"], True
            progress.done(f"{plan.region}: added version {pub.version} ({artifact_id}) to product {plan.product_id}")
        deprecated = []
        if request.deprecate_older:
            for artifact in plan.artifacts:
                if artifact["Id"] != artifact_id and artifact.get("Guidance", "DEFAULT") != "DEPRECATED":
                    sc.update_provisioning_artifact(ProductId=plan.product_id, ProvisioningArtifactId=artifact["Id"],
                                                    Guidance="DEPRECATED")
                    deprecated.append(artifact["Name"])
            if deprecated:
                progress.done(f"{plan.region}: deprecated {', '.join(deprecated)}")
        versions = [a["Name"] for a in sc.list_provisioning_artifacts(ProductId=plan.product_id)[
            "ProvisioningArtifactDetails"]]
        results.append(RegionResult(plan.region, plan.product_id, pub.version, artifact_id, added, plan.url,
                                    deprecated, versions))
    return results


def table(results: list[RegionResult]) -> str:
    lines = ["region\tproduct\tversion\tartifact\tstatus\tversions"]
    for r in results:
        status = "added" if r.added else "already there"
        if r.deprecated:
            status += f"; deprecated {','.join(r.deprecated)}"
        lines.append(f"{r.region}\t{r.product_id}\t{r.version}\t{r.artifact_id}\t{status}\t{','.join(r.versions)}")
    return "\n".join(lines) + "\n"


# -- the portfolio stack ---------------------------------------------------------------------------

@dataclass
class PortfolioRequest:
    stack_name: str
    publish: PublishRequest
    principal_arn: str
    portfolio_name: str | None = None
    provider_name: str | None = None
    poll: float = 10.0
    timeout: float = 30 * 60


@dataclass
class PortfolioResult:
    region: str
    stack_id: str
    status: str
    created: bool
    outputs: dict[str, str] = field(default_factory=dict)


def deploy_portfolio(request: PortfolioRequest, aws: Aws, progress: Progress) -> list[PortfolioResult]:
    """Create the portfolio stack in each region from the published ``service-catalog.template.yaml``.

    Every region is checked first (the template is published there; the stack does not
    exist or is complete), then the stacks are created, with termination protection
    like the GitLab stack. A complete portfolio stack is left as it is: later versions
    are added with ``catalog publish``."""
    from gitlab_cfn.compile.compiler import PORTFOLIO
    from gitlab_cfn.errors import CheckFailed
    from gitlab_cfn.operate.deploy import (
        CAPABILITIES,
        TERMINAL_OK,
        _existing,
        _outputs,
        check_stack_name,
        first_failure,
        wait,
    )

    check_stack_name(request.stack_name, "--portfolio-stack")
    if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:(role|group)/[\w+=,.@/-]+", request.principal_arn or ""):
        raise ConfigError(f"--principal-arn: {request.principal_arn!r} is not an IAM role or group ARN "
                          "(arn:aws:iam::123456789012:role/Developers)")
    existing: dict[str, dict | None] = {}
    urls: dict[str, str] = {}
    for region in request.publish.regions:
        bucket, bucket_region = request.publish.bucket_for(region)
        key = f"{request.publish.key_prefix}templates/{PORTFOLIO}.template.yaml"
        try:
            aws.client("s3", bucket_region).head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise
            raise ConfigError(f"--version: {request.publish.version} is not published in s3://{bucket}/{key} "
                              f"({region}); run gitlab-cfn publish first") from None
        urls[region] = template_url(bucket, bucket_region, request.publish.key_prefix, PORTFOLIO)
        found = _existing(aws.client("cloudformation", region), request.stack_name)
        if found and found["StackStatus"] not in COMPLETE:
            raise ConfigError(f"--portfolio-stack: {request.stack_name} in {region} is {found['StackStatus']}; "
                              "nothing was changed")
        existing[region] = found
    results = []
    for region in request.publish.regions:
        cfn = aws.client("cloudformation", region)
        if existing[region]:
            stack_id = existing[region]["StackId"]
            progress.done(f"{region}: {request.stack_name} is already deployed "
                          f"({existing[region]['StackStatus']}); add versions with gitlab-cfn catalog publish")
            results.append(PortfolioResult(region, stack_id, existing[region]["StackStatus"], False,
                                           _outputs(cfn, stack_id)))
            continue
        bucket, bucket_region = request.publish.bucket_for(region)
        values = {"ProductVersion": request.publish.version, "TemplateBucketName": bucket,
                  "TemplateBucketRegion": bucket_region, "TemplateKeyPrefix": request.publish.key_prefix,
                  "PrincipalArn": request.principal_arn}
        if request.portfolio_name:
            values["PortfolioName"] = request.portfolio_name
        if request.provider_name:
            values["ProviderName"] = request.provider_name
        stack_id = cfn.create_stack(
            StackName=request.stack_name, TemplateURL=urls[region], Capabilities=CAPABILITIES,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())],
            OnFailure="ROLLBACK", EnableTerminationProtection=True)["StackId"]
        progress.done(f"{region}: creating {request.stack_name} (termination protection on)")
        status = wait(cfn, stack_id, progress, request.poll, request.timeout)
        if status not in TERMINAL_OK:
            failure = first_failure(cfn, stack_id)
            raise CheckFailed(f"stack {request.stack_name} in {region} is {status}: "
                              f"{failure or 'no failing resource was reported'}")
        results.append(PortfolioResult(region, stack_id, status, True, _outputs(cfn, stack_id)))
    return results
