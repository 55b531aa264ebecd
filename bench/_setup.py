"""What the benchmark needs outside its own virtualenv: h2load, and connect-python's venv.

Both are optional: when one cannot be had, the rows that need it are skipped
with a message saying why, and the rest of the table is still measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

H2LOAD_PACKAGE = "nghttp2-client"

CONNECTRPC_REQUIREMENTS = [
    "connectrpc==0.13.0",
    "protobuf>=6.30.2",
    "hypercorn==0.18.0",
    "uvicorn==0.54.0",
    "uvloop",
    "httptools",
    "anyio>=4.6",
]
"""connect-python's side: its own venv, since it pins its own protobuf stack (protobuf-py,
pyqwest), and its top-level package ``connectrpc`` must not meet our conformance package's
``connectrpc.conformance`` namespace. Versions match the ones our venv gets."""


def ensure_h2load() -> tuple[str | None, str]:
    """The path of h2load, installing Debian's nghttp2-client with apt-get if needed."""
    found = shutil.which("h2load")
    if found:
        return found, ""
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "h2load is missing and apt-get is unavailable (install nghttp2-client)"
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return None, "h2load is missing and apt-get needs root (install nghttp2-client)"
        sudo = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"bench: installing {H2LOAD_PACKAGE} with apt-get (h2load is missing)", flush=True)
    for command in (
        [*sudo, apt, "update", "-qq"],
        [*sudo, apt, "install", "-y", "-qq", "--no-install-recommends", H2LOAD_PACKAGE],
    ):
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=300, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"`{' '.join(command)}` failed: {e}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(command)}` failed: {' / '.join(tail)}"
    found = shutil.which("h2load")
    if found is None:
        return None, f"{H2LOAD_PACKAGE} installed but h2load is not on PATH"
    return found, ""


def ensure_connectrpc_venv(where: Path) -> tuple[str | None, str]:
    """The Python of a venv holding connect-python (PyPI ``connectrpc``), made if needed."""
    python = where / "bin" / "python"
    stamp = where / "bench-requirements.txt"
    wanted = "\n".join(CONNECTRPC_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python), ""
    print(f"bench: creating connect-python's venv in {where}", flush=True)
    shutil.rmtree(where, ignore_errors=True)
    for command in (
        [sys.executable, "-m", "venv", str(where)],
        [str(python), "-m", "pip", "install", "-q", *CONNECTRPC_REQUIREMENTS],
    ):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"connect-python could not be installed: {e}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, "connect-python could not be installed: " + " / ".join(tail)
    stamp.write_text(wanted)
    return str(python), ""
