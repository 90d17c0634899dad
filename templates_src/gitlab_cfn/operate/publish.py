"""Publishing a build to S3, for "Launch Stack" links and Service Catalog.

The build goes under ``<prefix>/<version>/`` (the version of the package by
default) in the layout the parent's TemplateURLs compute, like the AWS Quick
Starts: one bucket per region (``<bucket>-<region>``), or one bucket for every
region with ``--single-bucket`` (the stacks then read their children from the
bucket's region through the ``TemplateBucketRegion`` parameter).

Next to the build goes ``templates/product.template.yaml``, the main template
whose location parameters default to the bucket it is published in: the
Service Catalog product launches it.

Each object carries its content type, an MD5 S3 verifies on upload, and its
sha256 in its metadata: an object already there with the same sha256 is not
uploaded again; a published version with different content is never
overwritten unless ``--force``. A build whose files no longer match its
manifest is refused.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from botocore.exceptions import ClientError

from gitlab_cfn import __version__
from gitlab_cfn.compile.catalog import REGION_PATTERN, VERSION_PATTERN
from gitlab_cfn.compile.compiler import MANIFEST, PORTFOLIO, read_manifest, stack_files
from gitlab_cfn.compile.naming import MAIN, template_key, template_url
from gitlab_cfn.errors import ConfigError
from gitlab_cfn.operate.aws import Aws
from gitlab_cfn.operate.progress import Progress

VERSION = re.compile(VERSION_PATTERN)
PREFIX = re.compile(r"^([0-9A-Za-z!_.*'()-]+(/[0-9A-Za-z!_.*'()-]+)*)?$")
# The main template with the location defaults filled in, per bucket (see product_template).
PRODUCT = "product"
PRODUCT_TEMPLATE = template_key(PRODUCT)
CONTENT_TYPES = {".yaml": "application/x-yaml", ".json": "application/json", ".md": "text/markdown",
                 ".gz": "application/gzip"}


@dataclass
class PublishRequest:
    bucket: str
    regions: list[str]
    prefix: str = "gitlab-cfn"
    version: str = __version__
    single_bucket: bool = False
    force: bool = False
    build_dir: Path = Path("build")
    stack_name: str = "gitlab"

    def __post_init__(self):
        if not self.regions:
            raise ConfigError("--regions: give at least one region")
        for region in self.regions:
            if not re.match(REGION_PATTERN, region):
                raise ConfigError(f"--regions: {region!r} is not a region name such as eu-west-1")
        if not VERSION.match(self.version):
            raise ConfigError(f"--version: letters, digits, '.', '_' and '-' only (got {self.version!r})")
        if not PREFIX.match(self.prefix.strip("/")):
            raise ConfigError(f"--prefix: an S3 key prefix such as gitlab-cfn (got {self.prefix!r})")

    @property
    def key_prefix(self) -> str:
        """The TemplateKeyPrefix of the published stacks: ``<prefix>/<version>/``."""
        prefix = self.prefix.strip("/")
        return f"{prefix}/{self.version}/" if prefix else f"{self.version}/"

    def bucket_for(self, region: str) -> tuple[str, str]:
        """(bucket, bucket region) the stacks of ``region`` read from."""
        if self.single_bucket:
            return self.bucket, self.regions[0]
        return f"{self.bucket}-{region}", region


@dataclass
class PublishResult:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)     # region -> quick-create link
    urls: dict[str, str] = field(default_factory=dict)      # region -> main template URL
    portfolio_links: dict[str, str] = field(default_factory=dict)  # region -> portfolio quick-create link


def build_files(build_dir: Path) -> list[tuple[str, bytes, str]]:
    """(relative path, content, sha256) of every file of the build, read once and checked
    against the manifest: what is uploaded is what was checked."""
    manifest = read_manifest(build_dir)
    files = []
    stale = []
    for entry in [*manifest["templates"].values(), *stack_files(manifest)]:
        path = build_dir / entry["path"]
        if not path.is_file():
            stale.append(f"{entry['path']} is missing")
            continue
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        if digest != entry["sha256"]:
            stale.append(f"{entry['path']} changed since it was built")
        files.append((entry["path"], body, digest))
    if stale:
        raise ConfigError(f"--build: {build_dir} is stale ({'; '.join(stale)}): run 'gitlab-cfn build' again")
    manifest_body = (build_dir / MANIFEST).read_bytes()
    files.append((MANIFEST, manifest_body, hashlib.sha256(manifest_body).hexdigest()))
    return files


def product_template(main_text: str, bucket: str, bucket_region: str, key_prefix: str) -> bytes:
    """The main template with its location parameters defaulting to where it is published:
    what the Service Catalog product launches, so that teams launching it fill in only
    GitLab's own parameters."""
    import yaml

    from gitlab_cfn.compile.compiler import render

    template = yaml.safe_load(main_text)
    for name, value in (("TemplateBucketName", bucket), ("TemplateBucketRegion", bucket_region),
                        ("TemplateKeyPrefix", key_prefix)):
        template["Parameters"][name]["Default"] = value
    template["Description"] = template.get("Description", "") + f" (published at s3://{bucket}/{key_prefix})"
    return render(template).encode()


