"""Small, named patches to moto's CloudFormation, applied when the stand-in starts.

Stock moto deploys these templates wrongly in ways measured here; each patch
below restores one AWS behaviour, and each has a test in tests/test_standin.py
that deploys a small template through the running server:

- ``fail_loudly_on_unsupported_types``: a resource type moto cannot create fails
  the stack (moto skips it silently and reports success).
- ``failed_create_rolls_back``: a resource that cannot be created fails its
  stack with an event naming it and the reason, and the stack rolls back (moto
  answers HTTP 500 and leaves the stack in progress).
- ``nested_stack_outputs``: ``Fn::GetAtt`` on a nested stack's ``Outputs.X``; nested
  stacks are named ``<parent>-<logical id>-<suffix>`` as CloudFormation names them.
- ``dynamic_references``: ``{{resolve:secretsmanager:...}}`` and ``{{resolve:ssm:...}}``
  resolved from moto's backends (moto leaves them as text).
- ``availability_zones_of_the_region``: ``Fn::GetAZs`` gives the stack's own region's
  zones (moto always answers us-east-1's).
- ``elb_canonical_hosted_zone``: ``GetAtt`` of a Classic ELB's ``CanonicalHostedZoneNameID``.
- ``kms_key_policy_as_document``: a key policy given as an object (moto's
  ``describe_key`` breaks on it), and key tags in CloudFormation's Key/Value form.
- ``missing_ssm_parameter``: an ``AWS::SSM::Parameter::Value`` parameter naming a
  parameter that does not exist is a validation error (moto: HTTP 500).
- ``public_ssm_parameters``: AWS's public Ubuntu image parameters exist in every region.
- ``network_resources_deleted``: deleting a stack deletes the VPC networking it created.
- ``deleted_stacks_stay_deleted``: listing a deleted stack's resources creates nothing; a
  failed delete leaves the stack DELETE_FAILED with its reason.
- ``snapshot_deletion_policy``: ``DeletionPolicy: Snapshot`` takes a final snapshot
  of a DB instance, a Redis replication group or a volume before deleting it (moto
  deletes it outright).
- ``s3_bucket_properties``: bucket tags (moto reads the wrong keys), versioning and
  the public access block are applied.
- ``instance_launch_template_and_network``: an instance launched from a launch template,
  through a network interface, with Volumes (moto reads ImageId and SubnetId only).
- ``generated_identifiers``: generated RDS and ElastiCache identifiers fit their limits.
- ``rds_deletion_protection``: a DB instance keeps its DeletionProtection and a protected
  instance cannot be deleted (moto drops the property).
- ``rds_parameter_group_ref``: ``Ref`` of a DB parameter group gives its name.
- ``resource_models``: the models of ``models.py`` are registered.
- ``rds_groups_in_use_kept``: a DB parameter or subnet group in use cannot be deleted (moto deleted it).
- ``stack_parameters_as_given``: DescribeStacks parameters as given, SSM ones with ResolvedValue.
- ``failed_rollback_keeps_what_it_cannot_delete``: a rollback that cannot delete a resource
  (a protected database) ends ROLLBACK_FAILED, keeping it (moto: ROLLBACK_COMPLETE regardless).
- ``change_sets_as_aws_shapes_them``: change sets with Replacement, Scope and Details, nested
  change sets, and parameter-only changes (moto: raw template diff only).
- ``updates_in_place``: executing a change set updates stacks and resources in place.
- ``auto_scaling_group_rolling_update``: a group follows a new launch template version, rolling.
- ``instance_updated_in_place``: InstanceType and UserData changed in place (stop and start).
- ``block_device_not_smaller_than_snapshot``: InvalidBlockDeviceMapping, as EC2.
- ``volume_in_use``: VolumeInUse when attaching a volume attached elsewhere, as EC2.
- ``instance_profile_from_launch_template``: an instance launched from a launch template
  (by an Auto Scaling group, say) gets the template's instance profile (moto: none).
- ``role_managed_policies``: a role's ``ManagedPolicyArns`` are attached (moto drops them);
  an AWS managed policy that does not exist is refused, as IAM does.
- ``ssm_managed_instances``: DescribeInstanceInformation lists the running instances whose
  instance profile's role has AmazonSSMManagedInstanceCore, Online (moto has no such call).
- ``ssm_commands_on_their_instances``: SendCommand runs on the instances it names, and
  refuses one that does not exist or is not running (moto adds every instance of the
  region to a command without Targets, and accepts any id).
- ``servicecatalog_provisioning_artifacts``: product versions, created with the product
  and added, listed, described, deprecated and deleted later; a template URL naming no
  object is refused (moto keeps no versions).
- ``servicecatalog_portfolio_associations``: products and IAM principals in portfolios
  (moto has neither); a portfolio or product still associated cannot be deleted.
- ``servicecatalog_constraints``: launch and other constraints, on a product of the portfolio.
- ``elasticache_auth_token_rules``: a Redis AUTH token needs transit encryption, 16 to 128
  characters, letters, digits and ``!&#$^<>-`` only (moto accepted any).
- ``secret_target_attachment_connection_fields``: a SecretTargetAttachment writes the DB
  instance's engine, host, port, dbname and identifier into the secret (moto: nothing).
- ``launch_template_versions_honoured``: instances and Auto Scaling group members launch from
  the version named (moto: the latest for instances, the default for group members).
- ``volumes_stay_in_their_zone``: InvalidVolume.ZoneMismatch attaching a volume of another zone.
- ``servicecatalog_templates_read``: a product version whose template is not JSON or YAML, or
  has no Resources, is refused (moto's artifacts only checked the object existed).
- ``signal_resource``, ``creation_policy_waits_for_signals``: see ``signals.py``.
- ``db_instance_restored_from_snapshot``, ``volume_created_from_snapshot``,
  ``deleted_stack_resources_listed``, ``deleted_stack_parameters_described``,
  ``restored_db_parameter_group_family_checked``, ``bucket_logging_policy_read_as_s3_does``:
  see ``restore.py``.
- ``custom_resources_run_their_function``, ``iam_user_groups``,
  ``lambda_reserved_concurrency_within_the_account_quota``: see ``custom_resources.py``.

The rules of ``elasticache_auth_token_rules`` to ``servicecatalog_templates_read`` are in ``rules.py``.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable

from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.utils import random_suffix

PATCHES: list[Callable[[], None]] = []
_NESTING = threading.local()  # how deep in nested stack creation this request is
UBUNTU_STANDIN_AMI = "ami-0b0b1e24040000001"
UBUNTU_PARAMETERS = (
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
)
# Route 53 zone of Classic Load Balancers, per region (published by AWS).
ELB_ZONES = {"us-east-1": "Z35SXDOTRQ7X7K", "us-east-2": "Z3AADJGX6KTTL2", "us-west-1": "Z368ELLRRE2KJ0",
             "us-west-2": "Z1H1FL5HABSF5", "eu-west-1": "Z32O12XQLNTSW2", "eu-central-1": "Z215JYRZR1TBD5",
             "ap-southeast-2": "Z1GM3OXH4ZPM65", "ap-northeast-1": "Z14GRHDCWA56QT"}


class _NoOutputs(dict):
    """The outputs of a rolled-back stack: none, and no exports."""

    exports: list = []


class ResourceCreateFailed(Exception):
    def __init__(self, logical_id: str, resource_type: str, reason: str):
        super().__init__(f"{logical_id} ({resource_type}): {reason}")
        self.logical_id, self.resource_type, self.reason = logical_id, resource_type, reason


def patch(function: Callable[[], None]) -> Callable[[], None]:
    PATCHES.append(function)
    return function


@patch
def resource_models() -> None:
    from gitlab_cfn.standin import models  # noqa: F401  (subclassing registers them)

    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


@patch
def fail_loudly_on_unsupported_types() -> None:
    original = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str):
        found = original(resource_type)
        if found is None and resource_type not in parsing.NULL_MODELS:
            raise ResourceCreateFailed("", resource_type, f"the stand-in cannot create {resource_type}")
        return found

    parsing.resource_class_from_type = resource_class_from_type


@patch
def failed_create_rolls_back() -> None:
    original_create = parsing.parse_and_create_resource

    def parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name):
        try:
            return original_create(logical_id, resource_json, resources_map, account_id, region_name)
        except ResourceCreateFailed as exc:
            if exc.logical_id:
                # Created lazily while resolving this resource's properties: the
                # failing resource is the inner one.
                raise
            raise ResourceCreateFailed(logical_id, resource_json.get("Type", exc.resource_type), exc.reason) from exc
        except Exception as exc:  # moto's own errors: name the resource and say why
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise ResourceCreateFailed(logical_id, resource_json.get("Type", "?"), reason) from exc

    parsing.parse_and_create_resource = parse_and_create_resource

    def fail(stack, exc: ResourceCreateFailed) -> None:
        stack._add_resource_event(exc.logical_id, exc.resource_type, "CREATE_FAILED", exc.reason)
        stack.status = "CREATE_FAILED"
        stack._add_stack_event("CREATE_FAILED", resource_status_reason=f"{exc.logical_id}: {exc.reason}")
        stack._add_stack_event("ROLLBACK_IN_PROGRESS",
                               resource_status_reason=f"The following resource(s) failed to create: [{exc.logical_id}].")
        stack.status = "ROLLBACK_IN_PROGRESS"
        stack._roll_back()
        stack._add_stack_event(stack.status)
        # A rolled-back stack has no outputs (moto would evaluate them, and so
        # re-create the resources it just deleted, on every describe).
        stack.output_map = _NoOutputs()

    original_backend_create = cfn_models.CloudFormationBackend.create_stack

    def create_stack(self, name, *args, **kwargs):
        nested = getattr(_NESTING, "depth", 0) > 0
        known = set(self.stacks)
        try:
            return original_backend_create(self, name, *args, **kwargs)
        except ResourceCreateFailed as exc:
            created = [s for sid, s in self.stacks.items() if sid not in known and s.name == name]
            if not created:
                raise
            stack = created[0]
            fail(stack, exc)
            if nested:
                if stack.status == "ROLLBACK_COMPLETE":
                    # The parent's rollback deletes the failed nested stack too.
                    self.delete_stack(stack.stack_id)
                raise ResourceCreateFailed(
                    "", "AWS::CloudFormation::Stack",
                    f"Embedded stack {stack.stack_id} was not successfully created: "
                    f"The following resource(s) failed to create: [{exc.logical_id}].") from exc
            return stack

    cfn_models.CloudFormationBackend.create_stack = create_stack

    def _roll_back(self) -> None:
        try:
            self.resource_map.delete()
        except Exception:  # best effort
            pass
        self.status = "ROLLBACK_COMPLETE"

    cfn_models.Stack._roll_back = _roll_back

    original_delete = cfn_models.Stack.delete

    def delete(self) -> None:
        # A rolled-back stack holds nothing any more: deleting it only ends it.
        if self.status == "ROLLBACK_COMPLETE":
            self._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
            self._add_stack_event("DELETE_COMPLETE")
            self.status = "DELETE_COMPLETE"
            return
        original_delete(self)

    cfn_models.Stack.delete = delete

    def _add_resource_event(self, logical_id, resource_type, status, reason):
        self.events.append(cfn_models.Event(
            stack_id=self.stack_id, stack_name=self.name, logical_resource_id=logical_id,
            physical_resource_id="", resource_type=resource_type, resource_status=status,
            resource_status_reason=reason, resource_properties=None))

    cfn_models.Stack._add_resource_event = _add_resource_event

    original_nested = cfn_models.Stack.create_from_cloudformation_json.__func__

    def create_nested(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        _NESTING.depth = getattr(_NESTING, "depth", 0) + 1
        try:
            # Named as CloudFormation names nested stacks: <parent>-<logical id>-<suffix>.
            parent = str(kwargs.get("StackId", "")).split("/")
            name = f"{parent[1]}-{kwargs.get('LogicalId', resource_name)}-{random_suffix()}" if len(parent) > 2 else resource_name
            return original_nested(cls, name, cloudformation_json, account_id, region_name, **kwargs)
        finally:
            _NESTING.depth -= 1

    cfn_models.Stack.create_from_cloudformation_json = classmethod(create_nested)


@patch
def nested_stack_outputs() -> None:
    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name.startswith("Outputs."):
            key = attribute_name.split(".", 1)[1]
            output = self.output_map[key] if key in self.output_map else None
            if output is not None:
                return output.value
            raise ValidationError(message=f"Template error: the nested stack {self.name} has no output {key}")
        raise ValidationError(message=f"Template error: unsupported attribute {attribute_name} of a stack")

    cfn_models.Stack.get_cfn_attribute = get_cfn_attribute


def _resolve_text(text: str, account_id: str, region_name: str) -> str:
    from moto.secretsmanager.models import secretsmanager_backends
    from moto.ssm.models import ssm_backends

    def secret(match: re.Match) -> str:
        secret_id, _, rest = match.group(1).partition(":SecretString:")
        if not rest and ":SecretString" in match.group(1):
            secret_id = match.group(1).split(":SecretString")[0]
        key = rest.split(":")[0] if rest else ""
        value = secretsmanager_backends[account_id][region_name].get_secret_value(secret_id, None, None)
        string = value.secret_string if hasattr(value, "secret_string") else value["SecretString"]
        return str(json.loads(string)[key]) if key else string

    def ssm(match: re.Match) -> str:
        parameter = ssm_backends[account_id][region_name].get_parameter(match.group(1).split(":")[0])
        if parameter is None:
            raise ValidationError(message=f"Unable to fetch parameter {match.group(1)} from parameter store")
        return parameter.value

    text = re.sub(r"\{\{resolve:secretsmanager:(.+?)\}\}", secret, text)
    return re.sub(r"\{\{resolve:ssm:(.+?)\}\}", ssm, text)


@patch
def dynamic_references() -> None:
    def resolve(node: Any, account_id: str, region_name: str) -> Any:
        if isinstance(node, str) and "{{resolve:" in node:
            return _resolve_text(node, account_id, region_name)
        if isinstance(node, dict):
            return {k: resolve(v, account_id, region_name) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v, account_id, region_name) for v in node]
        return node

    original_parse = parsing.parse_resource

    def parse_resource(resource_json, resources_map):
        result = original_parse(resource_json, resources_map)
        if result:
            cls, cleaned, name = result
            return cls, resolve(cleaned, resources_map._account_id, resources_map._region_name), name
        return result

    parsing.parse_resource = parse_resource


@patch
def availability_zones_of_the_region() -> None:
    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and "Fn::GetAZs" in resource_json:
            from moto.ec2.models import ec2_backends

            region = resource_json["Fn::GetAZs"] or resources_map._region_name
            zones = ec2_backends[resources_map._account_id][region].describe_availability_zones()
            return sorted(z.name for z in zones)
        return original(resource_json, resources_map)

    parsing.clean_json = clean_json


@patch
def elb_canonical_hosted_zone() -> None:
    """The load balancer's zone is its own region's (moto's model has no region: every
    load balancer got us-east-1's)."""
    from moto.elb.models import LoadBalancer as FakeLoadBalancer

    original = FakeLoadBalancer.get_cfn_attribute
    create = FakeLoadBalancer.create_from_cloudformation_json.__func__

    def create_lb(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        balancer = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        balancer.standin_region = region_name
        return balancer

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name == "CanonicalHostedZoneNameID":
            region = getattr(self, "standin_region", "")
            if region not in ELB_ZONES:
                raise ValidationError(message=f"the stand-in does not know the load balancer zone of region "
                                              f"{region or '(unknown)'}; known: {', '.join(sorted(ELB_ZONES))}")
            return ELB_ZONES[region]
        return original(self, attribute_name)

    FakeLoadBalancer.create_from_cloudformation_json = classmethod(create_lb)
    FakeLoadBalancer.get_cfn_attribute = get_cfn_attribute


@patch
def kms_key_policy_as_document() -> None:
    from moto.kms.models import Key

    original = Key.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties", {})
        if isinstance(props.get("KeyPolicy"), dict):
            props["KeyPolicy"] = json.dumps(props["KeyPolicy"])
        # KMS tags are TagKey/TagValue; CloudFormation writes Key/Value.
        props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props.get("Tags", [])]
        return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    Key.create_from_cloudformation_json = classmethod(create)


@patch
def missing_ssm_parameter() -> None:
    from moto.ssm.models import ssm_backends

    original = parsing.ResourceMap.parse_ssm_parameter

    def parse_ssm_parameter(self, value: str, value_type: str) -> Any:
        if ssm_backends[self._account_id][self._region_name].get_parameter(value) is None:
            raise ValidationError(message=f"Unable to fetch parameters [{value}] from parameter store for this account.")
        return original(self, value, value_type)

    parsing.ResourceMap.parse_ssm_parameter = parse_ssm_parameter


@patch
def public_ssm_parameters() -> None:
    from moto.ssm.models import ParameterDict

    original = ParameterDict._check_loading_status

    def _check_loading_status(self, key: str) -> None:
        original(self, key)
        if key in UBUNTU_PARAMETERS and not dict.get(self, key):
            from datetime import datetime, timezone

            from moto.ssm.models import Parameter

            super(ParameterDict, self).__getitem__(key).append(Parameter(
                account_id=self.account_id, name=key, value=UBUNTU_STANDIN_AMI, parameter_type="String",
                description="Canonical, Ubuntu (stand-in image)", allowed_pattern=None, keyid=None,
                last_modified_date=datetime.now(timezone.utc), version=1, data_type="aws:ec2:image"))

    ParameterDict._check_loading_status = _check_loading_status


@patch
def snapshot_deletion_policy() -> None:
    original = parsing.ResourceMap._delete_resource

    def _delete_resource(self, parsed_resource: Any, resource_json: dict) -> None:
        if resource_json.get("DeletionPolicy") == "Snapshot":
            kind = resource_json.get("Type")
            if kind == "AWS::RDS::DBInstance":
                from moto.rds.models import rds_backends

                backend = rds_backends[self._account_id][self._region_name]
                db = parsed_resource.db_instance_identifier
                # A protected instance refuses the delete: no final snapshot yet.
                if not backend.databases[db].deletion_protection:
                    backend.create_db_snapshot(db_instance_identifier=db,
                                               db_snapshot_identifier=f"{db}-final-snapshot")
            elif kind == "AWS::ElastiCache::ReplicationGroup":
                from moto.elasticache.models import elasticache_backends

                group = parsed_resource.physical_resource_id
                elasticache_backends[self._account_id][self._region_name].create_snapshot(
                    replication_group_id=group, cache_cluster_id=None, snapshot_name=f"{group}-final-snapshot",
                    kms_key_id=None, tags=[])
            elif kind == "AWS::EC2::Volume":
                from moto.ec2.models import ec2_backends

                ec2_backends[self._account_id][self._region_name].create_snapshot(
                    parsed_resource.id, f"final snapshot of {parsed_resource.id}")
        original(self, parsed_resource, resource_json)
        if resource_json.get("Type") == "AWS::EC2::Volume" and resource_json.get("DeletionPolicy") != "Retain":
            # moto has no delete for a volume created by a stack; CloudFormation deletes it.
            from moto.ec2.models import ec2_backends

            backend = ec2_backends[self._account_id][self._region_name]
            if parsed_resource.id in backend.volumes:
                for attachment in [parsed_resource.attachment] if parsed_resource.attachment else []:
                    backend.detach_volume(parsed_resource.id, attachment.instance.id, attachment.device)
                backend.delete_volume(parsed_resource.id)

    parsing.ResourceMap._delete_resource = _delete_resource


@patch
def s3_bucket_properties() -> None:
    """Bucket tags in CloudFormation's Key/Value form, versioning and the public access block."""
    from moto.s3.models import FakeBucket, s3_backends
    from moto.utilities.utils import get_partition

    original = FakeBucket.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties", {})
        tags = props.pop("Tags", None)
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = s3_backends[account_id][get_partition(region_name)]
        if tags:
            backend.put_bucket_tagging(bucket.name, {t["Key"]: t["Value"] for t in tags})
        if (props.get("VersioningConfiguration") or {}).get("Status"):
            backend.put_bucket_versioning(bucket.name, props["VersioningConfiguration"]["Status"])
        block = props.get("PublicAccessBlockConfiguration")
        if block:
            backend.put_public_access_block(bucket.name, {k: str(v).lower() for k, v in block.items()})
        return bucket

    FakeBucket.create_from_cloudformation_json = classmethod(create)


@patch
def rds_parameter_group_ref() -> None:
    """``Ref`` of an RDS DB parameter group is its name (moto returns the object)."""
    from moto.rds.models import DBParameterGroup

    if not hasattr(DBParameterGroup, "physical_resource_id"):
        DBParameterGroup.physical_resource_id = property(lambda self: self.name)


@patch
def instance_launch_template_and_network() -> None:
    """An instance takes its image, type, key, profile and block devices from its launch template, its
    subnet and groups from its network interface, and attaches its Volumes
    (moto's model reads only ImageId, SubnetId and SecurityGroups)."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import Instance

    original = Instance.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.setdefault("Properties", {})
        backend = ec2_backends[account_id][region_name]
        spec = props.get("LaunchTemplate")
        if spec:
            template = backend.launch_templates[spec["LaunchTemplateId"]]
            # The version named (launch_template_versions_honoured checks it names one).
            data = template.get_version(spec["Version"]).data if spec.get("Version") else template.default_version().data
            # The template's root and other volumes too (CloudFormation launches the instance
            # from the template; moto's model reads neither).
            for key in ("ImageId", "InstanceType", "KeyName", "BlockDeviceMappings"):
                if key not in props and data.get(key):
                    props[key] = data[key]
            if "SecurityGroups" not in props and data.get("SecurityGroupIds"):
                props["SecurityGroups"] = list(data["SecurityGroupIds"])
            profile = data.get("IamInstanceProfile") or {}
            if "IamInstanceProfile" not in props and (profile.get("Name") or profile.get("Arn")):
                # moto's model associates a profile by name.
                props["IamInstanceProfile"] = profile.get("Name") or profile["Arn"].rsplit("/", 1)[-1]
        interfaces = props.pop("NetworkInterfaces", None)
        if interfaces:
            props.setdefault("SubnetId", interfaces[0].get("SubnetId"))
            props.setdefault("SecurityGroups", list(interfaces[0].get("GroupSet", [])))
        volumes = props.pop("Volumes", [])
        instance = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        for volume in volumes:
            backend.attach_volume(volume["VolumeId"], instance.id, volume["Device"])
        return instance

    Instance.create_from_cloudformation_json = classmethod(create)


class _NoResources(dict):
    """The resources of a deleted stack: none, and nothing to create lazily."""


@patch
def deleted_stacks_stay_deleted() -> None:
    """Listing a deleted stack's resources creates nothing (moto's lazy resource map
    re-created every deleted nested stack when a deleted parent was listed); a delete
    that fails leaves the stack DELETE_FAILED with the reason (moto answered HTTP 500)."""
    original = cfn_models.Stack.delete

    def delete(self) -> None:
        try:
            original(self)
        except Exception as exc:  # as CloudFormation: the stack stays, DELETE_FAILED, with the reason
            reason = getattr(exc, "message", None) or str(exc)
            self.status = "DELETE_FAILED"
            self._add_stack_event("DELETE_FAILED", resource_status_reason=reason)
            # The stack holds what it could not delete, and only that: listing it creates nothing.
            held = self.resource_map._parsed_resources
            self.resource_map._resource_json_map = {
                lid: body for lid, body in self.resource_map._resource_json_map.items()
                if held.get(lid) is not None and not isinstance(held.get(lid), (str, int, float, list, dict))}
            return
        if self.status == "DELETE_COMPLETE":
            self.resource_map = _NoResources()
            self.output_map = _NoOutputs()

    cfn_models.Stack.delete = delete

    original_backend_delete = cfn_models.CloudFormationBackend.delete_stack

    def delete_stack(self, name_or_stack_id: str) -> None:
        original_backend_delete(self, name_or_stack_id)
        # A stack whose delete failed stays a live stack, and can be deleted again.
        for stack_id, stack in list(self.deleted_stacks.items()):
            if stack.status == "DELETE_FAILED":
                self.stacks[stack_id] = self.deleted_stacks.pop(stack_id)

    cfn_models.CloudFormationBackend.delete_stack = delete_stack


def _delete_network_resource(backend: Any, kind: str, resource: Any) -> None:
    """Delete one network resource a stack created, the way CloudFormation does."""
    pid = getattr(resource, "physical_resource_id", None) or getattr(resource, "id", None)
    if kind == "AWS::EC2::NatGateway" and pid in backend.nat_gateways:
        backend.delete_nat_gateway(pid)
        backend.nat_gateways.pop(pid, None)
    elif kind == "AWS::EC2::VPCGatewayAttachment":
        gateway, vpc = getattr(resource, "gateway_id", None), getattr(resource, "vpc_id", None)
        if gateway and vpc and gateway in backend.internet_gateways and backend.internet_gateways[gateway].vpc:
            backend.detach_internet_gateway(gateway, vpc)
    elif kind == "AWS::EC2::InternetGateway" and pid in backend.internet_gateways:
        backend.delete_internet_gateway(pid)
    elif kind == "AWS::EC2::SubnetRouteTableAssociation":
        for table in backend.route_tables.values():
            if pid in table.associations:
                backend.disassociate_route_table(pid)
    elif kind == "AWS::EC2::Route":
        table = backend.route_tables.get(getattr(getattr(resource, "route_table", None), "id", None))
        if table is not None and resource.destination_cidr_block in [r.destination_cidr_block for r in table.routes.values()]:
            backend.delete_route(table.id, resource.destination_cidr_block)
    elif kind == "AWS::EC2::RouteTable" and pid in backend.route_tables:
        backend.delete_route_table(pid)
    elif kind == "AWS::EC2::EIP":
        allocation = getattr(resource, "allocation_id", None)
        if allocation and any(a.allocation_id == allocation for a in backend.addresses):
            backend.release_address(allocation_id=allocation)
    elif kind == "AWS::EC2::Subnet" and pid in backend.subnets.get(getattr(resource, "availability_zone", ""), {}):
        # Network interfaces left by terminated instances go with their subnet.
        for eni in list(backend.enis.values()):
            if eni.subnet.id == pid and (eni.instance is None or eni.instance.state == "terminated"):
                backend.delete_network_interface(eni.id)
        backend.delete_subnet(pid)
    elif kind == "AWS::EC2::SecurityGroup" and backend.get_security_group_from_id(pid) is not None:
        backend.delete_security_group(group_id=pid)
    elif kind == "AWS::EC2::VPC" and pid in backend.vpcs:
        backend.delete_vpc(pid)


NETWORK_TYPES = ("AWS::EC2::NatGateway", "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::InternetGateway",
                 "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::Route", "AWS::EC2::RouteTable",
                 "AWS::EC2::EIP", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::EC2::VPC")


@patch
def network_resources_deleted() -> None:
    """Deleting a stack deletes the VPC networking it created: NAT gateways, the
    gateway attachment, routes and route tables, Elastic IPs, subnets (with the
    interfaces of terminated instances), security groups and the VPC (moto keeps them)."""
    original = parsing.ResourceMap._delete_resource

    def _delete_resource(self, parsed_resource: Any, resource_json: dict) -> None:
        original(self, parsed_resource, resource_json)
        kind = resource_json.get("Type")
        if kind in NETWORK_TYPES and resource_json.get("DeletionPolicy") != "Retain":
            from moto.ec2.models import ec2_backends

            _delete_network_resource(ec2_backends[self._account_id][self._region_name], kind, parsed_resource)

    parsing.ResourceMap._delete_resource = _delete_resource


# Generated identifiers CloudFormation keeps within the service's limits.
IDENTIFIER_LIMITS = {
    "AWS::RDS::DBInstance": 63,
    "AWS::RDS::DBSubnetGroup": 255,
    "AWS::RDS::DBParameterGroup": 255,
    "AWS::ElastiCache::ReplicationGroup": 40,
}


@patch
def generated_identifiers() -> None:
    """Physical names CloudFormation generates fit the service: RDS and ElastiCache
    identifiers are lower-case, at most 63 (40) characters, without double hyphens
    (moto joins stack name, logical id and suffix whatever their length)."""
    original = parsing.generate_resource_name

    def generate_resource_name(resource_type: str, stack_name: str, logical_id: str) -> str:
        limit = IDENTIFIER_LIMITS.get(resource_type)
        if limit is None:
            return original(resource_type, stack_name, logical_id)
        suffix = random_suffix().lower()
        head = re.sub(r"[^a-z0-9-]", "", f"{stack_name}-{logical_id}".lower())
        name = f"{head[: limit - len(suffix) - 1]}-{suffix}"
        return re.sub(r"-{2,}", "-", name).strip("-")

    parsing.generate_resource_name = generate_resource_name


@patch
def rds_deletion_protection() -> None:
    """A DB instance keeps the DeletionProtection its template sets (moto drops the
    property), ModifyDBInstance can turn it off (moto sets the wrong attribute), and
    moto's delete then refuses a protected instance, as RDS does."""
    from moto.rds.models import DBInstance

    original = DBInstance.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        instance = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        value = cloudformation_json.get("Properties", {}).get("DeletionProtection", False)
        instance.deletion_protection = value is True or str(value).lower() == "true"
        return instance

    DBInstance.create_from_cloudformation_json = classmethod(create)

    from moto.rds.models import RDSBackend

    original_modify = RDSBackend.modify_db_instance

    def modify_db_instance(self, db_instance_identifier: str, db_kwargs: dict) -> Any:
        # moto sets the API's field name as an attribute; the flag it checks stays on.
        protection = db_kwargs.pop("DeletionProtection", None)
        database = original_modify(self, db_instance_identifier, db_kwargs)
        if protection is not None:
            database.deletion_protection = protection is True or str(protection).lower() == "true"
        return database

    RDSBackend.modify_db_instance = modify_db_instance


