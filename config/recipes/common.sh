# Shared by the recipes in this directory: sourced, never run. POSIX sh.
#
# Every recipe:
#   - honours the exec actuator's environment: QUORATE_DRY_RUN=1 checks the prerequisites
#     and what would be done, and changes nothing; QUORATE_IDEMPOTENCY_KEY (stable per site,
#     epoch and step) is recorded once the action succeeded, and a later call with the same
#     key does nothing; QUORATE_SITE, QUORATE_EPOCH and QUORATE_STEP are written into that
#     record and into the output;
#   - keeps its records in RECIPE_STATE_DIR (default /var/lib/quorate/recipes), one file per
#     recipe and key;
#   - exits with one of the codes below and says why on stderr.

EX_OK=0         # done (or, in a dry run, could be done; or already done for this key)
EX_FAILED=1     # the action was tried and failed
EX_USAGE=2      # bad arguments or environment (including an unwritable state dir)
EX_MISSING=3    # a required program is not installed
EX_TOO_OLD=4    # a required program is too old
EX_NO_KERNEL=5  # the kernel lacks what the recipe needs (module, feature)
EX_NOT_FOUND=6  # the thing to act on is not there (process, checkpoint, resource)
EX_CONFLICT=7   # acting now would be unsafe (a restored copy already runs, a peer is Primary)

LC_ALL=C
export LC_ALL

RECIPE=$(basename -- "$0" .sh)
STATE_DIR=${RECIPE_STATE_DIR:-/var/lib/quorate/recipes}
KEY=${QUORATE_IDEMPOTENCY_KEY:-}
MARKER=

say() { printf '%s: %s\n' "$RECIPE" "$*"; }
warn() { printf '%s: %s\n' "$RECIPE" "$*" >&2; }
die() {
	code=$1
	shift
	warn "$*"
	exit "$code"
}

is_dry_run() { [ "${QUORATE_DRY_RUN:-0}" = 1 ]; }

# Who asked, for the record and the output.
context() {
	printf 'site=%s epoch=%s step=%s key=%s' "${QUORATE_SITE:--}" "${QUORATE_EPOCH:--}" \
		"${QUORATE_STEP:--}" "${KEY:--}"
}

# The record file of this recipe and key: the key made file-name safe, plus its checksum so
# that two keys that differ only in unsafe characters stay apart.
marker_path() {
	safe=$(printf '%s' "$KEY" | tr -c 'A-Za-z0-9._-' '_')
	sum=$(printf '%s' "$KEY" | cksum | cut -d ' ' -f 1)
	printf '%s/%s/%s-%s' "$STATE_DIR" "$RECIPE" "$safe" "$sum"
}

# Ends the run with success when this key's action is already recorded as done. Without a
# key (run by hand) every call acts.
exit_if_done() {
	[ -n "$KEY" ] || return 0
	MARKER=$(marker_path)
	[ -f "$MARKER" ] || return 0
	what=$(sed -n 's/^done: //p' "$MARKER")
	if is_dry_run; then
		say "dry run: already done for idempotency key $KEY ($what): nothing would be done"
	else
		say "already done for idempotency key $KEY ($what): nothing to do"
	fi
	exit "$EX_OK"
}

# The state dir must be creatable and writable before anything is changed, so that a
# success can be recorded.
check_state_dir() {
	[ -n "$KEY" ] || return 0
	d=$STATE_DIR
	while [ ! -e "$d" ]; do
		d=$(dirname -- "$d")
	done
	if [ ! -d "$d" ] || [ ! -w "$d" ]; then
		die "$EX_USAGE" "state dir $STATE_DIR cannot be written ($d is not a writable" \
			"directory): set RECIPE_STATE_DIR to a writable directory"
	fi
}

# Records that the action for this key is about to start (so that a retry after a crash can
# tell what happened).
mark_started() {
	[ -n "$KEY" ] || return 0
	mkdir -p -- "$(dirname -- "$MARKER")" || die "$EX_USAGE" "cannot create $(dirname -- "$MARKER")"
	{
		printf 'key: %s\n' "$KEY"
		printf 'context: %s\n' "$(context)"
		printf 'started: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		printf 'args: %s\n' "$*"
	} >"$MARKER.started" || die "$EX_USAGE" "cannot write $MARKER.started"
}

started_earlier() { [ -n "$KEY" ] && [ -f "$MARKER.started" ]; }

