#!/usr/bin/env bash
# `make e2e`: the taskcat matrix against real AWS, when credentials are present.
#
# Builds every variant of taskcat.yml, runs taskcat from the repository root without its
# own delete (the database's deletion protection would make it fail), then deletes each
# test stack with `gitlab-cfn destroy`, which turns that protection off in the open and
# reports what the data became. Exits with taskcat's status.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

if ! "$BIN/python" -c 'import boto3; boto3.client("sts").get_caller_identity()' >/dev/null 2>&1; then
  echo "make e2e: SKIPPED: no usable AWS credentials (sts:GetCallerIdentity failed); nothing was deployed."
  exit 0
fi

"$BIN/gitlab-cfn" build -q
"$BIN/gitlab-cfn" build -q --config configs/three-az.yaml --out build-three-az
"$BIN/gitlab-cfn" build -q --config configs/no-bastion.yaml --out build-no-bastion
"$BIN/gitlab-cfn" build -q --config configs/size-3k.yaml --out build-3k
for out in build build-three-az build-no-bastion build-3k; do
  "$BIN/gitlab-cfn" lint -q --build "$out"
  "$BIN/gitlab-cfn" check -q --build "$out"
done

status=0
"$BIN/taskcat" test run --no-delete || status=$?

# Every region of the matrix; each taskcat stack is named tCaT-<test>-<id>.
regions=$("$BIN/python" -c 'import yaml; c = yaml.safe_load(open("taskcat.yml")); print(" ".join(sorted({r for t in c["tests"].values() for r in t["regions"]})))')
for region in $regions; do
  for stack in $("$BIN/python" - "$region" <<'PY'
import sys, boto3
cfn = boto3.client("cloudformation", region_name=sys.argv[1])
for page in cfn.get_paginator("list_stacks").paginate(StackStatusFilter=[
        "CREATE_COMPLETE", "CREATE_FAILED", "ROLLBACK_COMPLETE", "UPDATE_COMPLETE", "DELETE_FAILED"]):
    for s in page["StackSummaries"]:
        if s["StackName"].startswith("tCaT-") and "ParentId" not in s:
            print(s["StackName"])
PY
); do
    echo "deleting $stack in $region"
    "$BIN/gitlab-cfn" destroy --region "$region" --stack-name "$stack" --confirm "$stack" || status=1
  done
done
exit "$status"
