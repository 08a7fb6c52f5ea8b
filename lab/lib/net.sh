# shellcheck shell=bash
# The lab network: one bridge with the controller at .1, one netns + veth per host.
# No default route in the hosts and forwarding off on the bridge: nothing leaves it.

# choose_subnet TAKEN...: LAB_SUBNET if set (checked), else the first free /24 (see
# pick_subnet) that no route on this machine and no other lab (TAKEN: their recorded subnets,
# maybe not routed yet) overlaps. Called under the machine lock.
choose_subnet() {
    local routes
    mapfile -t routes < <(ip -4 route show table all 2>/dev/null | awk '$1 != "broadcast" && $1 != "local" && $1 != "unreachable" { print $1 }' | grep -v '^default$' || true)
    routes+=("$@")
    if [[ -n ${LAB_SUBNET:-} ]]; then
        valid_subnet "$LAB_SUBNET" || die "LAB_SUBNET must look like 10.B.C.0/24 (inside 10.0.0.0/8), got '$LAB_SUBNET'"
        local r
        for r in "${routes[@]}"; do
            cidr_overlaps "$LAB_SUBNET" "$r" && die "LAB_SUBNET $LAB_SUBNET overlaps a route already on this machine ($r)"
        done
        echo "$LAB_SUBNET"; return
    fi
    pick_subnet "${routes[@]}" || die "no free /24 found for the lab; set LAB_SUBNET=10.B.C.0/24"
}

net_bridge_up() {
    local subnet=$1 brip
    brip=$(bridge_ip "$subnet")
    ip link show "$LAB_BRIDGE" >/dev/null 2>&1 && die "bridge $LAB_BRIDGE of lab $LAB_ID already exists: run lab/lab down"
    run "create bridge $LAB_BRIDGE" ip link add "$LAB_BRIDGE" type bridge stp_state 0 forward_delay 0
    run "address the bridge" ip addr add "$brip/24" dev "$LAB_BRIDGE"
    echo 0 >"/proc/sys/net/ipv4/conf/$LAB_BRIDGE/forwarding" 2>/dev/null || true
    echo 1 >"/proc/sys/net/ipv6/conf/$LAB_BRIDGE/disable_ipv6" 2>/dev/null || true
    run "bring the bridge up" ip link set "$LAB_BRIDGE" up
}

# net_host_up HOST SUBNET: netns, veth pair (host end on the bridge, eth0 inside), address.
net_host_up() {
    local h=$1 subnet=$2 ns veth ip
    ns=$(host_netns "$h"); veth=$(host_veth "$h"); ip=$(host_ip "$subnet" "$h")
    [[ -d /run/netns ]] || state_set NETNS_DIR_MADE 1
    if ! mountpoint -q /run/netns 2>/dev/null; then state_set NETNS_MOUNT_MADE 1; fi
    run "create netns $ns" ip netns add "$ns"
    run "create veth for $h" ip link add "$veth" type veth peer name eth0 netns "$ns"
    echo 1 >"/proc/sys/net/ipv6/conf/$veth/disable_ipv6" 2>/dev/null || true
    run "attach $veth to $LAB_BRIDGE" ip link set "$veth" master "$LAB_BRIDGE" up
    run "address $h" ip -n "$ns" addr add "$ip/24" dev eth0
    run "bring up eth0 in $ns" ip -n "$ns" link set eth0 up
    run "bring up lo in $ns" ip -n "$ns" link set lo up
}