# Records that the action for this key is done: later calls with the key do nothing.
mark_done() {
	[ -n "$KEY" ] || return 0
	if ! {
		mkdir -p -- "$(dirname -- "$MARKER")" &&
			{
				[ ! -f "$MARKER.started" ] || cat -- "$MARKER.started"
				printf 'finished: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
				printf 'done: %s\n' "$*"
			} >"$MARKER.tmp" &&
			mv -f -- "$MARKER.tmp" "$MARKER"
	}; then
		die "$EX_FAILED" "$*, but it could not be recorded in $MARKER: a retry would act again"
	fi
	rm -f -- "$MARKER.started"
}

# Is file $1 at least as new as file $2?
not_older() { [ -z "$(find "$2" -newer "$1" 2>/dev/null)" ]; }

# The path of a program given by name or path, or nothing.
program() { command -v -- "$1" 2>/dev/null; }

# Is process $1 alive (a zombie is not)?
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c 1)
	[ -n "$state" ] && [ "$state" != Z ]
}

# The one-letter state of process $1 (R, S, D, T, t, Z...).
proc_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c 1; }

# The command name of process $1.
proc_name() { cat "/proc/$1/comm" 2>/dev/null || echo '?'; }

# Process $1 and all its descendants, parents first.
tree_pids() {
	for f in /proc/[0-9]*/stat; do
		sed -n 's/^\([0-9]*\) (.*) [A-Za-z] \([0-9]*\) .*/\1 \2/p' "$f" 2>/dev/null
	done | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END {
			queue[0] = root; n = 1
			for (i = 0; i < n; i++) {
				print queue[i]
				m = split(kids[queue[i]], k, " ")
				for (j = 1; j <= m; j++) queue[n++] = k[j]
			}
		}'
}

# The pid in pid file $1, which must name a live process.
live_pid_from() {
	[ -f "$1" ] || die "$EX_NOT_FOUND" "pid file $1 not found: is the process running?"
	pid=$(sed -n '1{s/[[:space:]]//g;p;}' "$1")
	case $pid in
	'' | *[!0-9]*) die "$EX_NOT_FOUND" "pid file $1 does not hold a pid (first line: '$pid')" ;;
	esac
	alive "$pid" || die "$EX_NOT_FOUND" "process $pid (from $1) is not running"
	printf '%s' "$pid"
}

# An absolute path for $1.
absolute() {
	case $1 in
	/*) printf '%s' "$1" ;;
	*) printf '%s/%s' "$(pwd)" "$1" ;;
	esac
}

# --- CRIU -------------------------------------------------------------------------------

CRIU_MIN_MAJOR=4
CRIU_MIN_MINOR=1
CRIU_WHY="4.1 is the first release that checkpoints processes holding pidfds, which systemd \
and current runtimes hand out, and 4.0 added shadow-stack support for current CPUs and \
kernels; older releases fail on such processes"

# Finds CRIU (CRIU=/path/to/criu or criu on PATH), checks it is 4.1 or newer and that
# `criu check` passes (CRIU_SKIP_CHECK=1 skips that); sets CRIU_BIN and CRIU_VERSION.
check_criu() {
	name=${CRIU:-criu}
	CRIU_BIN=$(program "$name") || die "$EX_MISSING" "criu not found (looked for '$name' on" \
		"PATH=$PATH): install CRIU $CRIU_MIN_MAJOR.$CRIU_MIN_MINOR or newer, or set CRIU=/path/to/criu"
	out=$("$CRIU_BIN" --version 2>&1) || die "$EX_MISSING" "'$CRIU_BIN --version' failed: $out"
	CRIU_VERSION=$(printf '%s\n' "$out" | sed -n 's/^[Vv]ersion:[[:space:]]*\([0-9][0-9.]*\).*/\1/p' |
		head -n 1)
	CRIU_VERSION=${CRIU_VERSION%.}
	[ -n "$CRIU_VERSION" ] || die "$EX_TOO_OLD" "cannot read the version in '$CRIU_BIN --version'" \
		"output ($out); this recipe needs CRIU $CRIU_MIN_MAJOR.$CRIU_MIN_MINOR or newer"
	if ! printf '%s\n' "$CRIU_VERSION" | awk -F. -v maj="$CRIU_MIN_MAJOR" -v min="$CRIU_MIN_MINOR" \
		'{ exit !($1 + 0 > maj || ($1 + 0 == maj && $2 + 0 >= min)) }'; then
		die "$EX_TOO_OLD" "CRIU $CRIU_VERSION found; this recipe needs CRIU" \
			"$CRIU_MIN_MAJOR.$CRIU_MIN_MINOR or newer ($CRIU_WHY): install a newer CRIU" \
			"(Debian bookworm ships 3.17.1; use the CRIU project's packages or build it)" \
			"and put it first on PATH or set CRIU=/path/to/criu ($CRIU_BIN)"
	fi
	if [ "${CRIU_SKIP_CHECK:-0}" != 1 ]; then
		out=$("$CRIU_BIN" check 2>&1) || die "$EX_NO_KERNEL" "'$CRIU_BIN check' failed: this" \
			"kernel (or these privileges) lack what CRIU $CRIU_VERSION needs: $out"
	fi
}

