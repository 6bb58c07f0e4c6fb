"""`make run`: the whole suite on one host with embedded defaults, data under ./var.

Starts the portmapper, am, af and aw (and a private sshd on 127.0.0.1:2222 when
OpenSSH's server is installed), creates the first admin on the first run (its
password printed that once, kept afterwards), prints how to log in, add a key,
create a repo, push and clone. A daemon that dies is started again, with
backoff, and the restart printed (supervise.py); only Ctrl-C stops everything
it started, by PID.
"""

from __future__ import annotations

import atexit
import getpass
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .. import procs
from ..node import blocking
from ..node.errors import DistError
from ..node.settings import DistSettings
from .supervise import Supervisor

if TYPE_CHECKING:
    from ..ops.sshd import SshServer

# make run's defaults (web UI 8008, sshd 2222, portmapper 4370); the environment
# may move them (the make-run test does, to free ports and a temporary directory).
VAR = Path(os.environ.get("APPLIKANT_RUN_DIR", "var")).resolve()
WEB_PORT = int(os.environ.get("APPLIKANT_RUN_WEB_PORT", "8008"))
SSH_PORT = int(os.environ.get("APPLIKANT_RUN_SSH_PORT", "2222"))
PM_PORT = int(os.environ.get("APPLIKANT_RUN_PORTMAPPER_PORT", "4370"))
COMPONENTS = ("am", "af", "aw", "ab")


def say(line: str = "") -> None:
    print(line, flush=True)


def setup(var: Path, ssh_user: str) -> tuple[Path, str | None]:
    """The config file and a fresh cookie (rewritten on every start), and the first
    admin `root`, made on the first run, through `applikant init`'s own steps.
    Returns the config file and root's password when it was made now."""
    from ..ops.init import dev_setup

    config = var / "applikant.toml"
    password = dev_setup(
        var,
        config,
        f"[dist]\nportmapper_port = {PM_PORT}\n\n"
        f'[af]\nauthorized_keys = "{var}/ssh/authorized_keys"\n\n'
        f'[aw]\nlisten = "127.0.0.1:{WEB_PORT}"\n'
        f'ssh_url = "ssh://{ssh_user}@127.0.0.1:{SSH_PORT}"\n' + builder_section(var),
    )
    return config, password


def builder_section(var: Path) -> str:
    """`[builder]` for make run. var/ is 0700 (its owner's: the build user must
    not read it, or ab refuses to build). ab makes the checkout itself, from
    var/repos, and hands it to the build user in the builds root, by default
    var-builds beside var/; when ab runs as root and the build user cannot
    enter the directories above it (a clone under /root), the builds go to a
    fresh directory under /tmp instead, removed when make run stops."""
    if os.geteuid() != 0 or _enterable_by_all(var.parent):
        return ""
    root = tempfile.mkdtemp(prefix="applikant-make-run-builds-")
    atexit.register(shutil.rmtree, root, True)
    return f'\n[builder]\nbuilds_root = "{root}"\n'


def _enterable_by_all(path: Path) -> bool:
    here = path.resolve()
    return all(os.stat(d).st_mode & 0o001 for d in [here, *here.parents])


