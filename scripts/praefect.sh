# shellcheck shell=bash
# STUB, NOT A BOOT SCRIPT: a placeholder so that the compile side (branch i11-compile)
# can build the praefect role's user data and boot bundle. The Praefect boot script is
# written on branch i11-boot and replaces this file at merge. It configures nothing and
# fails the boot on purpose, so that a stack built with it never looks healthy.
#
# Expects from the preamble (contract of issue 11): AWS_REGION CFN_STACK CFN_RESOURCE
# DB_HOST DB_PORT DB_SECRET_ARN PRAEFECT_DB_NAME PRAEFECT_DB_SECRET_ARN
# PRAEFECT_EXTERNAL_SECRET_ARN PRAEFECT_INTERNAL_SECRET_ARN GITALY_NODES VIRTUAL_STORAGE.

ROLE=praefect

main() {
  start_boot
  require_env AWS_REGION CFN_STACK DB_HOST DB_PORT DB_SECRET_ARN PRAEFECT_DB_NAME \
    PRAEFECT_DB_SECRET_ARN PRAEFECT_EXTERNAL_SECRET_ARN PRAEFECT_INTERNAL_SECRET_ARN GITALY_NODES \
    VIRTUAL_STORAGE
  die "$ROLE.sh is a stub of the compile branch: the Praefect boot script is not in this build"
}

main "$@"
