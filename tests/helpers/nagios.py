"""A real Nagios 4 core (Debian's ``nagios4-core``) in the foreground, from a temporary configuration.

``interval_length=1`` makes every interval count in seconds; the host check is ``/bin/true``; state and logs
stay in a temporary folder. As root, Nagios drops to the ``nagios`` user the package creates, so the folder
is handed to it and the checks must be runnable by it (the plugin runs on the system Python: it only needs
the standard library and this checkout).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers.lab_agent import wait_for
from tests.helpers.system import missing, require_binary

MAIN = """\
log_file={d}/nagios.log
cfg_file={d}/objects.cfg
object_cache_file={d}/objects.cache
precached_object_file={d}/objects.precache
resource_file={d}/resource.cfg
status_file={d}/status.dat
status_update_interval=1
nagios_user={user}
nagios_group={group}
check_external_commands=0
command_file={d}/nagios.cmd
lock_file={d}/nagios.lock
temp_file={d}/nagios.tmp
temp_path={d}
check_result_path={d}/checkresults
retain_state_information=0
state_retention_file={d}/retention.dat
use_syslog=0
log_rotation_method=n
interval_length=1
service_inter_check_delay_method=n
host_inter_check_delay_method=n
max_service_check_spread=1
max_host_check_spread=1
check_result_reaper_frequency=1
max_check_result_reaper_time=1
service_check_timeout=30
host_check_timeout=10
enable_notifications=0
enable_event_handlers=0
enable_flap_detection=0
process_performance_data=0
execute_service_checks=1
execute_host_checks=1
accept_passive_service_checks=0
accept_passive_host_checks=0
check_for_orphaned_services=0
check_service_freshness=0
check_host_freshness=0
enable_predictive_host_dependency_checks=0
enable_predictive_service_dependency_checks=0
illegal_macro_output_chars=`~$&|'"<>
date_format=iso8601
"""

OBJECTS_HEAD = """\
define timeperiod {{
    timeperiod_name 24x7
    alias           always
    monday 00:00-24:00
    tuesday 00:00-24:00
    wednesday 00:00-24:00
    thursday 00:00-24:00
    friday 00:00-24:00
    saturday 00:00-24:00
    sunday 00:00-24:00
}}
define contact {{
    contact_name                  nobody
    host_notifications_enabled    0
    service_notifications_enabled 0
    host_notification_period      24x7
    service_notification_period   24x7
    host_notification_options     n
    service_notification_options  n
    host_notification_commands    no-op
    service_notification_commands no-op
}}
define command {{
    command_name no-op
    command_line /bin/true
}}
define host {{
    host_name             {host}
    address               127.0.0.1
    check_command         no-op
    max_check_attempts    1
    check_interval        5
    retry_interval        1
    check_period          24x7
    contacts              nobody
    notification_period   24x7
    notifications_enabled 0
}}
"""


class Nagios:
    def __init__(self, host: str = "lab") -> None:
        self.binary = require_binary("nagios4", "/usr/sbin/nagios4")
        self.host = host
        self.dir = Path(tempfile.mkdtemp(prefix="callipso-nagios-"))
        (self.dir / "checkresults").mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("nagios")
            except KeyError:
                missing("the 'nagios' user (created by the nagios4-common package)")
            self.uid, self.gid, self.user, self.group = pw.pw_uid, pw.pw_gid, "nagios", "nagios"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.user = pwd.getpwuid(self.uid).pw_name
            self.group = self.user
        self.commands: list[str] = []
        self.services: list[str] = []

    def add_service(self, name: str, command_line: str, interval: int = 2) -> None:
        self.commands.append(
            f"define command {{\n    command_name check_{name}\n    command_line {command_line}\n}}\n"
        )
        self.services.append(
            f"define service {{\n    host_name {self.host}\n    service_description {name}\n"
            f"    check_command check_{name}\n    max_check_attempts 1\n    check_interval {interval}\n"
            f"    retry_interval 1\n    check_period 24x7\n    contacts nobody\n"
            f"    notification_period 24x7\n"
            f"    notifications_enabled 0\n}}\n"
        )

    def write(self) -> Path:
        main = self.dir / "nagios.cfg"
        main.write_text(MAIN.format(d=self.dir, user=self.user, group=self.group), encoding="utf-8")
        (self.dir / "resource.cfg").write_text("$USER1$=/usr/lib/nagios/plugins\n", encoding="utf-8")
        (self.dir / "objects.cfg").write_text(
            OBJECTS_HEAD.format(host=self.host) + "".join(self.commands) + "".join(self.services),
            encoding="utf-8",
        )
        for p in [self.dir, *self.dir.rglob("*")]:
            os.chown(p, self.uid, self.gid)
        return main

    def start(self) -> None:
        main = self.write()
        verify = subprocess.run(
            [self.binary, "-v", str(main)], capture_output=True, text=True, timeout=60, check=False
        )
        assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]
        self.proc = subprocess.Popen(
            [self.binary, str(main)], stdout=(self.dir / "stdout.log").open("ab"), stderr=subprocess.STDOUT
        )
        wait_for(lambda: self.status() is not None and self._alive(), 30, "nagios status.dat")

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"nagios exited: {(self.dir / 'stdout.log').read_text()[-3000:]}")
        return True

    def status(self) -> dict[str, dict[str, str]] | None:
        """servicestatus blocks of status.dat by service description."""
        path = self.dir / "status.dat"
        if not path.exists():
            return None
        services: dict[str, dict[str, str]] = {}
        block: dict[str, str] | None = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line == "servicestatus {":
                block = {}
            elif line == "}" and block is not None:
                services[block.get("service_description", "")] = block
                block = None
            elif block is not None and "=" in line:
                k, v = line.split("=", 1)
                block[k] = v
        return services

    def service(self, name: str) -> dict[str, str]:
        st = self.status() or {}
        return st.get(name, {})

    def wait_state(self, name: str, state: int | tuple[int, ...], timeout: float = 60,
                   output: str | None = None) -> dict[str, str]:
        """Wait until the service's last check result has this state, or one of these states (hard, with
        max_check_attempts 1), and, with ``output``, says that text."""
        wanted = {str(x) for x in (state if isinstance(state, tuple) else (state,))}

        def reached() -> dict[str, str] | None:
            self._alive()
            s = self.service(name)
            checked = s.get("has_been_checked") == "1"
            said = output is None or output in s.get("plugin_output", "")
            return (
                s if checked and said and s.get("current_state") in wanted and s.get("state_type") == "1" else None
            )

        return wait_for(reached, timeout, f"nagios service {name} in state {state}; now {self.service(name)}")

    def log(self) -> str:
        path = self.dir / "nagios.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


DEBIAN_OBJECTS = ("commands.cfg", "contacts.cfg", "timeperiods.cfg", "templates.cfg")


def verify_objects(files: list[Path], workdir: Path) -> subprocess.CompletedProcess[str]:
    """``nagios4 -v`` on a main configuration holding Debian's stock object files plus ``files``."""
    binary = require_binary("nagios4", "/usr/sbin/nagios4")
    stock = Path("/etc/nagios4/objects")
    if not all((stock / f).is_file() for f in DEBIAN_OBJECTS):
        missing("Debian's stock Nagios object files (/etc/nagios4/objects, package nagios4-common)")
    (workdir / "checkresults").mkdir(exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    main = MAIN.format(d=workdir, user=user, group=user).replace(
        f"cfg_file={workdir}/objects.cfg\n",
        "".join(f"cfg_file={stock / f}\n" for f in DEBIAN_OBJECTS)
        + "".join(f"cfg_file={p}\n" for p in files),
    )
    (workdir / "resource.cfg").write_text(
        "$USER1$=/usr/lib/nagios/plugins\n$USER20$=http://127.0.0.1:9730\n$USER21$=/opt/callipso-agent/bin\n",
        encoding="utf-8",
    )
    path = workdir / "nagios.cfg"
    path.write_text(main, encoding="utf-8")
    return subprocess.run([binary, "-v", str(path)], capture_output=True, text=True, timeout=60, check=False)
