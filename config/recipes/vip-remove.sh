#!/bin/sh
# vip-remove.sh: take a service's virtual IP off this host.
#
#   vip-remove.sh ADDRESS[/LEN] DEVICE
#
# Removes ADDRESS (default length /32, or /128 for IPv6) from DEVICE with `ip address del`,
# so that this host stops answering ARP / neighbour solicitations and TCP for it; the host
# that takes it over announces it (vip-add.sh). An address that is not on DEVICE is success:
# there is nothing to remove (a retry, or a host that already lost it). The compensation (and
# the failback) is vip-add.sh with the same arguments.
#
# Environment: VIP_NETNS (act inside that named network namespace: `ip -n NS`), IP (program,
# default ip), RECIPE_STATE_DIR, and the QUORATE_* variables of the exec actuator (see
# README.md). Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

[ $# -eq 2 ] || die "$EX_USAGE" "usage: $RECIPE ADDRESS[/LEN] DEVICE"
case $1 in -*) die "$EX_USAGE" "usage: $RECIPE ADDRESS[/LEN] DEVICE" ;; esac
vip_parse "$1" "$2"

exit_if_done
check_state_dir
vip_check_programs
if [ -n "$VIP_NS" ] && ! "$IP_BIN" netns list 2>/dev/null | cut -d ' ' -f 1 | grep -qx "$VIP_NS"; then
	die "$EX_NOT_FOUND" "network namespace $VIP_NS not found ('ip netns list')"
fi
out=$(vip_ip -o link show dev "$VIP_DEV" 2>&1) || die "$EX_NOT_FOUND" "device $VIP_DEV not" \
	"found$VIP_WHERE: $out"

if ! vip_present; then
	if is_dry_run; then
		say "dry run: $VIP_ADDR is not on $VIP_DEV$VIP_WHERE: nothing would be done"
		exit "$EX_OK"
	fi
	mark_done "$VIP_ADDR was not on $VIP_DEV$VIP_WHERE"
	say "$VIP_ADDR is not on $VIP_DEV$VIP_WHERE: nothing to remove ($(context))"
	exit "$EX_OK"
fi

if is_dry_run; then
	say "dry run: $VIP_ADDR is on $VIP_DEV$VIP_WHERE; would run: ip address del $VIP_CIDR dev $VIP_DEV"
	exit "$EX_OK"
fi

mark_started "del $VIP_CIDR $VIP_DEV"
out=$(vip_ip address del "$VIP_CIDR" dev "$VIP_DEV" 2>&1) || die "$EX_FAILED" \
	"'ip address del $VIP_CIDR dev $VIP_DEV'$VIP_WHERE failed: $out"
if vip_present; then
	die "$EX_FAILED" "'ip address del $VIP_CIDR dev $VIP_DEV' succeeded but $VIP_ADDR is" \
		"still on $VIP_DEV$VIP_WHERE"
fi
mark_done "removed $VIP_CIDR from $VIP_DEV$VIP_WHERE"
say "removed $VIP_CIDR from $VIP_DEV$VIP_WHERE ($(context))"
