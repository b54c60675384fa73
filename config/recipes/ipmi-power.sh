#!/bin/sh
# ipmi-power.sh off|status BMC_HOST: fences a machine through its BMC with ipmitool (IPMI 2.0
# over LAN), for a [[watch.pipeline.fence]] step (off) and its confirmation (status).
#
#   off     `chassis power off`. A machine already off is success; the action is recorded under
#           QUORATE_IDEMPOTENCY_KEY, so a retried or resumed fence does not act again. Dry run:
#           reads the power state and says what it would do.
#   status  `chassis power status`: exits 0 and prints "Chassis Power is off" when the machine
#           is off, exits 1 when it is on (the confirmation polls until it exits 0). A read
#           that fails (BMC unreachable, wrong credentials) exits 1 too, with ipmitool's reason.
#
# Credentials: IPMI_USER (default "admin") and the password in the file IPMI_PASSWORD_FILE
# (`ipmitool -f`: never on the command line or in the fleet file); IPMI_INTERFACE (default
# "lanplus"). Set them in the step's `env`.
. "$(dirname -- "$0")/common.sh"

usage() { die "$EX_USAGE" "usage: ipmi-power.sh off|status BMC_HOST"; }
[ $# -eq 2 ] || usage
verb=$1
host=$2
case $verb in off | status) ;; *) usage ;; esac
[ -n "$host" ] || usage

ipmitool=$(program "${IPMITOOL:-ipmitool}") || die "$EX_MISSING" "ipmitool is not installed (apt-get install ipmitool)"
pwfile=${IPMI_PASSWORD_FILE:-}
[ -n "$pwfile" ] || die "$EX_USAGE" "IPMI_PASSWORD_FILE is not set: give the BMC password in a file (step env)"
[ -r "$pwfile" ] || die "$EX_USAGE" "IPMI_PASSWORD_FILE $pwfile cannot be read"

ipmi() {
	"$ipmitool" -I "${IPMI_INTERFACE:-lanplus}" -H "$host" -U "${IPMI_USER:-admin}" -f "$pwfile" "$@"
}

# Prints "on" or "off"; fails when the BMC did not answer. ipmitool's line goes to stderr,
# which the step's outcome keeps.
state_of() {
	line=$(ipmi chassis power status 2>&1) || {
		warn "chassis power status at $host failed: $line"
		return 1
	}
	warn "$host: $line"
	case $line in
	*"Power is off"*) echo off ;;
	*"Power is on"*) echo on ;;
	*)
		warn "unexpected answer from $host: $line"
		return 1
		;;
	esac
}

if [ "$verb" = status ]; then
	state=$(state_of) || exit "$EX_FAILED"
	if [ "$state" = off ]; then
		say "$host: Chassis Power is off"
		exit "$EX_OK"
	fi
	exit "$EX_FAILED"
fi

exit_if_done
check_state_dir
state=$(state_of) || exit "$EX_FAILED"
if is_dry_run; then
	say "dry run: $host is $state; would run chassis power off ($(context))"
	exit "$EX_OK"
fi
if [ "$state" = off ]; then
	mark_done "$host was already off"
	say "$host is already off ($(context))"
	exit "$EX_OK"
fi
mark_started "off $host"
out=$(ipmi chassis power off 2>&1) || die "$EX_FAILED" "chassis power off at $host failed: $out"
mark_done "powered off $host"
say "$host: $out ($(context))"
