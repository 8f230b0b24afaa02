"""systemd unit files for this installation (system and user units), hardened."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

UNIT_NAME = "watcherd.service"
CREDENTIAL_NAME = "gladia"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_KEY_FILE = Path("/etc/watcherd/gladia.key")
# Where systemd puts LoadCredential= files for the system unit (what %d expands to).
CREDENTIALS_DIR = Path("/run/credentials") / UNIT_NAME
# ProtectHome= hides these; anything the service needs from them must stay readable.
_HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _unit_word(word: str, *, in_command: bool) -> str:
    """One word of a unit setting, escaped so systemd reads back exactly ``word``."""
    # "%" starts a specifier everywhere; "$" starts a variable only in command lines.
    text = word.replace("%", "%%")
    if in_command:
        text = text.replace("$", "$$")
    if _SAFE_WORD.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _command_line(command: Sequence[str]) -> str:
    return " ".join(_unit_word(word, in_command=True) for word in command)


def _under(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def _protect_home(paths: Sequence[Path]) -> str:
    """``read-only`` when the service needs something under a home tree, else ``yes``."""
    if any(_under(path, tree) for path in paths for tree in _HOME_TREES):
        return "read-only"
    return "yes"


_UNIT_HEADER = """\
# watcherd {scope} service. `watcherd service install --{scope}` writes this file for an
# installation{rw_hint}.
[Unit]
Description=watcherd: transcribe recordings dropped into watched folders
"""

_COMMON_SERVICE = """\
[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Exit code 2 is a bad config or bad usage: restarting cannot fix it.
RestartPreventExitStatus=2
# The daemon drains on SIGTERM; the journal is consistent at every commit, so a kill after
# this long loses nothing. Hooks get the same grace (KillMode=mixed).
TimeoutStopSec=90s
KillMode=mixed
# watcherd pings at half this interval from its event loop.
WatchdogSec=2min
Environment=PYTHONUNBUFFERED=1
# The journal goes to StateDirectory= and the local model cache to CacheDirectory=.
Environment=XDG_STATE_HOME=%S
Environment=XDG_CACHE_HOME=%C
StateDirectory=watcherd
CacheDirectory=watcherd
"""

_CREDENTIAL_ON = """\
# The API key, passed without touching the config file: set
#   api_key_file = "{credentials_dir}/{name}"
LoadCredential={name}:{source}
"""

_CREDENTIAL_OFF = """\
# To keep the API key out of the config file: put it alone in {source} (chmod 600),
# uncomment the next line and set api_key_file = "{credentials_dir}/{name}".
#LoadCredential={name}:{source}
"""

_SYSTEM_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
UMask=0022
"""

# User managers can only sandbox mounts through user namespaces, which many systems disable;
# these settings need none of that.
_USER_HARDENING = """\
NoNewPrivileges=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
"""


def render_systemd_unit(
    command: Sequence[str],
    *,
    user: bool,
    writable_paths: Sequence[Path] = (),
    run_as: str | None = None,
    credential: Path | None = None,
) -> str:
    """The text of ``watcherd.service`` for a user manager or the system manager.

    ``command`` is the absolute ExecStart argv. For a system unit, ``writable_paths`` (the
    watch roots, and the journal's folder when it is not in StateDirectory=) become
    ReadWritePaths=, ``run_as`` becomes User=/Group=, and ``credential`` is the file systemd
    passes to the service as the credential ``gladia``.
    """
    if not command or not os.path.isabs(command[0]):
        raise ValueError("the service command must start with an absolute path")
    for path in writable_paths:
        if not path.is_absolute():
            raise ValueError(f"writable path {path} is not absolute")
    exec_start = _command_line(command)
    if user:
        return "".join([
            _UNIT_HEADER.format(scope="user", rw_hint=""),
            "StartLimitIntervalSec=10min\nStartLimitBurst=5\n\n",
            _COMMON_SERVICE.format(exec_start=exec_start),
            _USER_HARDENING,
            "\n[Install]\nWantedBy=default.target\n",
        ])
    unit = [_UNIT_HEADER.format(
        scope="system",
        rw_hint="; run it again after changing the watched folders:\n"
        "# ReadWritePaths= must list each one",
    )]
    unit.append("Wants=network-online.target\nAfter=network-online.target\n")
    for path in writable_paths:
        unit.append(f"RequiresMountsFor={_unit_word(str(path), in_command=False)}\n")
    unit.append("StartLimitIntervalSec=10min\nStartLimitBurst=5\n\n")
    unit.append(_COMMON_SERVICE.format(exec_start=exec_start))
    if run_as:
        unit.append(f"User={_unit_word(run_as, in_command=False)}\n")
        unit.append(f"Group={_unit_word(run_as, in_command=False)}\n")
    template = _CREDENTIAL_OFF if credential is None else _CREDENTIAL_ON
    unit.append(template.format(
        name=CREDENTIAL_NAME,
        source=_unit_word(str(credential or DEFAULT_KEY_FILE), in_command=False),
        credentials_dir=CREDENTIALS_DIR,
    ))
    readable = [*writable_paths, *(Path(w) for w in command if os.path.isabs(w))]
    unit.append(_SYSTEM_HARDENING.format(protect_home=_protect_home(readable)))
    if writable_paths:
        # "-": a root that is missing (unmounted) must not keep the whole service from
        # starting; the watcher reports it and retries.
        unit.extend(
            f"ReadWritePaths={_unit_word(f'-{path}', in_command=False)}\n"
            for path in writable_paths
        )
    else:
        unit.append("# Each watched folder must be writable; add one line per [[watch]] path\n"
                    "# (and ProtectHome=read-only for folders under /home):\n"
                    "#ReadWritePaths=-/srv/inbox\n")
    unit.append("\n[Install]\nWantedBy=multi-user.target\n")
    return "".join(unit)


# The units shipped in the source tree's systemd/ folder, for packagers: the console script,
# the system config file, and the key file as a credential.
PACKAGED_COMMAND = "/usr/bin/watcherd"


def packaged_units() -> dict[str, str]:
    """The files of the source tree's ``systemd/`` folder, by name, as this module renders them."""
    return {
        UNIT_NAME: render_systemd_unit(
            [PACKAGED_COMMAND, "run", "--config", "/etc/watcherd/config.toml"],
            user=False, run_as="watcherd", credential=DEFAULT_KEY_FILE,
        ),
        "watcherd-user.service": render_systemd_unit([PACKAGED_COMMAND, "run"], user=True),
    }


def user_unit_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where a user's systemd units live: ``$XDG_CONFIG_HOME/systemd/user``."""
    env = os.environ if env is None else env
    config_home = env.get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
    return base / "systemd" / "user"