@patch
def rds_groups_in_use_kept() -> None:
    """A DB parameter group or subnet group that a DB instance still uses cannot be deleted,
    with RDS's errors (moto deleted it, and the instance then broke every describe call).
    Texts as RDS answers: hashicorp/terraform-provider-aws#6448 (parameter group),
    anomalyco/sst#4026 (subnet group)."""
    from moto.rds.exceptions import RDSClientError
    from moto.rds.models import RDSBackend

    original_parameters = RDSBackend.delete_db_parameter_group
    original_subnets = RDSBackend.delete_subnet_group

    def delete_db_parameter_group(self, db_parameter_group_name: str) -> Any:
        if any(getattr(db, "db_parameter_group_name", None) == db_parameter_group_name
               for db in self.databases.values()):
            raise RDSClientError("InvalidDBParameterGroupState",
                                 "One or more database instances are still members of this parameter group "
                                 f"{db_parameter_group_name}, so the group cannot be deleted")
        return original_parameters(self, db_parameter_group_name)

    def delete_subnet_group(self, subnet_name: str) -> Any:
        users = [db.db_instance_identifier for db in self.databases.values()
                 if getattr(db, "_db_subnet_group_name", None) == subnet_name]
        if users:
            raise RDSClientError("InvalidDBSubnetGroupStateFault",
                                 f"Cannot delete the subnet group '{subnet_name}' because at least one database "
                                 f"instance: {users[0]} is still using it.")
        return original_subnets(self, subnet_name)

    RDSBackend.delete_db_parameter_group = delete_db_parameter_group
    RDSBackend.delete_subnet_group = delete_subnet_group


