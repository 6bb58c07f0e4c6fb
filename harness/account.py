"""A service account for one run, as production has one: sshd logs git clients
in as it and runs the forced command as it; am, af and aw run as it.

    with ServiceAccount() as account:
        with GitSite(account.base / "site", account=account) as site:
            ...

Never root: root's shell start-up files here (pyenv's init in ~/.bashrc) cost
about 100 ms of CPU per SSH session, on Applikant's side and on plain git's
alike, which flattered every ratio. The account has a plain ``/bin/sh`` and an
empty home of its own, and a Python it can run: Debian's ``python3`` in a venv
(what ``make install`` builds), whose path holds this checkout and the
checkout's ``.venv`` packages (the same minor version of Python), so that it
runs the code under test without an install. Its bytecode is compiled first
(the account cannot write ``__pycache__``).

Everything lives under one directory under ``/var/lib`` (mode 0755), owned by
the account where it writes; ``close()`` removes the account and the directory.
Needs root (useradd, chown, setpriv).
"""

from __future__ import annotations

import compileall
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ServiceAccount"]

SYSTEM_PYTHON = "/usr/bin/python3"
COMMANDS = {
    "applikant": "applikant.cli.main",
    "applikant-as": "applikant.frontend.as_cmd",
    "applikant-ah": "applikant.frontend.ah_cmd",
    "applikant-keys-for": "applikant.frontend.keys_for",
}


class ServiceAccount:
    """See the module docstring. `name`, `uid`, `gid`, `home`, `base`, `python`."""

    def __init__(self, prefix: str = "akbench") -> None:
        self.base = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/var/lib"))
        self.base.chmod(0o755)
        self.name = f"{prefix}{self.base.name.rsplit('-', 1)[1].lower()}"[:30]
        self.home = self.base / "home"
        self.venv = self.base / "venv"
        self.python = str(self.venv / "bin" / "python")
        self._made = False

    def __enter__(self) -> ServiceAccount:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.name).pw_gid

    def create(self) -> None:
        if not os.path.exists(SYSTEM_PYTHON):
            raise RuntimeError(f"{SYSTEM_PYTHON} is needed (apt-get install python3-venv)")
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
             str(self.home), "--shell", "/bin/sh", self.name],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self._made = True
        # Keys only, but not "locked": sshd without PAM refuses a locked account.
        subprocess.run(["usermod", "-p", "*", self.name], check=True, capture_output=True)
        self.home.mkdir(mode=0o755)
        self.own(self.home)
        self._make_venv()

    def _make_venv(self) -> None:
        subprocess.run(
            [SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(self.venv)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        checkout = Path(__file__).resolve().parent.parent
        packages = Path(sysconfig.get_paths()["purelib"])
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = self.venv / "lib" / version / "site-packages"
        if not site.is_dir():
            raise RuntimeError(f"{SYSTEM_PYTHON} is not Python {version} like {sys.executable}")
        (site / "applikant-checkout.pth").write_text(f"{checkout}\n{packages}\n")
        for name, module in COMMANDS.items():
            script = self.venv / "bin" / name
            script.write_text(
                f"#!{self.python}\nimport sys\nfrom {module} import main\n"
                "if __name__ == '__main__':\n    sys.exit(main())\n"
            )
            script.chmod(0o755)
        compileall.compile_dir(str(checkout / "applikant"), quiet=1)

    def program(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def own(self, path: Path) -> None:
        """Give `path` (and all under it) to the account."""
        uid, gid = self.uid, self.gid
        os.chown(path, uid, gid)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run as the account, with its own groups."""
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--", *argv
        ]  # fmt: skip

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`argv` run as the account, switched to it in the child before exec (as
        sshd starts an AuthorizedKeysCommand: no extra program in between)."""
        return subprocess.run(
            argv,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env=self.env(),
            capture_output=True,
            text=True,
            **kwargs,
        )

    def env(self) -> dict[str, str]:
        """What the account's processes need instead of root's: its home, a plain PATH."""
        return {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }

    def close(self) -> None:
        if self._made:
            subprocess.run(["userdel", self.name], capture_output=True, timeout=60)
            self._made = False
        shutil.rmtree(self.base, ignore_errors=True)
