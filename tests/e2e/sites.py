"""A LAN behind a test host that routes it (a gateway): a bridge `lan0` in the gateway's
namespace and machines on it, each a network namespace of its own with its own cgroup (other
machines: the gateway's cgroup guard is not theirs).

    machine l1 (192.168.10.5) --veth--+-- lan0 (192.168.10.1) in gateway A -- eth0 (10.77.0.1) -- switch -- B
"""
from netns import Host, sh

SUBNET = "192.168.10"
NETWORK = f"{SUBNET}.0/24"
SUBNET6 = "fd10::"
NETWORK6 = "fd10::/64"


class Lan:
    def __init__(self, gateway, bridge="lan0", subnet=SUBNET, subnet6=SUBNET6):
        self.gateway, self.bridge, self.subnet, self.subnet6 = gateway, bridge, subnet, subnet6
        run, ns = gateway.topo.ns_exec, gateway.ns
        run(ns, "ip", "link", "add", bridge, "type", "bridge")
        run(ns, "ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
        run(ns, "ip", "-6", "addr", "add", f"{subnet6}1/64", "dev", bridge, "nodad")
        run(ns, "ip", "link", "set", bridge, "up")
        run(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

    def add(self, name, n):
        """Machine `name` at <subnet>.<n> and <subnet6><n>, routed through the gateway."""
        topo = self.gateway.topo
        ns = f"{topo.prefix}{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"{name}g", "netns", self.gateway.ns)
        topo.ns_exec(self.gateway.ns, "ip", "link", "set", f"{name}g", "master", self.bridge, "up")
        sub, sub6 = self.subnet, self.subnet6
        for cmd in (["ip", "addr", "add", f"{sub}.{n}/24", "dev", "eth0"], ["ip", "-6", "addr", "add", f"{sub6}{n:x}/64", "dev", "eth0", "nodad"],
                    ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "default", "via", f"{sub}.1"], ["ip", "-6", "route", "add", "default", "via", f"{sub6}1"]):
            topo.ns_exec(ns, *cmd)
        machine = Host(topo, name, ns, f"{sub}.{n}")
        topo.hosts[name] = machine
        return machine
