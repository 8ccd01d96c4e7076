"""Hosts on one machine: network namespaces joined by veth pairs to a bridge, each host with its
own address in a private /24 that exists only on these links (the test, in the root namespace, sits
on the bridge as the client), and firewall rules inside a host's namespace to cut it off from
another. Everything is removed by `remove`, processes in the namespaces included."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import uuid


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"`{tool}` is not installed (scripts/test installs nftables from Debian)"
    probe = f"jwprobe{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> str:
    """A 10.x.y.0/24 that no interface or route of this machine uses."""
    used = _ip("-4", "addr").stdout + _ip("-4", "route").stdout
    for _ in range(100):
        prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        if f"{prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 found")


class Network:
    def __init__(self, hosts: list[str]) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.prefix = _free_subnet()
        self.subnet = f"{self.prefix}.0/24"
        self.bridge = f"jw{self.tag}br"
        self.client_ip = f"{self.prefix}.254"
        self.ns = {host: f"jw{self.tag}{host}" for host in hosts}
        self.ip = {host: f"{self.prefix}.{i + 1}" for i, host in enumerate(hosts)}
        self._made: list[str] = []

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append("bridge")
        _ip("addr", "add", f"{self.client_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host, ns in self.ns.items():
            _ip("netns", "add", ns)
            self._made.append(ns)
            outside = f"jw{self.tag}{host}0"
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", outside, "master", self.bridge, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.ip[host]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            self.nft(host, "add table inet jobwire_test")
            for chain, hook in (("out", "output"), ("in", "input")):
                self.nft(
                    host, f"add chain inet jobwire_test {chain} {{ type filter hook {hook} priority 0; }}"
                )

    def exec(self, host: str) -> tuple[str, ...]:
        """The prefix that runs a command on `host`."""
        return ("ip", "netns", "exec", self.ns[host])

    def nft(self, host: str, rule: str) -> None:
        subprocess.run([*self.exec(host), "nft", *rule.split()], check=True, capture_output=True, text=True)

    def cut(self, host: str, peer: str, ports: list[int]) -> None:
        """Drop every packet between `host` and those ports of `peer`, both ways (a firewall rule:
        connections hang, nothing is refused)."""
        ports_set = "{ " + ", ".join(str(p) for p in ports) + " }"
        address = self.ip[peer]
        self.nft(host, f"add rule inet jobwire_test out ip daddr {address} tcp dport {ports_set} drop")
        self.nft(host, f"add rule inet jobwire_test in ip saddr {address} tcp sport {ports_set} drop")

    def heal(self, host: str) -> None:
        for chain in ("out", "in"):
            self.nft(host, f"flush chain inet jobwire_test {chain}")

    def kill_all(self, host: str) -> None:
        """SIGKILL every process on `host` (all of them started by this test)."""
        pids = _ip("netns", "pids", self.ns[host], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        for host, ns in self.ns.items():
            if ns in self._made:
                self.kill_all(host)
                _ip("netns", "del", ns, check=False)
        if "bridge" in self._made:
            _ip("link", "del", self.bridge, check=False)
        self._made.clear()
