"""Service Catalog beyond moto's portfolios and products, as the stand-in serves it.

moto keeps portfolios and products only. Added here, on moto's own backend and
response classes (installed by the ``servicecatalog_*`` patches):

- provisioning artifacts (product versions): created with the product and by
  ``CreateProvisioningArtifact``; listed, described, updated (active, guidance)
  and deleted, never the last one. As Service Catalog does, an artifact's
  template is fetched when it is created: a ``LoadTemplateFromURL`` naming no
  object in the stand-in's S3 is refused;
- portfolio associations with products and with IAM principals;
- constraints (``LAUNCH`` and the others), only on a product of the portfolio.

Identifiers have AWS's shapes (``pa-``, ``cons-`` and 13 lower-case letters
and digits). Runs inside the stand-in's virtual environment, next to moto.
"""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.servicecatalog.exceptions import (
    InvalidParametersException,
    ResourceNotFoundException,
)
from moto.servicecatalog.models import ServiceCatalogBackend
from moto.servicecatalog.responses import ServiceCatalogResponse

TEMPLATE_URL = re.compile(r"^https://([a-z0-9.-]+)\.s3(?:[.-]([a-z0-9-]+))?\.amazonaws\.com(?:\.cn)?/(.+)$")
CONSTRAINT_TYPES = ("LAUNCH", "NOTIFICATION", "RESOURCE_UPDATE", "STACKSET", "TEMPLATE")


def new_id(prefix: str) -> str:
    return prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=13))


def _state(backend: ServiceCatalogBackend) -> dict[str, Any]:
    """What this module keeps on a backend (one per account and region)."""
    if not hasattr(backend, "gitlab_cfn"):
        backend.gitlab_cfn = {"artifacts": {}, "artifact_tokens": {}, "product_portfolios": {}, "principals": {},
                              "constraints": {}}
    return backend.gitlab_cfn


def _product(backend: ServiceCatalogBackend, product_id: str):
    product = backend.products.get(product_id)
    if product is None:
        raise ResourceNotFoundException(f"Product {product_id} not found.")
    return product


def _portfolio(backend: ServiceCatalogBackend, portfolio_id: str):
    portfolio = backend.portfolios.get(portfolio_id)
    if portfolio is None:
        raise ResourceNotFoundException(f"Portfolio {portfolio_id} not found.")
    return portfolio


# -- provisioning artifacts --------------------------------------------------------------

def fetch_template(account_id: str, url: str) -> None:
    """Refuse an artifact whose template URL names no object in the stand-in's S3."""
    from moto.s3.models import s3_backends

    match = TEMPLATE_URL.match(url or "")
    if not match:
        raise InvalidParametersException(f"LoadTemplateFromURL {url!r} is not an S3 object URL.")
    bucket, key = match.group(1), match.group(3)
    try:
        found = s3_backends[account_id]["aws"].get_object(bucket, key)
    except Exception:  # noqa: BLE001 - a missing bucket is the same failure to fetch
        found = None
    if found is None:
        raise InvalidParametersException(f"Failed to fetch the template at {url}: no such object.")


def add_artifact(backend: ServiceCatalogBackend, product_id: str, parameters: dict, fetched: bool = False) -> dict:
    """Record a version of a product; its template is fetched first unless the caller did."""
    info = parameters.get("Info") or {}
    if not fetched:
        fetch_template(backend.account_id, info.get("LoadTemplateFromURL"))
    artifacts = _state(backend)["artifacts"].setdefault(product_id, [])
    name = parameters.get("Name") or f"v{len(artifacts) + 1}"
    if any(a["Name"] == name for a in artifacts):
        raise InvalidParametersException(f"Product {product_id} already has a provisioning artifact named {name}.")
    artifact = {
        "Id": new_id("pa-"), "Name": name, "Description": parameters.get("Description", ""),
        "Type": parameters.get("Type", "CLOUD_FORMATION_TEMPLATE"), "CreatedTime": utcnow(),
        "Active": True, "Guidance": "DEFAULT", "Info": dict(info),
    }
    artifacts.append(artifact)
    return artifact


def _detail(artifact: dict) -> dict:
    return {k: artifact[k] for k in ("Id", "Name", "Description", "Type", "CreatedTime", "Active", "Guidance")}


def _artifact_result(artifact: dict) -> ActionResult:
    return ActionResult({"ProvisioningArtifactDetail": _detail(artifact), "Info": artifact["Info"],
                         "Status": "AVAILABLE"})