@patch
def stack_parameters_as_given() -> None:
    """DescribeStacks gives each parameter's value as given (lists comma-separated, the
    default where none was given, an SSM parameter's name with its ResolvedValue, NoEcho
    values masked); moto gave Python's text of resolved values ("['a', 'b']")."""

    def parameter_list(self) -> list[dict[str, Any]]:
        definitions = (self.template_dict or {}).get("Parameters") or {}
        given = self.resource_map.input_parameters or {}
        resolved = self.resource_map.resolved_parameters
        listed = []
        for key, definition in definitions.items():
            if key not in given and "Default" not in definition:
                continue
            value = given.get(key, definition.get("Default"))
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            entry = {"ParameterKey": key, "ParameterValue": "****" if definition.get("NoEcho") else str(value)}
            if str(definition.get("Type", "")).startswith("AWS::SSM::Parameter::Value") and key in resolved:
                value = resolved[key]
                entry["ResolvedValue"] = ",".join(value) if isinstance(value, list) else str(value)
            listed.append(entry)
        return listed

    cfn_models.Stack.parameter_list = property(parameter_list)


@patch
def failed_rollback_keeps_what_it_cannot_delete() -> None:
    """A rollback that cannot delete a resource (a DB instance with deletion protection, a
    nested stack holding one) leaves it, with a DELETE_FAILED event and its reason, and the
    stack ends ROLLBACK_FAILED (the stand-in's rollback gave up silently and said
    ROLLBACK_COMPLETE). CloudFormation: ROLLBACK_FAILED is the "unsuccessful removal of one or
    more stacks after a failed stack creation"; delete the stack (User Guide,
    using-cfn-describing-stacks, stack status codes)."""

    def _roll_back(self) -> None:
        resource_map = self.resource_map
        remaining = {lid: resource_map._resource_json_map[lid] for lid in list(resource_map._resource_json_map)
                     if resource_map._parsed_resources.get(lid) is not None
                     and not isinstance(resource_map._parsed_resources.get(lid), (str, int, float, list, dict))
                     and resource_map._resource_json_map[lid].get("DeletionPolicy") != "Retain"}
        reasons: dict[str, str] = {}
        for _ in range(len(remaining) + 1):
            progress = False
            for logical_id, resource_json in list(remaining.items()):
                resource = resource_map._parsed_resources[logical_id]
                try:
                    if not (isinstance(resource, cfn_models.Stack) and resource.status == "DELETE_FAILED"):
                        resource_map._delete_resource(resource, resource_json)
                    if isinstance(resource, cfn_models.Stack) and resource.status == "DELETE_FAILED":
                        failed = [e.resource_status_reason for e in resource.events
                                  if e.resource_status == "DELETE_FAILED" and e.resource_status_reason]
                        raise ValidationError(message=f"Embedded stack {resource.stack_id} was not successfully "
                                                      f"deleted: {failed[-1] if failed else 'DELETE_FAILED'}")
                except Exception as exc:
                    reasons[logical_id] = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                    continue
                resource_map._parsed_resources.pop(logical_id, None)
                del remaining[logical_id]
                progress = True
            if not remaining or not progress:
                break
        for logical_id, resource_json in remaining.items():
            self._add_resource_event(logical_id, resource_json.get("Type", ""), "DELETE_FAILED", reasons[logical_id])
        # What is left is what the stack still holds: listing it creates nothing new.
        resource_map._resource_json_map = dict(remaining)
        self.status = "ROLLBACK_FAILED" if remaining else "ROLLBACK_COMPLETE"

    cfn_models.Stack._roll_back = _roll_back


