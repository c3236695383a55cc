#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: `.ci/postgres.sh start [dir]` creates
# a cluster under dir (default: a new temp dir), starts it on a free loopback
# port and prints the line to eval:
#     export GUEST_AUTH_TEST_POSTGRES='postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable'
# With GUEST_AUTH_PG_DURABLE=1 the cluster keeps fsync and full_page_writes
# on (benchmarks); without, they are off (tests).
# `.ci/postgres.sh stop dir` stops it and removes dir; `pause dir` and
# `resume dir` stop and restart it, keeping its data (outage tests). Installs Debian's
# postgresql package when pg_ctl/initdb are missing (needs root and apt).
# initdb refuses to run as root, so as root the cluster belongs to the
# postgres user (created by the package, or here).
#
#     eval "$(.ci/postgres.sh start /tmp/gapg)"
#     go test -count=1 ./storage/postgres/
#     .ci/postgres.sh stop /tmp/gapg
set -euo pipefail

find_bin() {
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
		dirname "$(command -v pg_ctl)"
		return
	fi
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x $d/pg_ctl && -x $d/initdb ]]; then
			echo "$d"
			return
		fi
	done
}

as_owner() {
	if [[ $(id -u) == 0 ]]; then
		# runuser keeps our environment minimal and needs no password.
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# server_start starts the cluster in $dir on its port.
server_start() {
	# fsync off: a throwaway cluster for tests, unless it was started with
	# GUEST_AUTH_PG_DURABLE=1 (benchmarks: fsync and full_page_writes on,
	# as in production); loopback only; unix socket in dir.
	local durability="-c fsync=off -c full_page_writes=off"
	[[ -f $dir/durable ]] && durability="-c fsync=on -c full_page_writes=on -c synchronous_commit=on"
	as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $(cat "$dir/port") -k $dir $durability -c max_connections=300" start >&2 ||
		{ cat "$dir/server.log" >&2; exit 1; }
}

cmd=${1:-}
dir=${2:-}
case $cmd in
start)
	bin=$(find_bin)
	if [[ -z $bin ]]; then
		echo "installing postgresql" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
		bin=$(find_bin)
	fi
	[[ -n $bin ]] || { echo "no pg_ctl/initdb found" >&2; exit 1; }
	if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
		useradd --system --no-create-home postgres
	fi
	[[ -n $dir ]] || dir=$(mktemp -d /tmp/guestauth-pg.XXXXXX)
	mkdir -p "$dir"
	[[ $(id -u) == 0 ]] && chown postgres "$dir"
	chmod 700 "$dir"
	# A free loopback port, chosen by the kernel.
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
	as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	# fsync off: a throwaway cluster for tests; loopback only; unix socket in dir.
	echo "$bin" >"$dir/bin"
	echo "$port" >"$dir/port"
	if [[ ${GUEST_AUTH_PG_DURABLE:-} == 1 ]]; then
		touch "$dir/durable"
	fi
	server_start
	[[ $(id -u) == 0 ]] && chown postgres "$dir/bin" "$dir/port"
	echo "export GUEST_AUTH_TEST_POSTGRES='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
	echo "export GUEST_AUTH_TEST_POSTGRES_DIR='$dir'"
	;;
pause)
	# Stops the server, keeping its data (tests of outages).
	[[ -n $dir && -f $dir/bin ]] || { echo "usage: $0 pause <dir>" >&2; exit 2; }
	as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m fast -w stop >&2
	;;
resume)
	[[ -n $dir && -f $dir/bin ]] || { echo "usage: $0 resume <dir>" >&2; exit 2; }
	server_start
	;;
stop)
	[[ -n $dir && -d $dir ]] || { echo "usage: $0 stop <dir>" >&2; exit 2; }
	if [[ -f $dir/bin ]]; then
		as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start [dir] | stop <dir> | pause <dir> | resume <dir>" >&2
	exit 2
	;;
esac