def _summary(artifact: dict) -> dict:
    return {"Id": artifact["Id"], "Name": artifact["Name"], "Description": artifact["Description"],
            "CreatedTime": artifact["CreatedTime"], "ProvisioningArtifactMetadata": {}}


def _artifact(backend: ServiceCatalogBackend, product_id: str, artifact_id: str | None,
              name: str | None = None) -> dict:
    _product(backend, product_id)
    for artifact in _state(backend)["artifacts"].get(product_id, []):
        if artifact["Id"] == artifact_id or (artifact_id is None and artifact["Name"] == name):
            return artifact
    raise ResourceNotFoundException(f"Provisioning artifact {artifact_id or name} of product {product_id} not found.")


def install_artifacts() -> None:
    original_create = ServiceCatalogResponse.create_product

    def create_product(self) -> ActionResult:
        params = json.loads(self.body)
        parameters = params.get("ProvisioningArtifactParameters") or {}
        # Fetched before the product exists: a bad template creates nothing.
        fetch_template(self.current_account, (parameters.get("Info") or {}).get("LoadTemplateFromURL"))
        result = original_create(self)
        detail = result.result["ProductViewDetail"]
        product_id = detail["ProductViewSummary"]["ProductId"]
        artifact = add_artifact(self.servicecatalog_backend, product_id, parameters, fetched=True)
        result.result["ProvisioningArtifactDetail"] = _detail(artifact)
        return result

    def product_and_artifacts(self):
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        product = backend.describe_product(None, params.get("Id"), params.get("Name"))
        return product, _state(backend)["artifacts"].get(product.id, [])

    def describe_product(self) -> ActionResult:
        product, artifacts = product_and_artifacts(self)
        return ActionResult({"ProductViewSummary": product.to_dict(),
                             "ProvisioningArtifacts": [_summary(a) for a in artifacts if a["Active"]],
                             "Budgets": [], "LaunchPaths": []})

    def describe_product_as_admin(self) -> ActionResult:
        product, artifacts = product_and_artifacts(self)
        return ActionResult({
            "ProductViewDetail": {"ProductViewSummary": product.to_dict(), "Status": "AVAILABLE",
                                  "ProductARN": product.arn, "CreatedTime": product.created_time},
            "ProvisioningArtifactSummaries": [_summary(a) for a in artifacts],
            "Tags": product.tags, "TagOptions": [], "Budgets": [],
        })

    def create_provisioning_artifact(self) -> ActionResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        _product(backend, params["ProductId"])
        token = params.get("IdempotencyToken")
        seen = _state(backend)["artifact_tokens"]
        if token and token in seen:
            artifact = _artifact(backend, params["ProductId"], seen[token])
        else:
            artifact = add_artifact(backend, params["ProductId"], params.get("Parameters") or {})
            if token:
                seen[token] = artifact["Id"]
        return _artifact_result(artifact)

    def list_provisioning_artifacts(self) -> ActionResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        _product(backend, params["ProductId"])
        return ActionResult({"ProvisioningArtifactDetails": [
            _detail(a) for a in _state(backend)["artifacts"].get(params["ProductId"], [])]})

    def describe_provisioning_artifact(self) -> ActionResult:
        params = json.loads(self.body)
        artifact = _artifact(self.servicecatalog_backend, params["ProductId"],
                             params.get("ProvisioningArtifactId"), params.get("ProvisioningArtifactName"))
        return _artifact_result(artifact)

    def update_provisioning_artifact(self) -> ActionResult:
        params = json.loads(self.body)
        artifact = _artifact(self.servicecatalog_backend, params["ProductId"], params["ProvisioningArtifactId"])
        if "Guidance" in params and params["Guidance"] not in ("DEFAULT", "DEPRECATED"):
            raise InvalidParametersException("Guidance must be DEFAULT or DEPRECATED.")
        for key in ("Name", "Description", "Active", "Guidance"):
            if key in params:
                artifact[key] = params[key]
        return _artifact_result(artifact)

    def delete_provisioning_artifact(self) -> EmptyResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        artifact = _artifact(backend, params["ProductId"], params["ProvisioningArtifactId"])
        artifacts = _state(backend)["artifacts"][params["ProductId"]]
        if len(artifacts) == 1:
            raise InvalidParametersException("The last provisioning artifact of a product cannot be deleted.")
        artifacts.remove(artifact)
        return EmptyResult()

    for function in (create_product, describe_product, describe_product_as_admin, create_provisioning_artifact,
                     list_provisioning_artifacts, describe_provisioning_artifact, update_provisioning_artifact,
                     delete_provisioning_artifact):
        setattr(ServiceCatalogResponse, function.__name__, function)


