"""Lambda-backed custom resources and IAM users in groups, as CloudFormation runs them.

moto runs a custom resource's function in Docker (absent here) and, when the function
answers FAILED, ignores the answer and leaves the stack in progress for ever. These
patches run the function in-process instead, and hold it to CloudFormation's rules
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html):

- ``custom_resources_run_their_function``: the ``ServiceToken`` must be the ARN of a Lambda
  function of the same stack (stricter than AWS, which takes any function of the region: the
  stacks here never call another's); its ``Code.ZipFile`` text is loaded as the module
  ``index`` and its ``Handler`` called with CloudFormation's request, the function's calls
  going to this stand-in over HTTP (``AWS_ENDPOINT_URL``), and its answer PUT to a
  pre-signed-style ``ResponseURL`` on 127.0.0.1. No answer, an answer over 4096 bytes, one
  naming another request, or ``FAILED`` fail the resource with the answer's reason (and the
  stack rolls back); ``SUCCESS`` gives the resource the answer's ``PhysicalResourceId`` and
  ``Data``. An update sends ``Update`` with ``OldResourceProperties`` (a FAILED answer fails
  the update); deleting the resource sends ``Delete`` (a FAILED answer fails the stack's delete).
  ``ServiceTimeout`` (an integer from 1 to 3600, else the resource fails as CloudFormation
  refuses it; aws-resource-cloudformation-customresource.html) is how long the answer is
  waited for, at most the stand-in's ``ANSWER_TIMEOUT``.
  Nothing runs in Docker (the stand-in has none).
- ``lambda_reserved_concurrency_within_the_account_quota``: the stand-in is a new account, whose
  Lambda concurrency quota may be 10; Lambda keeps min(100, quota) executions unreserved and
  refuses a reservation that would leave fewer ("Specified ReservedConcurrentExecutions for
  function decreases account's UnreservedConcurrentExecution below its minimum value of [10]":
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html, and as new
  accounts report it, aws-samples/alarm-context-tool#2, aws-samples/one-observability-demo#278).
  moto enforces a quota only on PutFunctionConcurrency, only when told one, with a minimum of
  100; here a function's ``ReservedConcurrentExecutions`` in a template and
  PutFunctionConcurrency are both held to it.
- ``model_data_of_every_resource``: the stand-in's own inspection page (``/moto-api/data.json``,
  which shows a test what AWS shows nobody, such as an access key's secret) leaves out the
  attributes it cannot read (moto: HTTP 500 once a DB instance exists, whose write-only
  properties raise NotImplementedError).
- ``iam_user_groups``: ``AWS::IAM::Group`` (path and inline policies) and an ``AWS::IAM::User``'s
  ``Groups`` and ``Path`` (moto: no group model; a user in no group). A user's access keys are
  deleted with it, as CloudFormation's user handler does (its delete permissions list
  ``iam:ListAccessKeys`` and ``iam:DeleteAccessKey``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import threading
import types
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from moto.cloudformation import custom_model, parsing
from moto.core.common_models import CloudFormationModel
from moto.iam.models import User, iam_backends
from moto.utilities.utils import get_partition

from gitlab_cfn.standin.patches import ResourceCreateFailed
from gitlab_cfn.standin.patches import patch

RESPONSE_LIMIT = 4096           # bytes of a response object (crpg-ref-responses.html)
ANSWER_TIMEOUT = 120.0          # the stand-in's hour
SERVICE_TIMEOUT_RANGE = (1, 3600)
_ENVIRONMENT = threading.Lock()  # the function's AWS_* variables are the process's while it runs


def _own_endpoint() -> str:
    argv = sys.argv
    port = argv[argv.index("-p") + 1] if "-p" in argv[:-1] else os.environ.get("MOTO_PORT", "5000")
    return f"http://127.0.0.1:{port}"


def _stack_of(account_id: str, region_name: str, stack_id: str):
    from moto.cloudformation import cloudformation_backends

    return cloudformation_backends[account_id][region_name].get_stack(stack_id)


def _function_of_the_stack(stack, token: str) -> Any:
    """The stack's AWS::Lambda::Function whose ARN is ``token``; None when there is none."""
    for logical, resource in (stack.template_dict.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        made = stack.resource_map._parsed_resources.get(logical)
        if made is not None and not isinstance(made, str) and getattr(made, "function_arn", None) == token:
            return made
    return None


def _handler_of(function) -> Any:
    runtime = str(getattr(function, "run_time", "") or "")
    if not runtime.startswith("python3"):
        raise ValueError(f"the stand-in runs Python functions only, not {runtime or 'no runtime'}")
    module_name, _, name = str(function.handler).rpartition(".")
    with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
        source = archive.read(module_name + ".py").decode()
    module = types.ModuleType(module_name)
    exec(compile(source, f"{function.function_name}/{module_name}.py", "exec"), module.__dict__)  # noqa: S102
    return getattr(module, name)


def service_timeout(properties: dict) -> float:
    """How long the answer is waited for: ``ServiceTimeout`` (CloudFormation: an integer from 1
    to 3600, default 3600), at most the stand-in's hour."""
    given = properties.get("ServiceTimeout", SERVICE_TIMEOUT_RANGE[1])
    try:
        seconds = int(str(given))
    except ValueError:
        seconds = 0
    if str(seconds) != str(given).strip() or not SERVICE_TIMEOUT_RANGE[0] <= seconds <= SERVICE_TIMEOUT_RANGE[1]:
        raise ValueError(f"ServiceTimeout {given!r}: must be an integer from {SERVICE_TIMEOUT_RANGE[0]} "
                         f"to {SERVICE_TIMEOUT_RANGE[1]}")
    return min(float(seconds), ANSWER_TIMEOUT)


def _invoke(function, event: dict, region_name: str) -> dict:
    """Run the function on ``event`` with a ResponseURL on 127.0.0.1; its one answer."""
    answers: list[bytes] = []
    timeout = service_timeout(event.get("ResourceProperties") or {})

    class Answer(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802
            answers.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    server.timeout = timeout
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    event = {**event, "ResponseURL": f"http://127.0.0.1:{server.server_port}/cfn-response?X-Amz-Signature=standin"}
    try:
        handler = _handler_of(function)
        variables = {"AWS_ENDPOINT_URL": _own_endpoint(), "AWS_REGION": region_name,
                     "AWS_DEFAULT_REGION": region_name, "AWS_ACCESS_KEY_ID": "standin-function",
                     "AWS_SECRET_ACCESS_KEY": "standin-function", "AWS_LAMBDA_FUNCTION_NAME": function.function_name}
        with _ENVIRONMENT:
            saved = {k: os.environ.get(k) for k in variables}
            os.environ.update(variables)
            try:
                handler(event, None)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        thread.join(timeout)
    except Exception as exc:  # the function raised before answering: Lambda reports it, nobody answers
        raise ValueError(f"the function failed without answering: {type(exc).__name__}: {exc}") from None
    finally:
        server.server_close()
    if not answers:
        raise ValueError(f"the function did not answer CloudFormation in {timeout:g} s "
                         "(ServiceTimeout; no PUT to the ResponseURL)")
    if len(answers[0]) > RESPONSE_LIMIT:
        raise ValueError(f"the function's answer is {len(answers[0])} bytes; CloudFormation takes {RESPONSE_LIMIT}")
    answer = json.loads(answers[0])
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        if answer.get(key) != event[key]:
            raise ValueError(f"the function's answer names {key} {answer.get(key)!r}, not {event[key]!r}")
    if answer.get("Status") not in ("SUCCESS", "FAILED") or not answer.get("PhysicalResourceId"):
        raise ValueError("the function's answer has no Status SUCCESS or FAILED, or no PhysicalResourceId")
    return answer


class _Custom(custom_model.CustomModel):
    """A custom resource that remembers what its Delete needs."""

    physical_id = ""
    request: dict = {}
    function: Any = None

    @property
    def physical_resource_id(self) -> str:
        return self.physical_id or self.resource_name

    def delete(self, account_id: str, region_name: str) -> None:
        event = {**self.request, "RequestType": "Delete", "PhysicalResourceId": self.physical_resource_id,
                 "RequestId": f"{self.request['RequestId']}-delete"}
        answer = _invoke(self.function, event, region_name)
        if answer["Status"] != "SUCCESS":
            raise ValueError(f"{self.logical_id}: {answer.get('Reason') or 'the function answered FAILED'}")


@patch
def custom_resources_run_their_function() -> None:
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        logical_id, stack_id, kind = kwargs["LogicalId"], kwargs["StackId"], kwargs["ResourceType"]
        properties = cloudformation_json.get("Properties") or {}
        token = properties.get("ServiceToken")
        stack = _stack_of(account_id, region_name, stack_id)
        function = _function_of_the_stack(stack, token)
        if function is None:
            raise ResourceCreateFailed(logical_id, kind, f"ServiceToken {token!r} is not a Lambda function of this "
                                                         "stack (the stand-in runs those only)")
        request = {"RequestType": "Create", "ServiceToken": token, "StackId": stack_id,
                   "RequestId": base64.b32encode(os.urandom(10)).decode().lower(),
                   "LogicalResourceId": logical_id, "ResourceType": kind, "ResourceProperties": properties}
        try:
            answer = _invoke(function, request, region_name)
        except ValueError as exc:
            raise ResourceCreateFailed(logical_id, kind, str(exc)) from None
        if answer["Status"] != "SUCCESS":
            raise ResourceCreateFailed(logical_id, kind, answer.get("Reason") or "the function answered FAILED")
        made = _Custom(region_name, request["RequestId"], logical_id, resource_name)
        made.physical_id, made.request, made.function = answer["PhysicalResourceId"], request, function
        made.set_data(answer.get("Data") or {})
        stack.add_custom_resource(made)
        return made

    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):
        """Update: the function gets the new and the old properties; a FAILED answer fails the
        update. A new PhysicalResourceId means a new resource: the old one is sent Delete."""
        old = original_resource
        properties = cloudformation_json.get("Properties") or {}
        if not isinstance(old, _Custom) or properties.get("ServiceToken") != old.request["ServiceToken"]:
            raise ValueError("a custom resource's ServiceToken cannot change (CloudFormation refuses the update)")
        request = {**old.request, "RequestType": "Update", "PhysicalResourceId": old.physical_resource_id,
                   "RequestId": base64.b32encode(os.urandom(10)).decode().lower(),
                   "ResourceProperties": properties, "OldResourceProperties": old.request["ResourceProperties"]}
        answer = _invoke(old.function, request, region_name)
        if answer["Status"] != "SUCCESS":
            raise ValueError(answer.get("Reason") or "the function answered FAILED")
        made = _Custom(region_name, request["RequestId"], old.logical_id, old.resource_name)
        made.physical_id, made.function = answer["PhysicalResourceId"], old.function
        made.request = {k: v for k, v in request.items() if k not in ("OldResourceProperties", "PhysicalResourceId")}
        made.set_data(answer.get("Data") or {})
        if made.physical_id != old.physical_resource_id:
            old.delete(account_id, region_name)
        return made

    custom_model.CustomModel.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    custom_model.CustomModel.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)
    parsing.CustomModel = custom_model.CustomModel

    # No Docker here: a function never runs in a container (moto's Invoke would try), and
    # the stand-in's model data (/moto-api/data.json) no longer breaks on asking for one.
    from moto.awslambda.models import LambdaFunction

    def no_docker(self):
        raise AttributeError("the stand-in has no Docker: functions run in-process (custom resources only)")

    LambdaFunction.docker_client = property(no_docker)


