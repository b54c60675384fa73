#!/bin/sh
# vip-add.sh: bring a service's virtual IP up on this host and tell the segment where it is.
#
#   vip-add.sh [--count N] [--refuse-duplicate] ADDRESS[/LEN] DEVICE
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
# --refuse-duplicate (IPv4): first asks the segment whether another host still answers for
# ADDRESS (`arping -D -c 2 -w 1`, duplicate address detection: probes that change no cache,
# about 1 s when nobody answers) and refuses with exit 7, naming the MAC that answered. Use it
# for a planned move, where the old owner may still hold the address; a lost site cannot
# answer and the wait only lengthens the outage. IPv6 always runs DAD.
# An address already on DEVICE is announced again and not added twice. The compensation (and
# the failback) is vip-remove.sh with the same arguments.
#
# Environment: VIP_NETNS (act inside that named network namespace: `ip -n NS`, `ip netns exec
# NS arping`), IP (program, default ip), ARPING (program, default arping), RECIPE_STATE_DIR,
# and the QUORATE_* variables of the exec actuator (see README.md). Exit codes: see common.sh.

. "$(dirname -- "$0")/common.sh"

usage() { die "$EX_USAGE" "usage: $RECIPE [--count N] [--refuse-duplicate] ADDRESS[/LEN] DEVICE"; }

count=3
refuse_duplicate=
while [ $# -gt 0 ]; do
	case $1 in
	--count)
		[ $# -ge 2 ] || usage
		count=$2
		shift
		;;
	--refuse-duplicate) refuse_duplicate=1 ;;
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

dad=
if [ -n "$refuse_duplicate" ] && [ "$VIP_FAMILY" = 4 ]; then
	# arping -D exits 1 when a reply came: someone else holds the address.
	if out=$(vip_in_ns "$ARPING_BIN" -D -c 2 -w 1 -I "$VIP_DEV" "$VIP_ADDR" 2>&1); then
		dad="no other host answers for $VIP_ADDR; "
	else
		owner=$(printf '%s\n' "$out" | sed -n 's/.*reply from [^ ]* \[\([^]]*\)\].*/\1/p' | head -n 1)
		[ -n "$owner" ] || die "$EX_FAILED" "duplicate address detection for $VIP_ADDR on" \
			"$VIP_DEV$VIP_WHERE failed (arping -D: $out)"
		die "$EX_CONFLICT" "another host ($owner) on the segment of $VIP_DEV still answers for" \
			"$VIP_ADDR: remove it there first (vip-remove.sh); not added here"
	fi
fi

if is_dry_run; then
	say "dry run: ${dad}$VIP_DEV$VIP_WHERE is up to take $VIP_CIDR; would run: ip address add" \
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
