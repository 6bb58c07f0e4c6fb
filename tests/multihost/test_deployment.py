"""The reference deployment across hosts (issue 8): am on `manager`, af with a real
sshd on `git`, aw on `web`, each with its own portmapper and config, TLS on every
link between them; git clients on `client`, a fourth host with no Applikant on it.
Then partitions (a host's cable pulled and plugged back in) and two git hosts."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.netns import Network, unavailable
from tests.multihost.deployment import (
    HTTP_PORT, LISTEN_MAX, LISTEN_MIN, PM_PORT, SSH_PORT, Deployment, wait_until)

Make = Callable[..., Deployment]
TICK = 2.0


@pytest.fixture
def deploy(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Make]:
    """make(labels) -> a Deployment on a fresh Network (hosts 10.77.0.2, .3, ... in
    the order of `labels`; the pki has certificates for .2 to .4). Everything is
    stopped and the namespaces removed after the test, also when it fails."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    made: list[Network] = []

    def make(labels: list[str], **kw: object) -> Deployment:
        base = tmp_path_factory.mktemp("dep")  # no "_" in it: see deployment.py
        net = Network(labels, base)
        made.append(net)
        return Deployment(net, base, pki, **kw)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for net in made:
            net.close()


def reference(d: Deployment) -> None:
    d.start_manager("manager")
    d.start_git("git")
    d.start_web("web", git="git")


def test_the_reference_deployment_push_over_ssh_audit_and_clone_over_http(
        deploy: Make) -> None:
    d = deploy(["manager", "git", "web", "client"], tick_time=5.0)
    reference(d)
    alice = d.add_user("alice", "alice-secret-password-1")
    wait_until(lambda: d.key_installed("git", alice), 5, what="alice's key on the git host")
    d.cli_ok("manager", "repo", "create", "alice/project")
    repo_dir = d.git_hosts["git"].repo_root / "alice" / "project.git"
    wait_until(lambda: (repo_dir / "HEAD").exists(), 5, what="the repo on the git host")

    # Clone and push over SSH from the client host to the git host's sshd.
    work = d.base / "work"
    d.git("client", alice, "clone", "-q", d.ssh_url("git", "alice/project"), str(work))
    first = d.commit("client", work, "first")
    r = d.git("client", alice, "push", "--porcelain", "origin", "HEAD:refs/heads/main", cwd=work)
    assert "refs/heads/main" in r.stdout, r
    assert d.head("git", "alice/project") == first

    # The push is in am's audit log, asked from the manager host and from the web host.
    entries = wait_until(lambda: d.pushes("alice/project"), 10, what="the push audited")
    [entry] = entries
    assert entry["actor"] == alice.id and entry["repo"] == "alice/project", entry
    assert entry["node"] == d.node("af", "git"), entry
    assert [ref["new"] for ref in entry["details"]["refs"]] == [first], entry
    assert d.pushes("alice/project", label="web") == entries

    # Clone over HTTP from aw on the web host (a private repo: alice's password).
    http_work = d.base / "http-work"
    d.git("client", None, "clone", "-q", d.http_url("web", "alice/project", alice),
          str(http_work))
    assert d.git("client", None, "rev-parse", "HEAD", cwd=http_work).stdout.strip() == first
    status, body = d.http("client", d.http_url("web", "alice/project") + "/info/refs"
                          "?service=git-upload-pack")
    assert status == 401, (status, body)

    # What a firewall between the hosts has to allow: the portmapper port and the
    # distribution range on each host's own address, sshd on the git host, HTTP on
    # the web host; the portmapper also on loopback, for registrations.
    expected = {"manager": set(), "git": {SSH_PORT}, "web": {HTTP_PORT}, "client": None}
    for label, extra in expected.items():
        listening = {(addr, port) for addr, port, _ in d.net.listening(label)}
        if extra is None:
            assert listening == set(), listening
            continue
        ip = d.ip(label)
        assert ("127.0.0.1", PM_PORT) in listening and (ip, PM_PORT) in listening, listening
        for addr, port in listening - {("127.0.0.1", PM_PORT)}:
            assert addr == ip, (label, listening)
            assert port in extra | {PM_PORT} or LISTEN_MIN <= port <= LISTEN_MAX, (label, port)

    # Every node link is TLS: a node without a certificate is refused by am, and
    # the long names are the hosts' addresses.
    plain = d.write_config("client", variant="plain", tls=False)
    r = d.cli("client", "ping", d.am, config=plain)
    assert r.returncode == 1 and d.am in r.stderr, r
    wait_until(lambda: f"event=handshake_failed address={d.ip('client')}:" in d.log("manager", "am"),
               5, what="am logged the refused plain node")
    assert set(d.cli_ok("manager", "global-names").values()) >= {
        d.node("am", "manager"), d.node("af", "git")}
    r = d.cli("manager", "ping", d.node("aw", "web"))
    assert r.returncode == 0 and r.stdout.strip() == f"pong from {d.node('aw', 'web')}", r