class Group(CloudFormationModel):
    """AWS::IAM::Group: path and inline policies, in moto's IAM backend."""

    def __init__(self, name: str, arn: str):
        self.name, self.arn = name, arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::Group"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "GroupName"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):  # type: ignore[override]
        props = cloudformation_json.get("Properties") or {}
        backend = iam_backends[account_id][get_partition(region_name)]
        name = props.get("GroupName") or resource_name
        group = backend.create_group(name, path=props.get("Path") or "/")
        for policy in props.get("Policies") or []:
            backend.put_group_policy(name, policy["PolicyName"], json.dumps(policy["PolicyDocument"]))
        return cls(name, group.arn)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = iam_backends[account_id][get_partition(region_name)]
        group = backend.get_group(self.name)
        if group.users:
            raise ValueError(f"DeleteConflict: group {self.name} still has users")
        for policy in list(group.policies):
            backend.delete_group_policy(self.name, policy)
        backend.delete_group(self.name)

    def is_created(self) -> bool:
        return True


@patch
def iam_user_groups() -> None:
    original_create = User.create_from_cloudformation_json.__func__

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        user = original_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = iam_backends[account_id][get_partition(region_name)]
        for group in (cloudformation_json.get("Properties") or {}).get("Groups") or []:
            backend.add_user_to_group(group, user.name)   # NoSuchEntity fails the resource, as IAM
        return user

    def delete(self, account_id: str, region_name: str) -> None:
        backend = iam_backends[account_id][get_partition(region_name)]
        for key in list(self.access_keys):
            backend.delete_access_key(key.access_key_id, self.name)
        for group in backend.get_groups_for_user(self.name):
            backend.remove_user_from_group(group.name, self.name)
        backend.delete_user(self.name)

    User.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    User.delete = delete
    parsing.get_model_map.cache_clear()


