"""Stack termination protection, which moto records but does not enforce.

moto keeps ``EnableTerminationProtection`` from CreateStack and reports it, but
deletes a protected stack and has no ``UpdateTerminationProtection``. AWS refuses
``DeleteStack`` while protection is on ("Stack [NAME] cannot be deleted while
TerminationProtection is enabled", a ValidationError), and turns it on or off with
``UpdateTerminationProtection`` (which answers the StackId).

Sources: botocore ``cloudformation/2010-05-15/service-2.json`` (UpdateTerminationProtection,
DeleteStack); AWS CloudFormation User Guide, "Protect CloudFormation stacks from being
deleted" (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-protect-stacks.html).
"""

from __future__ import annotations

from moto.cloudformation import models as cfn_models
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import ValidationError
from moto.core.responses import ActionResult


def _live(backend, name_or_id: str):
    if name_or_id in backend.stacks:
        return backend.stacks[name_or_id]
    return next((s for s in backend.stacks.values() if s.name == name_or_id), None)


def install() -> None:
    original_delete = cfn_models.CloudFormationBackend.delete_stack

    def delete_stack(self, name_or_stack_id: str) -> None:
        stack = _live(self, name_or_stack_id)
        if stack is not None and getattr(stack, "enable_termination_protection", False):
            raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while "
                                          "TerminationProtection is enabled")
        original_delete(self, name_or_stack_id)

    cfn_models.CloudFormationBackend.delete_stack = delete_stack

    def update_termination_protection(self) -> ActionResult:
        name = self._get_param("StackName")
        enable = self._get_param("EnableTerminationProtection")
        if enable is None:
            raise ValidationError(message="1 validation error detected: Value null at "
                                          "'enableTerminationProtection' failed to satisfy constraint: "
                                          "Member must not be null")
        stack = _live(self.cloudformation_backend, name)
        if stack is None:
            raise ValidationError(name)
        stack.enable_termination_protection = str(enable).lower() == "true"
        return ActionResult({"StackId": stack.stack_id})

    cfn_responses.CloudFormationResponse.update_termination_protection = update_termination_protection