# The last lines of a CRIU log, for the step's output.
log_tail() {
	[ -f "$1" ] || return 0
	warn "last lines of $1:"
	tail -n 20 -- "$1" >&2
}

# --- DRBD -------------------------------------------------------------------------------

# Finds drbdadm (DRBDADM=/path or drbdadm on PATH) and the drbd kernel module (loaded:
# DRBD_PROC, default /proc/drbd, exists; or installed: `modinfo drbd` finds it); sets
# DRBDADM_BIN and DRBD_MODULE.
check_drbd() {
	name=${DRBDADM:-drbdadm}
	DRBDADM_BIN=$(program "$name") || die "$EX_MISSING" "drbdadm not found (looked for '$name'" \
		"on PATH=$PATH): install drbd-utils, or set DRBDADM=/path/to/drbdadm"
	proc=${DRBD_PROC:-/proc/drbd}
	if [ -e "$proc" ]; then
		DRBD_MODULE="drbd module loaded ($proc)"
	elif out=$(modinfo drbd 2>&1); then
		DRBD_MODULE="drbd module installed but not loaded ($(printf '%s\n' "$out" | sed -n \
			's/^filename:[[:space:]]*//p' | head -n 1)): 'drbdadm up' loads it"
	else
		die "$EX_NO_KERNEL" "the drbd kernel module is neither loaded ($proc missing) nor" \
			"installed for kernel $(uname -r) (modinfo drbd: $(printf '%s' "$out" | head -n 1)):" \
			"install it (DRBD 9: drbd-dkms; DRBD 8.4: most distribution kernels ship it)" \
			"and bring the resources up with 'drbdadm up'"
	fi
}

# The role line(s) drbdadm reports for resource $1, without any "name: " prefix: "Primary"
# (DRBD 9) or "Secondary/Primary" (DRBD 8.4: local/peer); one line per resource for "all".
drbd_role_lines() {
	out=$("$DRBDADM_BIN" role "$1" 2>&1) || die "$EX_NOT_FOUND" "'drbdadm role $1' failed:" \
		"$out (is the resource defined and up? 'drbdadm up $1')"
	printf '%s\n' "$out" | sed -e '/^[[:space:]]*$/d' -e 's/^[^:]*:[[:space:]]*//'
}

