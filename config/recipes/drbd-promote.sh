#!/bin/sh
# drbd-promote.sh: make DRBD resources Primary on this node.
#
#   drbd-promote.sh [--force] RESOURCE... | all
#
# For each resource: `drbdadm role` tells its role; a Primary is left alone; otherwise
# `drbdadm primary RESOURCE` promotes it and the role is checked again. Refuses (exit 7) while
# drbdadm reports the peer as Primary (DRBD 8.4 shows it): the other site still holds the
# volume. --force promotes even when the local data is not known to be UpToDate (`drbdadm
# primary --force`): only for a site whose peer is known to be lost for good, since it may
# make stale data the reference.
#
# Environment: DRBDADM (program, default drbdadm on PATH), DRBD_PROC (default /proc/drbd),
# RECIPE_STATE_DIR, and the QUORATE_* variables of the exec actuator (see README.md).
# Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

FORCE=
if [ "${1:-}" = --force ]; then
	FORCE=--force
	shift
fi
case ${1:-} in -*) die "$EX_USAGE" "usage: $RECIPE [--force] RESOURCE... | all" ;; esac
TARGET=Primary
VERB=primary
drbd_set_role "$@"