def quick_create_link(region: str, url: str, bucket: str, bucket_region: str, key_prefix: str, stack_name: str,
                      **extra: str) -> str:
    params = {"TemplateBucketName": bucket, "TemplateBucketRegion": bucket_region, "TemplateKeyPrefix": key_prefix,
              **extra}
    query = "&".join([f"templateURL={quote(url, safe='')}", f"stackName={quote(stack_name)}"]
                     + [f"param_{k}={quote(v, safe='')}" for k, v in params.items()])
    return f"https://{region}.console.aws.amazon.com/cloudformation/home?region={region}#/stacks/quickcreate?{query}"


def _existing_sha(s3, bucket: str, key: str) -> str | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get("sha256", "unknown")


def _check_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigError(f"--bucket: bucket {bucket} does not exist (for {region}); create it, private, first") from None
        if code in ("403", "AccessDenied"):
            raise ConfigError(f"--bucket: no permission on bucket {bucket}") from None
        raise


def publish(request: PublishRequest, aws: Aws, progress: Progress) -> PublishResult:
    files = build_files(request.build_dir)
    targets = list(dict.fromkeys(request.bucket_for(r) for r in request.regions))
    result = PublishResult()

    # Everything is checked before anything is uploaded: a refused publish changes nothing.
    plan = []
    conflicts = []
    main_text = next(body for relative, body, _ in files if relative == template_key(MAIN)).decode("utf-8")
    for bucket, bucket_region in targets:
        s3 = aws.client("s3", bucket_region)
        _check_bucket(s3, bucket, bucket_region)
        product = product_template(main_text, bucket, bucket_region, request.key_prefix)
        for relative, body, digest in [*files, (PRODUCT_TEMPLATE, product, hashlib.sha256(product).hexdigest())]:
            key = f"{request.key_prefix}{relative}"
            existing = _existing_sha(s3, bucket, key)
            if existing == digest:
                result.skipped.append(f"s3://{bucket}/{key}")
                continue
            if existing is not None and not request.force:
                conflicts.append(f"s3://{bucket}/{key}")
            plan.append((s3, bucket, key, body, digest))
    if conflicts:
        raise ConfigError(f"--version: {request.version} is already published with other content "
                          f"({conflicts[0]}{' and more' if len(conflicts) > 1 else ''}); publish a new --version, "
                          "or --force to overwrite")

    for s3, bucket, key, body, digest in plan:
        s3.put_object(Bucket=bucket, Key=key, Body=body,
                      ContentType=CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream"),
                      ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
                      Metadata={"sha256": digest, "gitlab-cfn-version": __version__})
        result.uploaded.append(f"s3://{bucket}/{key}")
    progress.done(f"uploaded {len(result.uploaded)} objects, {len(result.skipped)} already published")

    for region in request.regions:
        bucket, bucket_region = request.bucket_for(region)
        url = template_url(bucket, bucket_region, request.key_prefix)
        result.urls[region] = url
        result.links[region] = quick_create_link(region, url, bucket, bucket_region, request.key_prefix,
                                                 request.stack_name)
        if any(relative == template_key(PORTFOLIO) for relative, _, _ in files):
            result.portfolio_links[region] = quick_create_link(
                region, template_url(bucket, bucket_region, request.key_prefix, PORTFOLIO), bucket, bucket_region,
                request.key_prefix, f"{request.stack_name}-portfolio", ProductVersion=request.version)
    return result


def launch_table(request: PublishRequest, result: PublishResult) -> str:
    lines = [f"# Launch GitLab {request.version}", "",
             "| Region | Launch | Service Catalog | Template |", "|---|---|---|---|"]
    for region in request.regions:
        portfolio = result.portfolio_links.get(region)
        offer = f"[Create the portfolio]({portfolio})" if portfolio else "-"
        lines.append(f"| {region} | [Launch Stack]({result.links[region]}) | {offer} | {result.urls[region]} |")
    lines += ["", "Launch Stack creates GitLab in your account. Create the portfolio once per region to offer "
              "GitLab to other teams through AWS Service Catalog; add later versions with "
              "`gitlab-cfn catalog publish`."]
    return "\n".join(lines) + "\n"