# Makes every resource in "$@" take role $TARGET (Primary or Secondary) with `drbdadm
# $VERB [$FORCE] RESOURCE`; a resource already in that role is left alone.
drbd_set_role() {
	[ $# -gt 0 ] || die "$EX_USAGE" "no resource given: name the DRBD resources (or all)"
	exit_if_done
	check_state_dir
	check_drbd
	todo=
	already=
	for res in "$@"; do
		lines=$(drbd_role_lines "$res") || exit $?
		if [ "$TARGET" = Primary ] &&
			printf '%s\n' "$lines" | sed -n 's|^[^/]*/||p' | grep -q '^Primary'; then
			die "$EX_CONFLICT" "the peer of $res is Primary ($lines): the other site still" \
				"holds it and promoting here would make two Primaries; demote it there first"
		fi
		if printf '%s\n' "$lines" | sed 's|/.*||' | grep -qvx "$TARGET"; then
			todo="$todo $res"
		else
			already="$already $res"
		fi
	done
	if [ -z "$todo" ]; then
		what="already $TARGET:$already"
		if is_dry_run; then
			say "dry run: $DRBD_MODULE; $what: nothing would be done"
		else
			mark_done "$what"
			say "$what ($(context))"
		fi
		exit "$EX_OK"
	fi
	if is_dry_run; then
		say "dry run: $DRBD_MODULE; would run:$(for r in $todo; do
			printf ' drbdadm %s%s %s;' "$VERB" "${FORCE:+ $FORCE}" "$r"
		done)${already:+ already $TARGET:$already}"
		exit "$EX_OK"
	fi
	mark_started "$VERB${FORCE:+ $FORCE}$todo"
	for res in $todo; do
		# shellcheck disable=SC2086 # FORCE is one word or nothing
		out=$("$DRBDADM_BIN" "$VERB" $FORCE "$res" 2>&1) || die "$EX_FAILED" \
			"'drbdadm $VERB${FORCE:+ $FORCE} $res' failed: $out"
		lines=$(drbd_role_lines "$res") || exit $?
		if printf '%s\n' "$lines" | sed 's|/.*||' | grep -qvx "$TARGET"; then
			die "$EX_FAILED" "'drbdadm $VERB $res' succeeded but $res is now:" \
				"$(printf '%s' "$lines" | tr '\n' ' ')"
		fi
		say "$res is $TARGET"
	done
	mark_done "made$todo $TARGET${already:+ (already $TARGET:$already)}"
	say "done ($(context))"
}

# --- Virtual IP ---------------------------------------------------------------------------

# Parses ADDRESS[/LEN] ($1) and DEVICE ($2); sets VIP_ADDR, VIP_CIDR (with the default length
# /32 or /128), VIP_FAMILY (4 or 6), VIP_DEV, VIP_NS (VIP_NETNS or empty) and VIP_WHERE (" in
# network namespace NS" or empty, for messages).
vip_parse() {
	VIP_ADDR=${1%%/*}
	case $1 in */*) len=${1#*/} ;; *) len= ;; esac
	case $VIP_ADDR in
	*:*)
		VIP_FAMILY=6
		printf '%s' "$VIP_ADDR" | grep -Eq '^[0-9A-Fa-f:.]+$' ||
			die "$EX_USAGE" "'$1' is not an IPv6 address"
		max=128
		;;
	*)
		VIP_FAMILY=4
		printf '%s' "$VIP_ADDR" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$' ||
			die "$EX_USAGE" "'$1' is not an IPv4 address (ADDRESS[/LEN], e.g. 198.19.254.10/32)"
		max=32
		;;
	esac
	len=${len:-$max}
	case $len in '' | *[!0-9]*) die "$EX_USAGE" "bad prefix length in '$1'" ;; esac
	[ "$len" -le "$max" ] || die "$EX_USAGE" "prefix length $len in '$1' is longer than $max"
	VIP_CIDR=$VIP_ADDR/$len
	VIP_DEV=$2
	case $VIP_DEV in '' | -* | */* | *[[:space:]]*) die "$EX_USAGE" "bad device name '$2'" ;; esac
	VIP_NS=${VIP_NETNS:-}
	VIP_WHERE=${VIP_NS:+ in network namespace $VIP_NS}
}

# `ip` (IP=/path, or ip on PATH) in VIP_NETNS when it is set.
vip_ip() {
	if [ -n "$VIP_NS" ]; then
		"$IP_BIN" -n "$VIP_NS" "$@"
	else
		"$IP_BIN" "$@"
	fi
}

# A program run in VIP_NETNS when it is set.
vip_in_ns() {
	if [ -n "$VIP_NS" ]; then
		"$IP_BIN" netns exec "$VIP_NS" "$@"
	else
		"$@"
	fi
}

vip_sysctl() { vip_in_ns sysctl "$@"; }

# Finds ip (iproute2); sets IP_BIN.
vip_check_programs() {
	name=${IP:-ip}
	IP_BIN=$(program "$name") || die "$EX_MISSING" "ip not found (looked for '$name' on" \
		"PATH=$PATH): install iproute2, or set IP=/path/to/ip"
}

# Finds arping of iputils (ARPING=/path, or arping on PATH); sets ARPING_BIN. The arping of
# the `arping` package (Thomas Habets) takes other options: refused by name.
vip_check_arping() {
	name=${ARPING:-arping}
	ARPING_BIN=$(program "$name") || die "$EX_MISSING" "arping not found (looked for '$name'" \
		"on PATH=$PATH): install iputils-arping (apt-get install iputils-arping), or set" \
		"ARPING=/path/to/arping"
	version=$("$ARPING_BIN" -V 2>&1) || true
	case $version in
	*iputils*) ;;
	*) die "$EX_MISSING" "$ARPING_BIN is not iputils' arping ('arping -V': $(printf '%s' \
		"$version" | head -n 1)): install iputils-arping, or set ARPING=/path/to/iputils/arping" ;;
	esac
}

# DEVICE exists (in VIP_NETNS) and is up.
vip_check_device() {
	if [ -n "$VIP_NS" ] && ! "$IP_BIN" netns list 2>/dev/null | cut -d ' ' -f 1 | grep -qx "$VIP_NS"; then
		die "$EX_NOT_FOUND" "network namespace $VIP_NS not found ('ip netns list')"
	fi
	out=$(vip_ip -o link show dev "$VIP_DEV" 2>&1) || die "$EX_NOT_FOUND" "device $VIP_DEV" \
		"not found$VIP_WHERE: $out"
	flags=$(printf '%s' "$out" | sed -n 's/^[^<]*<\([^>]*\)>.*/\1/p' | head -n 1)
	case ",$flags," in
	*,UP,*) ;;
	*) die "$EX_NOT_FOUND" "device $VIP_DEV$VIP_WHERE is down ($(printf '%s' "$out" |
		sed 's/^[0-9]*: //' | cut -c 1-80)): bring it up first" ;;
	esac
}