def wait_node(name: str, proc: procs.Proc, cookie: bytes, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{name} exited; see {proc.log_path}:\n{proc.log_text()[-2000:]}")
        try:
            blocking.call(
                f"{name}@localhost",
                cookie,
                "node",
                "ping",
                node=f"{name}@localhost",
                settings=DistSettings(portmapper_port=PM_PORT),
                timeout=1,
            )
            return
        except DistError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer within {timeout:g} s; see {proc.log_path}")


def main() -> None:
    (VAR / "log").mkdir(parents=True, exist_ok=True)
    (VAR / "ssh").mkdir(parents=True, exist_ok=True)
    os.chmod(VAR / "ssh", 0o700)
    ssh_user = getpass.getuser()
    config, password = setup(VAR, ssh_user)
    env = {"APPLIKANT_CONFIG": str(config)}
    for var in ("APPLIKANT_COOKIE", "APPLIKANT_AM_NODE", "APPLIKANT_AF_NODE"):
        os.environ.pop(var, None)
    cookie = (VAR / "cookie").read_text().strip().encode()
    started: list[procs.Proc] = []

    def start(label: str, *argv: str) -> procs.Proc:
        proc = procs.Proc(
            procs.python_module("applikant.cli.main", *argv),
            env=env,
            log_path=str(VAR / "log" / f"{label}.log"),
        )
        started.append(proc)
        return proc

    # Ctrl-C stops everything even when make run was started with SIGINT ignored
    # (a shell's background job): its daemons, in the same process group, get
    # the SIGINT too and end cleanly; restarting them then would be wrong.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    sshd = None
    supervisor = Supervisor(say)

    def daemon(name: str) -> procs.Proc:
        log = str(VAR / "log" / f"{name}.log")
        return supervisor.add(name, lambda: start(name, "start", name), log)

    try:
        pm = daemon("portmapper")
        procs.wait_port("127.0.0.1", PM_PORT, proc=pm.popen)
        for name in COMPONENTS:
            wait_node(name, daemon(name), cookie)
        procs.wait_port("127.0.0.1", WEB_PORT, timeout=20)
        sshd = start_sshd(VAR)
        if sshd is not None:
            supervisor.adopt("sshd", sshd, partial(_restart_sshd, sshd), str(sshd.log_path))
        print_welcome(config, password, ssh_user, sshd is not None)
        supervisor.run_forever()
    except KeyboardInterrupt:
        say("\nstopping...")
    except (RuntimeError, OSError) as exc:
        say(f"make run: {exc}")
        code = 1
    finally:
        if sshd is not None:
            sshd.stop()
        for proc in reversed(started):
            proc.stop()
        say("stopped everything make run started")
    sys.exit(code)


def _restart_sshd(sshd: SshServer) -> SshServer:
    sshd.stop()
    sshd.start()
    return sshd


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def start_sshd(var: Path) -> SshServer | None:
    """A private sshd on 127.0.0.1:2222 reading af's authorized_keys; installed
    first when missing and we are root."""
    from ..ops.sshd import SSHD, SshServer

    if not os.path.exists(SSHD) and os.geteuid() == 0:
        say("installing OpenSSH's server (apt-get install openssh-server)...")
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "openssh-server"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
            check=False,
        )
    if not os.path.exists(SSHD):
        say(
            "(OpenSSH's server is not installed: git over SSH is off; "
            "`apt-get install openssh-server` and run again)"
        )
        return None
    server = SshServer(var, port=SSH_PORT, authorized_keys=var / "ssh" / "authorized_keys")
    server.start()
    return server


def print_welcome(config: Path, password: str | None, ssh_user: str, sshd: bool) -> None:
    """The steps a newcomer follows (and the make-run test follows to the letter)."""
    from ..version import version

    key = VAR / "demo_key"
    work = VAR / "demo"
    web = f"http://127.0.0.1:{WEB_PORT}/"
    say()
    say(f"Applikant {version()} is running (logs in {VAR}/log/). Ctrl-C stops it.")
    say()
    if password is not None:
        say(f"  web UI      {web}   login: root   password: {password}   (shown this once)")
    else:
        say(f"  web UI      {web}   login: root   (the password printed on the first run;")
        say("              a new one: applikant user passwd root, after the export below)")
    ssh = f"127.0.0.1:{SSH_PORT}" if sshd else "off (no OpenSSH server)"
    say(f"  git (SSH)   {ssh}   portmapper 127.0.0.1:{PM_PORT}")
    say()
    say("Try it, in another terminal:")
    say()
    say(f'  export APPLIKANT_CONFIG={config} PATH="{Path(sys.executable).parent}:$PATH"')
    say(f"  ssh-keygen -q -t ed25519 -N '' -f {key}")
    say(f"  applikant key add root {key}.pub")
    say("  applikant repo create root/demo --public")
    if sshd:
        say(
            f'  export GIT_SSH_COMMAND="ssh -i {key} -o IdentitiesOnly=yes '
            f'-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={VAR}/known_hosts"'
        )
        say(f"  git clone ssh://{ssh_user}@127.0.0.1:{SSH_PORT}/root/demo.git {work}")
        say(f"  echo hello > {work}/README.md")
        say(f"  git -C {work} add README.md")
        say(f"  git -C {work} -c user.name=You -c user.email=you@example.org commit -m hello")
        say(f"  git -C {work} push origin HEAD:main")
    say(f"  git clone http://127.0.0.1:{WEB_PORT}/root/demo.git {VAR}/demo-http")
    say()


if __name__ == "__main__":
    main()