# -- portfolio associations ----------------------------------------------------------

def associate_product(backend: ServiceCatalogBackend, portfolio_id: str, product_id: str) -> None:
    _portfolio(backend, portfolio_id)
    _product(backend, product_id)
    portfolios = _state(backend)["product_portfolios"].setdefault(product_id, [])
    if portfolio_id not in portfolios:
        portfolios.append(portfolio_id)


def disassociate_product(backend: ServiceCatalogBackend, portfolio_id: str, product_id: str) -> None:
    portfolios = _state(backend)["product_portfolios"].get(product_id, [])
    if portfolio_id not in portfolios:
        raise ResourceNotFoundException(f"Product {product_id} is not in portfolio {portfolio_id}.")
    if any(c["PortfolioId"] == portfolio_id and c["ProductId"] == product_id
           for c in _state(backend)["constraints"].values()):
        raise InvalidParametersException(
            f"Product {product_id} has constraints in portfolio {portfolio_id}: delete them first.")
    portfolios.remove(portfolio_id)


def associate_principal(backend: ServiceCatalogBackend, portfolio_id: str, arn: str, kind: str) -> None:
    _portfolio(backend, portfolio_id)
    if kind not in ("IAM", "IAM_PATTERN"):
        raise InvalidParametersException("PrincipalType must be IAM or IAM_PATTERN.")
    if kind == "IAM" and not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:(role|group|user)/", arn or ""):
        raise InvalidParametersException(f"PrincipalARN {arn!r} is not an IAM role, group or user ARN.")
    principals = _state(backend)["principals"].setdefault(portfolio_id, [])
    if not any(p["PrincipalARN"] == arn for p in principals):
        principals.append({"PrincipalARN": arn, "PrincipalType": kind})


def disassociate_principal(backend: ServiceCatalogBackend, portfolio_id: str, arn: str) -> None:
    principals = _state(backend)["principals"].get(portfolio_id, [])
    kept = [p for p in principals if p["PrincipalARN"] != arn]
    if len(kept) == len(principals):
        raise ResourceNotFoundException(f"Principal {arn} is not associated with portfolio {portfolio_id}.")
    _state(backend)["principals"][portfolio_id] = kept


def install_associations() -> None:
    original_delete_portfolio = ServiceCatalogBackend.delete_portfolio
    original_delete_product = ServiceCatalogBackend.delete_product

    def delete_portfolio(self, accept_language, id):  # noqa: A002 - moto's argument name
        if any(id in portfolios for portfolios in _state(self)["product_portfolios"].values()):
            raise InvalidParametersException(f"Portfolio {id} still has products: disassociate them first.")
        _state(self)["principals"].pop(id, None)
        return original_delete_portfolio(self, accept_language, id)

    def delete_product(self, accept_language, id):  # noqa: A002
        if _state(self)["product_portfolios"].get(id):
            raise InvalidParametersException(f"Product {id} is still in a portfolio: disassociate it first.")
        _state(self)["artifacts"].pop(id, None)
        return original_delete_product(self, accept_language, id)

    ServiceCatalogBackend.delete_portfolio = delete_portfolio
    ServiceCatalogBackend.delete_product = delete_product

    def associate_product_with_portfolio(self) -> EmptyResult:
        params = json.loads(self.body)
        associate_product(self.servicecatalog_backend, params["PortfolioId"], params["ProductId"])
        return EmptyResult()

    def disassociate_product_from_portfolio(self) -> EmptyResult:
        params = json.loads(self.body)
        disassociate_product(self.servicecatalog_backend, params["PortfolioId"], params["ProductId"])
        return EmptyResult()

    def list_portfolios_for_product(self) -> ActionResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        _product(backend, params["ProductId"])
        ids = _state(backend)["product_portfolios"].get(params["ProductId"], [])
        return ActionResult({"PortfolioDetails": [backend.portfolios[i].to_dict() for i in ids]})

    def search_products_as_admin(self) -> ActionResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        portfolio_id = params.get("PortfolioId")
        products = [p for p in backend.products.values()
                    if portfolio_id is None or portfolio_id in _state(backend)["product_portfolios"].get(p.id, [])]
        return ActionResult({"ProductViewDetails": [
            {"ProductViewSummary": p.to_dict(), "Status": "AVAILABLE", "ProductARN": p.arn,
             "CreatedTime": p.created_time} for p in products]})

    def associate_principal_with_portfolio(self) -> EmptyResult:
        params = json.loads(self.body)
        associate_principal(self.servicecatalog_backend, params["PortfolioId"], params["PrincipalARN"],
                            params["PrincipalType"])
        return EmptyResult()

    def disassociate_principal_from_portfolio(self) -> EmptyResult:
        params = json.loads(self.body)
        disassociate_principal(self.servicecatalog_backend, params["PortfolioId"], params["PrincipalARN"])
        return EmptyResult()

    def list_principals_for_portfolio(self) -> ActionResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        _portfolio(backend, params["PortfolioId"])
        return ActionResult({"Principals": list(_state(backend)["principals"].get(params["PortfolioId"], []))})

    for function in (associate_product_with_portfolio, disassociate_product_from_portfolio,
                     list_portfolios_for_product, search_products_as_admin, associate_principal_with_portfolio,
                     disassociate_principal_from_portfolio, list_principals_for_portfolio):
        setattr(ServiceCatalogResponse, function.__name__, function)