@patch
def change_sets_as_aws_shapes_them() -> None:
    """Change sets show every resource change with Replacement, Scope and Details, catch
    parameter-only changes (SSM parameters resolved again), and with IncludeNestedStacks give
    each nested stack its own change set (moto: raw template diff, no details, no nesting)."""
    from gitlab_cfn.standin.updates import install_change_sets

    install_change_sets()


@patch
def updates_in_place() -> None:
    """Executing a change set (or UpdateStack) updates the stacks in place: nested stacks keep
    their ids, modified resources are updated in dependency order, replaced ones are created
    anew before the old ones go, outputs and parameters are refreshed (moto deleted and
    re-created nested stacks and dropped resources it could not update)."""
    from gitlab_cfn.standin.updates import install_updates

    install_updates()


@patch
def auto_scaling_group_rolling_update() -> None:
    """An Auto Scaling group is updated in place and rolls its instances to a new launch
    template version under a rolling UpdatePolicy (moto replaced the whole group)."""
    from gitlab_cfn.standin.updates import install_group_updates

    install_group_updates()


@patch
def instance_updated_in_place() -> None:
    """An instance's InstanceType and UserData are updated in place, with a stop and start."""
    from gitlab_cfn.standin.updates import install_instance_updates

    install_instance_updates()


