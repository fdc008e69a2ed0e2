#!/usr/bin/env bash
# A simulated home network in network namespaces, for Hearth's router and
# reachability tests. Needs root, iproute2, nftables, miniupnpd-nftables and
# coturn (a STUN server on the "internet" side).
#
#   home.sh up   PREFIX SCENARIO WORKDIR   create the namespaces
#   home.sh down PREFIX WORKDIR            remove them (idempotent)
#
# Namespaces (PREFIX keeps parallel tests apart, e.g. "hh1-"):
#   PREFIXlan     Hearth's host:          10.77.1.2/24, default via 10.77.1.1
#   PREFIXrouter  the home router (NAT):  LAN 10.77.1.1/24, WAN below
#   PREFIXisp     only for cgnat: carrier NAT between router and internet
#   PREFIXinet    "the internet":         20.77.0.1/24, a STUN server on 3478
#
# SCENARIO:
#   upnp     router WAN 20.77.0.2, miniupnpd with UPnP IGD only
#   natpmp   router WAN 20.77.0.2, miniupnpd with NAT-PMP only
#   none     router WAN 20.77.0.2, no port-mapping service (manual forwarding)
#   cgnat    router WAN 100.64.0.2 behind a carrier NAT (PREFIXisp) whose
#            public side is 20.77.0.2; miniupnpd with UPnP and NAT-PMP
#
# Every address lives only inside these namespaces; nothing is routed
# outside them (20.77.0.0/24 is an address plan of the test, not a real
# network; miniupnpd refuses documentation ranges as WAN addresses).
set -euo pipefail

cmd=${1:?usage: home.sh up PREFIX SCENARIO WORKDIR | down PREFIX WORKDIR}
P=${2:?prefix}

down() {
	local work=$1
	for f in "$work"/*.pid; do
		[[ -e $f ]] || continue
		kill "$(cat "$f")" 2>/dev/null || true
	done
	for n in lan router isp inet; do
		ip netns del "${P}$n" 2>/dev/null || true
	done
}

if [[ $cmd == down ]]; then
	down "${3:?workdir}"
	exit 0
fi
[[ $cmd == up ]] || { echo "home.sh: unknown command $cmd" >&2; exit 2; }
SCEN=${3:?scenario}
WORK=${4:?workdir}
mkdir -p "$WORK"
down "$WORK"

ns() { ip netns add "${P}$1"; ip -n "${P}$1" link set lo up; }
# link NS1 IF1 NS2 IF2: a veth pair between two namespaces.
link() {
	ip link add "$2" type veth peer name "$4"
	ip link set "$2" netns "${P}$1"
	ip link set "$4" netns "${P}$3"
	ip -n "${P}$1" link set "$2" up
	ip -n "${P}$3" link set "$4" up
}
# Interface names are at most 15 bytes: keep PREFIX short.
L0=${P}l0 R0=${P}r0 R1=${P}r1 I0=${P}i0 S0=${P}s0 S1=${P}s1

ns lan
ns router
ns inet
link lan "$L0" router "$R0"
ip -n "${P}lan" addr add 10.77.1.2/24 dev "$L0"
ip -n "${P}lan" route add default via 10.77.1.1
ip -n "${P}router" addr add 10.77.1.1/24 dev "$R0"
# mDNS queries from the router go to the LAN (RFC 6762 224.0.0.251).
ip -n "${P}router" route add 224.0.0.0/4 dev "$R0"

if [[ $SCEN == cgnat ]]; then
	ns isp
	link router "$R1" isp "$S0"
	link isp "$S1" inet "$I0"
	ip -n "${P}router" addr add 100.64.0.2/24 dev "$R1"
	ip -n "${P}router" route add default via 100.64.0.1
	ip -n "${P}isp" addr add 100.64.0.1/24 dev "$S0"
	ip -n "${P}isp" addr add 20.77.0.2/24 dev "$S1"
	ip netns exec "${P}isp" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "${P}isp" nft -f - <<NFT
table ip nat {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "$S1" masquerade
  }
}
NFT
else
	link router "$R1" inet "$I0"
	ip -n "${P}router" addr add 20.77.0.2/24 dev "$R1"
	ip -n "${P}router" route add default via 20.77.0.1
fi
ip -n "${P}inet" addr add 20.77.0.1/24 dev "$I0"
ip netns exec "${P}router" sysctl -qw net.ipv4.ip_forward=1

# The router: NAT for the LAN, forwarding only what miniupnpd opens.
ip netns exec "${P}router" nft -f - <<NFT
table inet filter {
  chain miniupnpd {
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "$R0" oifname "$R1" accept
    jump miniupnpd
  }
}
table inet nat {
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname "$R1" masquerade
  }
}
NFT

upnp=no natpmp=no
case $SCEN in
upnp) upnp=yes ;;
natpmp) natpmp=yes ;;
cgnat) upnp=yes natpmp=yes ;;
none) ;;
*) echo "home.sh: unknown scenario $SCEN" >&2; exit 2 ;;
esac
if [[ $upnp == yes || $natpmp == yes ]]; then
	cat >"$WORK/miniupnpd.conf" <<CONF
ext_ifname=$R1
listening_ip=$R0
enable_upnp=$upnp
enable_natpmp=$natpmp
secure_mode=yes
upnp_table_name=filter
upnp_nat_table_name=nat
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
lease_file=$WORK/miniupnpd.leases
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
allow 1-65535 10.77.1.0/24 1-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
	ip netns exec "${P}router" /usr/sbin/miniupnpd -f "$WORK/miniupnpd.conf" -d -P "$WORK/miniupnpd.pid" >"$WORK/miniupnpd.log" 2>&1 &
fi

# A STUN server on the internet side (coturn in STUN-only mode).
ip netns exec "${P}inet" turnserver -n --stun-only --no-cli --listening-ip=20.77.0.1 --listening-port=3478 \
	--pidfile="$WORK/stun.pid" --log-file=stdout >"$WORK/stun.log" 2>&1 &
echo $! >"$WORK/stun-shell.pid"

# Wait until both answer (bounded).
for _ in $(seq 50); do
	ok=1
	if [[ $upnp == yes || $natpmp == yes ]] && ! grep -q "Listening for NAT-PMP\|HTTP listening" "$WORK/miniupnpd.log" 2>/dev/null; then ok=0; fi
	ip netns exec "${P}inet" ss -lun 2>/dev/null | grep -q "20.77.0.1:3478" || ok=0
	[[ $ok == 1 ]] && exit 0
	sleep 0.1
done
echo "home.sh: services did not start; logs in $WORK" >&2
exit 1
