#!/bin/sh
# vip-add.sh: bring a service's virtual IP up on this host and tell the segment where it is.
#
#   vip-add.sh [--count N] ADDRESS[/LEN] DEVICE
#
# Adds ADDRESS (default length /32, or /128 for IPv6) to DEVICE with `ip address add`, then
# makes the neighbours of the shared L2 segment (the stretched VLAN) send to this host:
#   IPv4  gratuitous ARP: `arping -U -c 1 -I DEVICE ADDRESS` (iputils-arping) N times, an
#         unsolicited ARP request that every host and switch on the segment takes as the new
#         owner of ADDRESS; N defaults to 3 (the first goes at once, the others 0.2 s apart,
#         in case one is lost);
#   IPv6  an unsolicited neighbour advertisement from the kernel: net.ipv6.conf.DEVICE.
#         ndisc_notify=1 is set before the address is added, and the kernel advertises it
#         once duplicate address detection found nobody else holding it (no extra package).
#         A duplicate (the old owner still holds it) fails DAD: exit 7, the address removed.
# An address already on DEVICE is announced again and not added twice. The compensation (and
# the failback) is vip-remove.sh with the same arguments.
#
# Environment: VIP_NETNS (act inside that named network namespace: `ip -n NS`, `ip netns exec
# NS arping`), IP (program, default ip), ARPING (program, default arping), RECIPE_STATE_DIR,
# and the QUORATE_* variables of the exec actuator (see README.md). Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

usage() { die "$EX_USAGE" "usage: $RECIPE [--count N] ADDRESS[/LEN] DEVICE"; }

count=3
while [ $# -gt 0 ]; do
	case $1 in
	--count)
		[ $# -ge 2 ] || usage
		count=$2
		shift
		;;
	--) shift && break ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
[ $# -eq 2 ] || usage
case $count in '' | *[!0-9]* | 0) die "$EX_USAGE" "--count must be a whole number of at least 1 (got '$count')" ;; esac
vip_parse "$1" "$2"

exit_if_done
check_state_dir
vip_check_programs
[ "$VIP_FAMILY" = 4 ] && vip_check_arping
vip_check_device

if [ "$VIP_FAMILY" = 4 ]; then
	announce="arping -U -c 1 -I $VIP_DEV $VIP_ADDR ($count times, 0.2 s apart)"
else
	announce="sysctl net.ipv6.conf.$VIP_DEV.ndisc_notify=1 before the add (unsolicited NA after DAD)"
fi

if vip_present; then
	if is_dry_run; then
		say "dry run: $VIP_CIDR is already on $VIP_DEV$VIP_WHERE; would announce it again: $announce"
		exit "$EX_OK"
	fi
	mark_started "announce $VIP_CIDR $VIP_DEV"
	vip_announce "$count"
	mark_done "$VIP_CIDR was already on $VIP_DEV$VIP_WHERE; announced"
	say "$VIP_CIDR was already on $VIP_DEV$VIP_WHERE; announced ($(context))"
	exit "$EX_OK"
fi

if is_dry_run; then
	say "dry run: $VIP_DEV$VIP_WHERE is up to take $VIP_CIDR; would run: ip address add" \
		"$VIP_CIDR dev $VIP_DEV; $announce"
	exit "$EX_OK"
fi

mark_started "add $VIP_CIDR $VIP_DEV"
if [ "$VIP_FAMILY" = 6 ]; then
	out=$(vip_sysctl -w "net.ipv6.conf.$VIP_DEV.ndisc_notify=1" 2>&1) || die "$EX_FAILED" \
		"cannot set net.ipv6.conf.$VIP_DEV.ndisc_notify=1$VIP_WHERE: $out"
fi
out=$(vip_ip address add "$VIP_CIDR" dev "$VIP_DEV" 2>&1) || die "$EX_FAILED" \
	"'ip address add $VIP_CIDR dev $VIP_DEV'$VIP_WHERE failed: $out"
vip_announce "$count"
mark_done "added $VIP_CIDR on $VIP_DEV$VIP_WHERE; announced"
say "added $VIP_CIDR on $VIP_DEV$VIP_WHERE and announced it ($(context))"