@patch
def block_device_not_smaller_than_snapshot() -> None:
    """RunInstances refuses an EBS volume smaller than the image's snapshot."""
    from gitlab_cfn.standin.updates import install_block_device_sizes

    install_block_device_sizes()


@patch
def volume_in_use() -> None:
    """AttachVolume refuses a volume still attached to another instance."""
    from gitlab_cfn.standin.updates import install_volume_in_use

    install_volume_in_use()


@patch
def instance_profile_from_launch_template() -> None:
    """RunInstances with a launch template takes its IamInstanceProfile (EC2 API reference,
    RequestLaunchTemplateData: parameters not given in the request come from the template)."""
    from moto.ec2.models.instances import InstanceBackend

    original = InstanceBackend.run_instances

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):
        reservation = original(self, image_id, count, user_data, security_group_names, **kwargs)
        if kwargs.get("launch_template") and not kwargs.get("iam_instance_profile"):
            profile = self._get_template_from_args(kwargs["launch_template"]).data.get("IamInstanceProfile") or {}
            if profile.get("Arn") or profile.get("Name"):
                for instance in reservation.instances:
                    association = self.associate_iam_instance_profile(
                        instance.id, iam_instance_profile_name=profile.get("Name"),
                        iam_instance_profile_arn=profile.get("Arn"))
                    instance.iam_instance_profile = {"Arn": association.iam_instance_profile.arn,
                                                     "Id": association.association_id}
        return reservation

    InstanceBackend.run_instances = run_instances