# -- constraints ---------------------------------------------------------------------

def create_constraint(backend: ServiceCatalogBackend, portfolio_id: str, product_id: str, kind: str,
                      parameters: str, description: str = "") -> dict:
    _portfolio(backend, portfolio_id)
    _product(backend, product_id)
    if portfolio_id not in _state(backend)["product_portfolios"].get(product_id, []):
        raise ResourceNotFoundException(f"Product {product_id} is not in portfolio {portfolio_id}.")
    if kind not in CONSTRAINT_TYPES:
        raise InvalidParametersException(f"Type must be one of {', '.join(CONSTRAINT_TYPES)}.")
    try:
        values = json.loads(parameters)
    except (TypeError, ValueError):
        raise InvalidParametersException("Parameters must be a JSON document.") from None
    if kind == "LAUNCH":
        if not isinstance(values, dict) or not (values.get("RoleArn") or values.get("LocalRoleName")):
            raise InvalidParametersException("A LAUNCH constraint needs RoleArn or LocalRoleName.")
        if any(c["Type"] == "LAUNCH" and c["PortfolioId"] == portfolio_id and c["ProductId"] == product_id
               for c in _state(backend)["constraints"].values()):
            raise InvalidParametersException("The product already has a launch constraint in this portfolio.")
    constraint = {"ConstraintId": new_id("cons-"), "Type": kind, "Description": description or "",
                  "Owner": backend.account_id, "ProductId": product_id, "PortfolioId": portfolio_id,
                  "Parameters": parameters}
    _state(backend)["constraints"][constraint["ConstraintId"]] = constraint
    return constraint


def delete_constraint(backend: ServiceCatalogBackend, constraint_id: str) -> None:
    if _state(backend)["constraints"].pop(constraint_id, None) is None:
        raise ResourceNotFoundException(f"Constraint {constraint_id} not found.")


def _constraint_detail(constraint: dict) -> dict:
    return {k: v for k, v in constraint.items() if k != "Parameters"}


def _constraint_result(constraint: dict) -> ActionResult:
    return ActionResult({"ConstraintDetail": _constraint_detail(constraint),
                         "ConstraintParameters": constraint["Parameters"], "Status": "AVAILABLE"})


def install_constraints() -> None:
    def create_constraint_action(self) -> ActionResult:
        params = json.loads(self.body)
        constraint = create_constraint(self.servicecatalog_backend, params["PortfolioId"], params["ProductId"],
                                       params["Type"], params["Parameters"], params.get("Description", ""))
        return _constraint_result(constraint)

    def describe_constraint(self) -> ActionResult:
        params = json.loads(self.body)
        constraint = _state(self.servicecatalog_backend)["constraints"].get(params["Id"])
        if constraint is None:
            raise ResourceNotFoundException(f"Constraint {params['Id']} not found.")
        return _constraint_result(constraint)

    def delete_constraint_action(self) -> EmptyResult:
        params = json.loads(self.body)
        delete_constraint(self.servicecatalog_backend, params["Id"])
        return EmptyResult()

    def list_constraints_for_portfolio(self) -> ActionResult:
        params = json.loads(self.body)
        backend = self.servicecatalog_backend
        _portfolio(backend, params["PortfolioId"])
        found = [_constraint_detail(c) for c in _state(backend)["constraints"].values()
                 if c["PortfolioId"] == params["PortfolioId"]
                 and params.get("ProductId") in (None, c["ProductId"])]
        return ActionResult({"ConstraintDetails": found})

    ServiceCatalogResponse.create_constraint = create_constraint_action
    ServiceCatalogResponse.describe_constraint = describe_constraint
    ServiceCatalogResponse.delete_constraint = delete_constraint_action
    ServiceCatalogResponse.list_constraints_for_portfolio = list_constraints_for_portfolio