# Is VIP_ADDR on VIP_DEV?
vip_present() {
	vip_ip -o "-$VIP_FAMILY" address show dev "$VIP_DEV" 2>/dev/null |
		awk -v a="$VIP_ADDR" '{ for (i = 1; i < NF; i++) if ($i == "inet" || $i == "inet6") { split($(i + 1), p, "/"); if (p[1] == a) found = 1 } } END { exit !found }'
}

# Tells the segment that VIP_ADDR is here: gratuitous ARP ($1 packets) for IPv4; for IPv6
# waits until DAD ends (the kernel then sends the unsolicited NA), failing on a duplicate.
vip_announce() {
	if [ "$VIP_FAMILY" = 4 ]; then
		# One packet per call, 0.2 s apart: the first leaves at once, the others cover a lost
		# one. arping sends at start, then lingers a whole second (its -i and -w take whole
		# seconds only); `timeout` ends it after 0.2 s (exit 124: the packet is out), while
		# an arping that cannot send (bad device, no permission) fails at once.
		n=0
		while [ "$n" -lt "$1" ]; do
			rc=0
			out=$(vip_in_ns timeout 0.2 "$ARPING_BIN" -U -c 1 -I "$VIP_DEV" "$VIP_ADDR" 2>&1) ||
				rc=$?
			[ "$rc" = 0 ] || [ "$rc" = 124 ] || die "$EX_FAILED" "gratuitous ARP for" \
				"$VIP_ADDR on $VIP_DEV$VIP_WHERE failed (arping -U exited $rc: $out); the" \
				"address is on $VIP_DEV, retry to announce it"
			n=$((n + 1))
		done
		say "gratuitous ARP for $VIP_ADDR sent on $VIP_DEV ($1 packets, 0.2 s apart)"
		return 0
	fi
	i=0
	while :; do
		flags=$(vip_ip -o -6 address show dev "$VIP_DEV" 2>/dev/null |
			awk -v a="$VIP_ADDR" '{ split($4, p, "/"); if (p[1] == a) print }')
		case $flags in
		*dadfailed*)
			vip_ip address del "$VIP_CIDR" dev "$VIP_DEV" >/dev/null 2>&1 || true
			die "$EX_CONFLICT" "another host on the segment of $VIP_DEV holds $VIP_ADDR" \
				"(duplicate address detection failed): remove it there first; not added here"
			;;
		*tentative*) ;;
		'') die "$EX_FAILED" "$VIP_ADDR vanished from $VIP_DEV$VIP_WHERE during DAD" ;;
		*)
			say "$VIP_ADDR passed DAD on $VIP_DEV: the kernel advertised it (unsolicited NA)"
			return 0
			;;
		esac
		i=$((i + 1))
		[ "$i" -le 100 ] || die "$EX_FAILED" "$VIP_ADDR still tentative on $VIP_DEV after 10 s"
		sleep 0.1
	done
}