# A new account's Lambda concurrency quota (Service Quotas "Concurrent executions"), and the
# executions Lambda keeps unreserved: min(100, quota).
ACCOUNT_CONCURRENCY = 10
UNRESERVED_MINIMUM = min(100, ACCOUNT_CONCURRENCY)


def reservation_problem(backend, function_name: str, reserved: Any) -> str | None:
    """Lambda's refusal of reserving ``reserved`` executions for ``function_name``, or None."""
    others = sum(int(f.reserved_concurrency) for f in backend.list_functions()
                 if f.reserved_concurrency and f.function_name != function_name)
    if ACCOUNT_CONCURRENCY - others - int(reserved) < UNRESERVED_MINIMUM:
        return ("Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MINIMUM}].")
    return None


@patch
def lambda_reserved_concurrency_within_the_account_quota() -> None:
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.models import LambdaBackend, LambdaFunction, lambda_backends

    original_create = LambdaFunction.create_from_cloudformation_json.__func__
    original_put = LambdaBackend.put_function_concurrency

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        reserved = (cloudformation_json.get("Properties") or {}).get("ReservedConcurrentExecutions")
        if reserved is not None:
            problem = reservation_problem(lambda_backends[account_id][region_name], resource_name, reserved)
            if problem:
                raise ResourceCreateFailed(kwargs.get("LogicalId", resource_name), "AWS::Lambda::Function", problem)
        return original_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    def put_function_concurrency(self, function_name, reserved_concurrency):
        problem = reservation_problem(self, function_name, reserved_concurrency)
        if problem:
            raise InvalidParameterValueException(problem)
        return original_put(self, function_name, reserved_concurrency)

    LambdaFunction.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    LambdaBackend.put_function_concurrency = put_function_concurrency
    parsing.get_model_map.cache_clear()


@patch
def model_data_of_every_resource() -> None:
    from moto.core.model_instances import model_data
    from moto.moto_api._internal.responses import MotoAPIResponse

    def readable(instance: Any) -> dict:
        out = {}
        for attr in dir(instance):
            if attr.startswith("_"):
                continue
            try:
                value = getattr(instance, attr)
                json.dumps(value)
            except Exception:  # write-only, not JSON, or not there: left out, as moto leaves out the last two
                continue
            out[attr] = value
        return out

    def data(self, request, full_url, headers):
        results = {service: {name: [readable(i) for i in model.instances_tracked]
                             for name, model in sorted(models.items())}
                   for service, models in sorted(model_data.items())}
        return 200, {"Content-Type": "application/javascript"}, json.dumps(results)

    MotoAPIResponse.model_data = data