@patch
def role_managed_policies() -> None:
    """AWS::IAM::Role ManagedPolicyArns attached at create, detached before the role is deleted."""
    from moto.iam import models as iam_models
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.utilities.utils import get_partition

    known = json.loads(aws_managed_policies_data)

    def attach(role, arns, account_id, region_name):
        backend = iam_models.iam_backends[account_id][get_partition(region_name)]
        for arn in arns or []:
            if not isinstance(arn, str):
                continue
            if arn not in backend.managed_policies:
                name = arn.rsplit("/", 1)[-1]
                if ":iam::aws:policy/" not in arn or name not in known:
                    raise ValidationError(message=f"Policy {arn} does not exist or is not attachable.")
                backend.managed_policies[arn] = iam_models.AWSManagedPolicy.from_data(
                    name, account_id, region_name, known[name])
            if arn not in role.managed_policies:
                backend.attach_role_policy(arn, role.name)

    create = iam_models.Role.create_from_cloudformation_json.__func__

    def create_role(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        role = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        attach(role, cloudformation_json.get("Properties", {}).get("ManagedPolicyArns"), account_id, region_name)
        return role

    iam_models.Role.create_from_cloudformation_json = classmethod(create_role)

    # CloudFormation detaches a role's managed policies before deleting it; IAM refuses to
    # delete a role that still has them (DeleteConflict).
    delete = iam_models.Role.delete_from_cloudformation_json.__func__

    def delete_role(cls, resource_name, cloudformation_json, account_id, region_name):
        backend = iam_models.iam_backends[account_id][get_partition(region_name)]
        for role in list(backend.roles.values()):
            if role.name == resource_name:
                for arn in list(role.managed_policies):
                    backend.detach_role_policy(arn, role.name)
        return delete(cls, resource_name, cloudformation_json, account_id, region_name)

    iam_models.Role.delete_from_cloudformation_json = classmethod(delete_role)


MANAGED_INSTANCE_POLICY = "AmazonSSMManagedInstanceCore"


def _managed_instances(account_id: str, region: str) -> dict[str, Any]:
    """Running instances an SSM agent could register: their profile's role may talk to SSM.

    AWS (Systems Manager User Guide, "Configure instance permissions"): the agent registers
    a node only with an instance profile allowing the ``ssm:*`` core actions, as the managed
    policy AmazonSSMManagedInstanceCore does.
    """
    from moto.ec2 import ec2_backends
    from moto.iam.models import iam_backends

    ec2 = ec2_backends[account_id][region]
    iam = iam_backends[account_id]["global"]
    managed = {}
    for reservation in ec2.all_reservations():
        for instance in reservation.instances:
            if instance.state != "running":
                continue
            profile = instance.iam_instance_profile or {}
            association = ec2.iam_instance_profile_associations.get(instance.id)
            try:
                if association is not None:
                    found = association.iam_instance_profile
                elif profile.get("Arn"):
                    found = iam.get_instance_profile_by_arn(profile["Arn"])
                elif profile.get("Name"):
                    found = iam.get_instance_profile(profile["Name"])
                else:
                    continue
            except Exception:
                continue
            policies = {arn.rsplit("/", 1)[-1] for role in found.roles for arn in role.managed_policies}
            if MANAGED_INSTANCE_POLICY in policies:
                managed[instance.id] = instance
    return managed


@patch
def ssm_managed_instances() -> None:
    """DescribeInstanceInformation, for the nodes SSM Run Command can reach."""
    from moto.ssm import responses as ssm_responses

    def describe_instance_information(self):
        wanted = None
        for item in self._get_param("Filters") or self._get_param("InstanceInformationFilterList") or []:
            if item.get("Key") in ("InstanceIds", "instanceIds"):
                wanted = set(item.get("Values") or item.get("valueSet") or [])
        found = _managed_instances(self.current_account, self.region)
        return json.dumps({"InstanceInformationList": [
            {"InstanceId": i, "PingStatus": "Online", "ResourceType": "EC2Instance", "PlatformType": "Linux",
             "IPAddress": instance.private_ip, "AgentVersion": "3.3.0.0"}
            for i, instance in sorted(found.items()) if wanted is None or i in wanted]})

    ssm_responses.SimpleSystemManagerResponse.describe_instance_information = describe_instance_information


@patch
def ssm_commands_on_their_instances() -> None:
    """SendCommand targets the instances given, and only running ones.

    AWS (SSM API reference, SendCommand): ``InstanceIds`` or ``Targets`` choose the
    managed nodes; an id that is not a running managed node is ``InvalidInstanceId``
    ("Instances not in a valid state for account"). moto filters the region's
    instances by the (empty) Targets, so every instance joins every command.
    """
    from moto.ec2 import ec2_backends
    from moto.ssm import models as ssm_models
    from moto.ssm.exceptions import SSMException

    def from_targets(self) -> list[str]:
        return original_targets(self) if self.targets else []

    original_targets = ssm_models.Command._get_instance_ids_from_targets
    ssm_models.Command._get_instance_ids_from_targets = from_targets

    original_send = ssm_models.SimpleSystemManagerBackend.send_command

    def send_command(self, **kwargs):
        ec2 = ec2_backends[self.account_id][self.region_name]
        running = {i.id for r in ec2.all_reservations() for i in r.instances if i.state == "running"}
        invalid = [i for i in kwargs.get("instance_ids") or [] if i not in running]
        if invalid:
            raise SSMException("InvalidInstanceId",
                               f"Instances {invalid} not in a valid state for account {self.account_id}")
        return original_send(self, **kwargs)

    ssm_models.SimpleSystemManagerBackend.send_command = send_command


@patch
def servicecatalog_provisioning_artifacts() -> None:
    from gitlab_cfn.standin.servicecatalog import install_artifacts

    install_artifacts()


@patch
def servicecatalog_portfolio_associations() -> None:
    from gitlab_cfn.standin.servicecatalog import install_associations

    install_associations()


@patch
def servicecatalog_constraints() -> None:
    from gitlab_cfn.standin.servicecatalog import install_constraints

    install_constraints()


@patch
def elasticache_auth_token_rules() -> None:
    from gitlab_cfn.standin.rules import install_auth_token_rules

    install_auth_token_rules()


@patch
def secret_target_attachment_connection_fields() -> None:
    from gitlab_cfn.standin.rules import install_secret_target_attachment

    install_secret_target_attachment()


@patch
def launch_template_versions_honoured() -> None:
    from gitlab_cfn.standin.rules import install_launch_template_versions

    install_launch_template_versions()


@patch
def volumes_stay_in_their_zone() -> None:
    from gitlab_cfn.standin.rules import install_volume_zones

    install_volume_zones()


@patch
def servicecatalog_templates_read() -> None:
    from gitlab_cfn.standin.rules import install_template_validation

    install_template_validation()


@patch
def termination_protection() -> None:
    from gitlab_cfn.standin.termination import install

    install()


def apply_all() -> list[str]:
    from gitlab_cfn.standin import operations  # noqa: F401  (registers the operations patches)

    for function in PATCHES:
        function()
    return [f.__name__ for f in PATCHES]


# Patches of their own modules, registered by importing them (after ``patch`` exists).
from gitlab_cfn.standin import cfn_tags  # noqa: E402,F401
from gitlab_cfn.standin import cluster  # noqa: E402,F401
from gitlab_cfn.standin import rds  # noqa: E402,F401
from gitlab_cfn.standin import restore  # noqa: E402,F401
from gitlab_cfn.standin import restore_region  # noqa: E402,F401
from gitlab_cfn.standin import signals  # noqa: E402,F401
from gitlab_cfn.standin import custom_resources  # noqa: E402,F401
