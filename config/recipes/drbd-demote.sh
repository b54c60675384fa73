#!/bin/sh
# drbd-demote.sh: make DRBD resources Secondary on this node.
#
#   drbd-demote.sh RESOURCE... | all
#
# For each resource: `drbdadm role` tells its role; a Secondary is left alone; otherwise
# `drbdadm secondary RESOURCE` demotes it and the role is checked again. DRBD refuses while
# the device is in use (mounted, opened by a VM): stop its users in an earlier step. The
# compensation of a drbd-promote.sh step, and what a failback runs at the backup site.
#
# Environment: DRBDADM (program, default drbdadm on PATH), DRBD_PROC (default /proc/drbd),
# RECIPE_STATE_DIR, and the QUORATE_* variables of the exec actuator (see README.md).
# Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

case ${1:-} in -*) die "$EX_USAGE" "usage: $RECIPE RESOURCE... | all" ;; esac
FORCE=
TARGET=Secondary
VERB=secondary
drbd_set_role "$@"
