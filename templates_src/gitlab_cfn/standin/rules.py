"""AWS's own rules where stock moto accepts anything, as the stand-in serves them.

Installed by the patches of the same names in ``patches.py``; each rule names its
source beside the code. Runs inside the stand-in's virtual environment, next to moto.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

# ElastiCache CreateReplicationGroup, AuthToken (ElastiCache API reference; the same text in
# the SDKs, e.g. docs.aws.amazon.com/sdk-for-kotlin/api/latest/elasticache/.../auth-token.html):
# "AuthToken can be specified only on replication groups where TransitEncryptionEnabled is true.
#  Password constraints: Must be only printable ASCII characters. Must be at least 16 characters
#  and no more than 128 characters in length. The only permitted printable special characters
#  are !, &, #, $, ^, <, >, and -."
# (CloudFormation's older wording, "cannot contain /, \" or @", is looser: the stricter holds.)
AUTH_TOKEN_SPECIALS = "!&#$^<>-"
AUTH_TOKEN_ALLOWED = frozenset(string.ascii_letters + string.digits + AUTH_TOKEN_SPECIALS)
AUTH_TOKEN_LENGTH = (16, 128)


def auth_token_problem(token: Any, transit_encryption: bool) -> tuple[str, str] | None:
    """``(error code, message)`` ElastiCache answers for this AuthToken, or None if it is accepted."""
    if token is None:
        return None
    if not transit_encryption:
        return ("InvalidParameterCombination",
                "AuthToken can be specified only on replication groups where TransitEncryptionEnabled is true.")
    text = str(token)
    low, high = AUTH_TOKEN_LENGTH
    bad = sorted(set(text) - AUTH_TOKEN_ALLOWED)
    if not low <= len(text) <= high or bad:
        # The service's own text (as reported in magenx/Magento-2-aws-cluster-terraform#43),
        # then which rule it broke.
        why = (f"length {len(text)}, must be {low} to {high}" if not low <= len(text) <= high else
               f"characters {''.join(bad)!r} not allowed; letters, digits and {AUTH_TOKEN_SPECIALS} only")
        return "InvalidParameterValue", f"Invalid AuthToken provided. ({why})"
    return None


def install_auth_token_rules() -> None:
    from moto.elasticache.exceptions import ElastiCacheException
    from moto.elasticache.models import ElastiCacheBackend

    original = ElastiCacheBackend.create_replication_group

    def create_replication_group(self, *args: Any, **kwargs: Any) -> Any:
        problem = auth_token_problem(kwargs.get("auth_token"), bool(kwargs.get("transit_encryption_enabled")))
        if problem:
            raise ElastiCacheException(*problem)
        return original(self, *args, **kwargs)

    ElastiCacheBackend.create_replication_group = create_replication_group


# -- AWS::SecretsManager::SecretTargetAttachment --------------------------------------------

TARGET_TYPES = ("AWS::RDS::DBInstance", "AWS::RDS::DBCluster", "AWS::Redshift::Cluster",
                "AWS::RedshiftServerless::Namespace", "AWS::DocDB::DBInstance", "AWS::DocDB::DBCluster")


def connection_fields(database: Any) -> dict[str, Any]:
    """What the attachment adds for an RDS DB instance: the keys of "JSON structure of AWS Secrets
    Manager secrets", Amazon RDS PostgreSQL (docs.aws.amazon.com/secretsmanager/latest/userguide/
    reference_secret_json_structure.html): engine, host, port (a number), dbname when the
    instance has one, and dbInstanceIdentifier."""
    fields = {"engine": database.engine, "host": database.address, "port": int(database.port),
              "dbInstanceIdentifier": database.db_instance_identifier}
    if getattr(database, "db_name", None):
        fields["dbname"] = database.db_name
    return fields


def install_secret_target_attachment() -> None:
    """The attachment writes the target's connection fields into the secret's JSON (a new
    version, PutSecretValue), and takes them out again when it is deleted
    (CloudFormation User Guide, aws-resource-secretsmanager-secrettargetattachment: "completes
    the final link between a Secrets Manager secret and the associated database by adding the
    database connection information to the secret JSON ... When you remove a
    SecretTargetAttachment from a stack, Secrets Manager removes the database connection
    information from the secret with a PutSecretValue call")."""
    from moto.cloudformation.exceptions import ValidationError
    from moto.rds.models import rds_backends
    from moto.secretsmanager.models import secretsmanager_backends

    from gitlab_cfn.standin.models import SecretTargetAttachment

    def secret_document(backend: Any, secret_id: str) -> dict:
        value = backend.get_secret_value(secret_id, None, None)
        text = value.secret_string if hasattr(value, "secret_string") else value["SecretString"]
        try:
            document = json.loads(text)
        except (TypeError, ValueError):
            document = None
        if not isinstance(document, dict):
            raise ValidationError(message=f"The secret {secret_id} is not a JSON object: "
                                          "a target attachment adds keys to the secret's JSON")
        return document

    def put(backend: Any, secret_id: str, document: dict) -> None:
        backend.put_secret_value(secret_id=secret_id, secret_string=json.dumps(document), secret_binary=None,
                                 client_request_token=None, version_stages=["AWSCURRENT"])

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties", {})
        secret_id, target_id, target_type = props.get("SecretId"), props.get("TargetId"), props.get("TargetType")
        if target_type not in TARGET_TYPES:
            raise ValidationError(message=f"TargetType {target_type!r} is not one of {', '.join(TARGET_TYPES)}")
        if target_type != "AWS::RDS::DBInstance":
            raise ValidationError(message=f"the stand-in attaches secrets to AWS::RDS::DBInstance only, "
                                          f"not {target_type}")
        database = rds_backends[account_id][region_name].databases.get(str(target_id))
        if database is None:
            # RDS's DBInstanceNotFound text.
            raise ValidationError(message=f"DBInstance {target_id} not found.")
        backend = secretsmanager_backends[account_id][region_name]
        document = secret_document(backend, secret_id)
        fields = connection_fields(database)
        put(backend, secret_id, {**document, **fields})
        model = cls(f"{secret_id}")
        model.attached = (account_id, region_name, secret_id, tuple(fields))
        return model

    def delete(self, account_id: str, region_name: str) -> None:
        attached = getattr(self, "attached", None)
        if not attached:
            return
        account_id, region_name, secret_id, keys = attached
        backend = secretsmanager_backends[account_id][region_name]
        try:
            document = secret_document(backend, secret_id)
        except Exception:  # the secret went first: nothing left to take the fields out of
            return
        put(backend, secret_id, {k: v for k, v in document.items() if k not in keys})

    SecretTargetAttachment.create_from_cloudformation_json = classmethod(create)
    SecretTargetAttachment.delete = delete


# -- launch template versions ----------------------------------------------------------------

def template_version(backend: Any, spec: dict) -> Any:
    """The launch template version a ``LaunchTemplate`` specification names: its Version, else the
    template's default (EC2 API reference, LaunchTemplateSpecification: "Default: The default
    version for the launch template"). CloudFormation's AWS::EC2::Instance refuses ``$Latest``
    and ``$Default`` (aws-properties-ec2-instance-launchtemplatespecification: "Specifying
    $Latest or $Default for the template version number is not supported")."""
    if spec.get("LaunchTemplateId"):
        template = backend.get_launch_template(spec["LaunchTemplateId"])
    else:
        template = backend.get_launch_template_by_name(spec["LaunchTemplateName"])
    version = spec.get("Version")
    if version is None:
        return template.default_version()
    return template.get_version(version)


def install_launch_template_versions() -> None:
    """An instance of a stack takes its launch template's data from the version its
    specification names (the stand-in took the latest, whatever was named); an Auto Scaling
    group launches from its own version (moto's group passed no version to RunInstances, so
    its members got the default version's profile, key and block devices)."""
    from moto.autoscaling.models import ASG_NAME_TAG, FakeAutoScalingGroup, InstanceState
    from moto.cloudformation.exceptions import ValidationError
    from moto.ec2.models.instances import Instance

    create = Instance.create_from_cloudformation_json.__func__

    def create_instance(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        from moto.ec2.models import ec2_backends

        spec = (cloudformation_json.get("Properties") or {}).get("LaunchTemplate")
        if spec:
            version = str(spec.get("Version", ""))
            if version.lower() in ("$latest", "$default"):
                raise ValidationError(message=f"LaunchTemplate Version {version} of {resource_name}: "
                                              "specify a version number (LatestVersionNumber or DefaultVersionNumber)")
            chosen = template_version(ec2_backends[account_id][region_name], spec)
            # Read by instance_launch_template_and_network, which fills the properties from it.
            cloudformation_json["Properties"]["LaunchTemplate"] = {
                "LaunchTemplateId": chosen.template.id, "Version": str(chosen.number)}
        instance = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        if spec:
            # As EC2 tags every instance launched from a template (EC2 User Guide, "Launch an
            # instance from a launch template": aws:ec2launchtemplate:id and :version).
            instance.add_tags({"aws:ec2launchtemplate:id": chosen.template.id,
                               "aws:ec2launchtemplate:version": str(chosen.number)})
        return instance

    Instance.create_from_cloudformation_json = classmethod(create_instance)

    def replace_autoscaling_group_instances(self, count_needed: int, propagated_tags: dict[str, str]) -> None:
        # moto's own method, with the group's launch template version passed on.
        import random

        propagated_tags[ASG_NAME_TAG] = self.name
        propagated_tags.update(self.instance_tags)
        subnet_id = self.vpc_zone_identifier.split(",")[0] if self.vpc_zone_identifier else None
        associate_public_ip = self.launch_config.associate_public_ip_address if self.launch_config else None
        launch_template = None
        if self.ec2_launch_template:
            version = self.ec2_launch_template.get_version(self.launch_template_version)
            launch_template = {"LaunchTemplateId": self.ec2_launch_template.id, "Version": str(version.number)}
        reservation = self.autoscaling_backend.ec2_backend.run_instances(
            self.image_id, count_needed, self.user_data, self.security_groups,
            instance_type=self.instance_type, tags={"instance": propagated_tags},
            placement=random.choice(self.availability_zones), launch_config=self.launch_config,
            launch_template=launch_template, is_instance_type_default=False,
            associate_public_ip=associate_public_ip, subnet_id=subnet_id)
        for instance in reservation.instances:
            instance.autoscaling_group = self
            self.instance_states.append(InstanceState(
                instance, protected_from_scale_in=self.new_instances_protected_from_scale_in))

    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances


# -- EBS volumes and their Availability Zone --------------------------------------------------

def install_volume_zones() -> None:
    """AttachVolume refuses a volume of another Availability Zone than the instance's (moto
    attached it). AWS: ``InvalidVolume.ZoneMismatch: The volume 'vol-...' is not in the same
    availability zone as instance 'i-...'`` (EC2 API error codes; the text as reported in
    linuxkit/linuxkit#2388 and kubernetes-sigs/aws-ebs-csi-driver#52)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.elastic_block_store import EBSBackend

    original = EBSBackend.attach_volume

    def attach_volume(self, volume_id, instance_id, device_path, delete_on_termination=False):
        volume = self.get_volume(volume_id)
        instance = self.get_instance(instance_id)
        if volume is not None and instance is not None and volume.availability_zone and \
                volume.availability_zone != instance.placement.zone:
            raise EC2ClientError("InvalidVolume.ZoneMismatch",
                                 f"The volume '{volume_id}' is not in the same availability zone as instance "
                                 f"'{instance_id}'")
        return original(self, volume_id, instance_id, device_path, delete_on_termination)

    EBSBackend.attach_volume = attach_volume


# -- Service Catalog: a product version's template is read ------------------------------------

INVALID_TEMPLATE = "Invalid templateBody. Please make sure that your template is valid"


def template_problem(body: bytes) -> str | None:
    """Why a template body is not a CloudFormation template, or None.

    CloudFormation: "Template format error: At least one Resources member must be defined."
    (ValidateTemplate); Service Catalog reads the template of a new version and answers
    ``InvalidParametersException: Invalid templateBody. Please make sure that your template is
    valid`` (aws-samples/amazon-sagemaker-studio-secure-data-science-workshop#11)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short forms (!Ref, !Sub, ...) are tags: read them as their values.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: (
        loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else
        loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else
        loader.construct_mapping(node)))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            return f"neither JSON nor YAML ({str(exc).splitlines()[0]})"
    if not isinstance(document, dict):
        return "not a JSON or YAML object"
    resources = document.get("Resources")
    if not isinstance(resources, dict) or not resources:
        return "Template format error: At least one Resources member must be defined."
    return None


def install_template_validation() -> None:
    from moto.s3.models import s3_backends
    from moto.servicecatalog.exceptions import InvalidParametersException

    from gitlab_cfn.standin import servicecatalog

    original = servicecatalog.fetch_template

    def fetch_template(account_id: str, url: str) -> None:
        original(account_id, url)  # refuses a URL that names no object
        match = servicecatalog.TEMPLATE_URL.match(url)
        body = s3_backends[account_id]["aws"].get_object(match.group(1), match.group(3)).value
        problem = template_problem(body)
        if problem:
            raise InvalidParametersException(f"{INVALID_TEMPLATE} ({url}: {problem})")

    servicecatalog.fetch_template = fetch_template
