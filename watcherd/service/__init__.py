"""Running as a service: sd_notify, systemd units, launchd, hooks and metrics, one module each."""

from __future__ import annotations

from watcherd.service.hooks import (
    HOOK_KILL_GRACE,
    HOOK_OUTPUT_LIMIT,
    HookResult,
    hook_env,
    run_hook,
)
from watcherd.service.launchd import (
    LAUNCHD_EXIT_TIMEOUT,
    LAUNCHD_LABEL,
    LAUNCHD_THROTTLE_SECONDS,
    launch_agent_path,
    launchd_log_dir,
    render_launchd_plist,
)
from watcherd.service.metrics import (
    render_metrics,
    write_textfile,
)
from watcherd.service.notify import (
    Notifier,
    status_text,
)
from watcherd.service.systemd import (
    CREDENTIAL_NAME,
    CREDENTIALS_DIR,
    DEFAULT_KEY_FILE,
    PACKAGED_COMMAND,
    SYSTEM_UNIT_DIR,
    UNIT_NAME,
    packaged_units,
    render_systemd_unit,
    user_unit_dir,
)

__all__ = [
    "CREDENTIALS_DIR",
    "CREDENTIAL_NAME",
    "DEFAULT_KEY_FILE",
    "HOOK_KILL_GRACE",
    "HOOK_OUTPUT_LIMIT",
    "LAUNCHD_EXIT_TIMEOUT",
    "LAUNCHD_LABEL",
    "LAUNCHD_THROTTLE_SECONDS",
    "PACKAGED_COMMAND",
    "SYSTEM_UNIT_DIR",
    "UNIT_NAME",
    "HookResult",
    "Notifier",
    "hook_env",
    "launch_agent_path",
    "launchd_log_dir",
    "packaged_units",
    "render_launchd_plist",
    "render_metrics",
    "render_systemd_unit",
    "run_hook",
    "status_text",
    "user_unit_dir",
    "write_textfile",
]
