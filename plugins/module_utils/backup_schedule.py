"""Backup schedules for sites without AWX: cron expressions, systemd OnCalendar, and the files
that run a job (a wrapper holding a flock so two runs of one job never overlap, its extra-vars
file, a systemd service + timer or an /etc/cron.d entry).

A job's ``schedule`` is a 5-field cron expression (or @hourly, @daily, @weekly, @monthly,
@yearly); for systemd it is translated to an OnCalendar expression with the same meaning, or the
job gives ``on_calendar`` itself. Whatever does not parse is refused with a message naming the job
and the field, before any file is written.

Every value that lands in a unit or a cron line is checked first, since a newline there adds a
directive or a root cron line: no control characters anywhere (description, on_calendar, user,
the directories), the user a plain account name, the description free of backslashes (a line
continuation in a unit) with ``%`` written as ``%%`` (systemd's specifier escape), and
``on_calendar`` read by ``systemd-analyze calendar`` when the target has it, else held to a strict
pattern (``strict_on_calendar``).
"""
import re
import shlex

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
DESCRIPTION_MAX = 200
CALENDAR_MAX = 256
CALENDAR_SHORTHANDS = {"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually",
                       "quarterly", "semiannually"}
_WEEKDAY_NAMES = {"mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "tuesday", "wednesday",
                  "thursday", "friday", "saturday", "sunday"}
_WEEKDAY_ITEM = r"[A-Za-z]{3,9}(?:(?:\.\.|-)[A-Za-z]{3,9})?"
_CALENDAR_WEEKDAYS = re.compile(rf"{_WEEKDAY_ITEM}(?:,{_WEEKDAY_ITEM})*")
_CALENDAR_DATE = re.compile(r"[0-9*][0-9*.,/~-]*-[0-9*.,/~-]*")
_CALENDAR_TIME = re.compile(r"[0-9*][0-9*.,/]*:[0-9*.,/:]*")
_CALENDAR_ZONE = re.compile(r"UTC|[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
SHORTCUTS = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}
# name, low, high, names (for month and day of week)
FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    ("day of week", 0, 7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
)
WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
MANAGED = "Managed by Ansible (role backup_schedule): edits are overwritten."


class ScheduleError(Exception):
    """A schedule or job definition that cannot be used; the message names the job and the problem."""


def _int(text, field, low, high):
    if not text.isdigit():
        raise ScheduleError(f"{field}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{field}: {value} is outside {low}-{high}")
    return value


def _parse_field(text, field, low, high, names):
    """Return the sorted set of values the field matches, and whether it was '*'."""
    if text == "*":
        return set(range(low, high + 1)), True
    if names and text.lower() in names:
        return {names.index(text.lower()) + (1 if field == "month" else 0)}, False
    values = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{field}: empty list element in {text!r}")
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
            if part != "*" and "-" not in part:
                raise ScheduleError(f"{field}: a step needs '*' or a range before it, got {part}/{step}")
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start_text, end_text = part.split("-", 1)
            start, end = _int(start_text, field, low, high), _int(end_text, field, low, high)
            if start > end:
                raise ScheduleError(f"{field}: range {part} runs backwards")
        else:
            start = end = _int(part, field, low, high)
        values.update(range(start, end + 1, step))
    return values, False


def parse_cron(expression):
    """Parse a cron expression; returns a list of 5 (values, is_star) pairs. Raises ScheduleError."""
    if not isinstance(expression, str) or not expression.strip():
        raise ScheduleError("the schedule is empty")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in SHORTCUTS:
            raise ScheduleError(f"unknown shortcut {text!r} (use one of {', '.join(sorted(SHORTCUTS))}; "
                                "@reboot is not a backup schedule)")
        text = SHORTCUTS[text]
    parts = text.split(" ")
    if len(parts) != 5:
        raise ScheduleError(f"{expression!r} has {len(parts)} fields; a cron schedule has 5: "
                            "minute hour day-of-month month day-of-week")
    parsed = [_parse_field(part, *spec) for part, spec in zip(parts, FIELDS)]
    dow_values, dow_star = parsed[4]
    if 7 in dow_values:  # 7 is Sunday too
        parsed[4] = ((dow_values - {7}) | {0}, dow_star)
    return parsed


def normalise_cron(expression):
    """The cron expression as it will be written (shortcuts expanded, spaces collapsed)."""
    parse_cron(expression)
    text = " ".join(expression.split())
    return SHORTCUTS.get(text, text)


def _runs(values):
    """[1,2,3,5] -> [(1,3),(5,5)]"""
    out = []
    for value in sorted(values):
        if out and value == out[-1][1] + 1:
            out[-1] = (out[-1][0], value)
        else:
            out.append((value, value))
    return out


def _calendar_list(values, is_star, width):
    if is_star:
        return "*"
    parts = []
    for start, end in _runs(values):
        if end - start >= 2:
            parts.append(f"{start:0{width}d}..{end:0{width}d}")
        else:
            parts.extend(f"{v:0{width}d}" for v in range(start, end + 1))
    return ",".join(parts)


def cron_to_on_calendar(expression):
    """Translate a cron expression to a systemd OnCalendar expression with the same meaning."""
    minute, hour, dom, month, dow = parse_cron(expression)
    if not dom[1] and not dow[1]:
        raise ScheduleError(
            f"{expression!r} restricts both day of month and day of week: cron runs when EITHER "
            "matches, systemd only when BOTH do; give the job an explicit on_calendar, or restrict one")
    calendar = (f"*-{_calendar_list(*month, 2)}-{_calendar_list(*dom, 2)} "
                f"{_calendar_list(*hour, 2)}:{_calendar_list(*minute, 2)}:00")
    if not dow[1]:
        days = []
        for start, end in _runs(dow[0]):
            days.append(WEEKDAYS[start] if start == end else
                        f"{WEEKDAYS[start]}..{WEEKDAYS[end]}" if end - start >= 2 else
                        f"{WEEKDAYS[start]},{WEEKDAYS[end]}")
        calendar = ",".join(days) + " " + calendar
    return calendar


def check_text(value, what):
    """A string without control characters (a newline in a unit or cron line adds a line)."""
    if not isinstance(value, str):
        raise ScheduleError(f"{what} must be a string, got {value!r}")
    if CONTROL_RE.search(value):
        raise ScheduleError(f"{what} {value!r} holds a control character (newline, tab...): refused, "
                            "it would add a line to the unit or cron file")
    return value


def check_user(user):
    check_text(user, "user")
    if not USER_RE.fullmatch(user):
        raise ScheduleError(f"user {user!r} is not an account name (a-z, 0-9, _ and -, starting with a "
                            "letter or _, at most 32 characters)")
    return user


def check_description(description, name):
    what = f"job {name}: description"
    check_text(description, what)
    if "\\" in description:
        raise ScheduleError(f"{what} {description!r} holds a backslash (a line continuation in a unit)")
    if len(description) > DESCRIPTION_MAX:
        raise ScheduleError(f"{what} is longer than {DESCRIPTION_MAX} characters")
    return description.replace("%", "%%")  # systemd expands %n, %u...: keep the text as written


def strict_on_calendar(expression):
    """Check an OnCalendar expression without systemd-analyze: a shorthand (daily ...), or
    [weekdays] [date] [time] [timezone], each made of the characters its part allows."""
    text = expression.strip()
    if text.lower() in CALENDAR_SHORTHANDS:
        return text
    tokens = text.split(" ")
    if not text or "" in tokens or len(tokens) > 4:
        raise ScheduleError(f"{expression!r} is not an OnCalendar expression this check accepts: "
                            "[weekdays] [date] [time] [timezone], single spaces, or a shorthand "
                            f"({', '.join(sorted(CALENDAR_SHORTHANDS))})")
    parts = {}
    for token in tokens:
        if not parts and _CALENDAR_WEEKDAYS.fullmatch(token) and all(
                w.lower() in _WEEKDAY_NAMES for w in re.split(r"\.\.|-|,", token)):
            parts["weekdays"] = token
        elif "date" not in parts and "time" not in parts and "zone" not in parts \
                and _CALENDAR_DATE.fullmatch(token):
            parts["date"] = token
        elif "time" not in parts and "zone" not in parts and _CALENDAR_TIME.fullmatch(token):
            parts["time"] = token
        elif ("date" in parts or "time" in parts) and "zone" not in parts and _CALENDAR_ZONE.fullmatch(token):
            parts["zone"] = token
        else:
            raise ScheduleError(f"{token!r} in {expression!r} is not a weekday list, a date "
                                "(*-*-*, 2026-01-01), a time (02:30, *:00/15) or a timezone in the "
                                "expected order")
    if "date" not in parts and "time" not in parts:
        raise ScheduleError(f"{expression!r} has neither a date nor a time")
    return text


def check_on_calendar(expression, validate_calendar=None):
    """The job's OnCalendar: no control characters, then systemd-analyze (validate_calendar) or
    the strict pattern."""
    check_text(expression, "on_calendar")
    if len(expression) > CALENDAR_MAX:
        raise ScheduleError(f"on_calendar is longer than {CALENDAR_MAX} characters")
    if validate_calendar is not None:
        validate_calendar(expression)
    else:
        strict_on_calendar(expression)
    return expression


def check_settings(settings):
    """The role's settings that land in units, cron lines and the wrapper."""
    check_user(settings["user"])
    for key in ("project_dir", "inventory", "ansible_playbook", "playbook", "bin_dir", "config_dir",
                "lock_dir", "log_dir", "vault_password_file"):
        if settings.get(key):
            check_text(settings[key], key)
    if re.search(r"\s", settings["bin_dir"]):
        raise ScheduleError(f"bin_dir {settings['bin_dir']!r} holds white space (it starts the cron "
                            "line's command and the unit's ExecStart)")


def check_job_name(name):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ScheduleError(f"job name {name!r} must be 1-63 characters of a-z, 0-9, _ and -, "
                            "starting with a letter or digit (it names files and units)")
    return name


def plan_job(job, settings, method, validate_calendar=None):
    """Everything the role writes for one job. settings: project_dir, inventory, ansible_playbook,
    playbook, lock_dir, log_dir, bin_dir, config_dir, user, vault_password_file.
    validate_calendar(expr) -> normalised text or raises ScheduleError (systemd-analyze)."""
    if not isinstance(job, dict):
        raise ScheduleError(f"a job must be a mapping, got {job!r}")
    name = check_job_name(job.get("name"))
    state = job.get("state", "present")
    if state not in ("present", "absent"):
        raise ScheduleError(f"job {name}: state must be present or absent, got {state!r}")
    unit = f"backup-job-{name}"
    paths = {
        "wrapper_path": f"{settings['bin_dir']}/{unit}",
        "vars_path": f"{settings['config_dir']}/{name}.json",
        "service_path": f"/etc/systemd/system/{unit}.service",
        "timer_path": f"/etc/systemd/system/{unit}.timer",
        "cron_path": f"/etc/cron.d/backup-toolkit-{name}",
        "lock_path": f"{settings['lock_dir']}/{unit}.lock",
        "log_path": f"{settings['log_dir']}/{unit}.log",
    }
    plan = dict(name=name, state=state, unit=unit, **paths)
    if state == "absent":
        return plan
    strategy = job.get("strategy")
    if not isinstance(strategy, str) or not strategy:
        raise ScheduleError(f"job {name}: strategy (the backup_strategy to run) is required")
    extra_vars = job.get("extra_vars") or {}
    if not isinstance(extra_vars, dict):
        raise ScheduleError(f"job {name}: extra_vars must be a mapping")
    schedule = job.get("schedule")
    on_calendar = job.get("on_calendar")
    try:
        if method == "cron":
            if not schedule:
                raise ScheduleError("a cron schedule is required (on_calendar only works with systemd)")
            cron = normalise_cron(schedule)
            plan["cron"] = cron
        else:
            if not schedule and not on_calendar:
                raise ScheduleError("schedule (cron syntax) or on_calendar is required")
            on_calendar = on_calendar or cron_to_on_calendar(schedule)
            plan["on_calendar"] = check_on_calendar(on_calendar, validate_calendar)
    except ScheduleError as exc:
        shown = schedule or on_calendar
        raise ScheduleError(f"job {name}: schedule {shown!r} does not parse: {exc}") from None
    description = job.get("description")
    if description is not None:
        description = check_description(description, name)
    inventory = job.get("inventory") or settings["inventory"]
    playbook = job.get("playbook") or settings["playbook"]
    check_text(inventory, f"job {name}: inventory")
    check_text(playbook, f"job {name}: playbook")
    if not playbook.startswith("/"):
        playbook = f"{settings['project_dir']}/{playbook}"
    plan["strategy"] = strategy  # extra_vars may hold secrets: never returned, the role writes them
    plan["wrapper"] = render_wrapper(plan, settings, inventory, playbook)
    if method == "cron":
        plan["cron_text"] = render_cron(plan, settings)
    else:
        plan["service"] = render_service(plan, settings, description)
        plan["timer"] = render_timer(plan, job.get("randomized_delay_seconds", 0))
    return plan


def render_wrapper(plan, settings, inventory, playbook):
    q = shlex.quote
    command = [settings["ansible_playbook"], "-i", inventory, playbook, "-e", "@" + plan["vars_path"]]
    if settings.get("vault_password_file"):
        command += ["--vault-password-file", settings["vault_password_file"]]
    return f"""#!/bin/sh
# {MANAGED}
# Backup job {plan['name']}: one run at a time (flock on {plan['lock_path']}); a run that finds the
# previous one still going exits 75 (EX_TEMPFAIL) without starting.
set -u
cd {q(settings['project_dir'])} || exit 1
export ANSIBLE_CONFIG={q(settings['project_dir'] + '/ansible.cfg')}
export ANSIBLE_NOCOLOR=1
mkdir -p {q(settings['lock_dir'])} {q(settings['log_dir'])} || exit 1
exec 9>>{q(plan['log_path'])}
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) job {plan['name']}: start" >&9
flock -n -E 75 {q(plan['lock_path'])} {' '.join(q(part) for part in command)} >&9 2>&1
rc=$?
if [ "$rc" -eq 75 ]; then
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) job {plan['name']}: previous run still running, skipped" >&9
  echo "backup job {plan['name']}: previous run still running, skipped" >&2
else
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) job {plan['name']}: end rc=$rc" >&9
fi
exit "$rc"
"""


def render_service(plan, settings, description=None):
    return f"""# {MANAGED}
[Unit]
Description={description or 'Backup job ' + plan['name']}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
User={settings['user']}
ExecStart={plan['wrapper_path']}
# exit 75: the previous run still held the lock; not a failure of this unit
SuccessExitStatus=75
"""


def render_timer(plan, randomized_delay_seconds=0):
    delay = f"RandomizedDelaySec={int(randomized_delay_seconds)}\n" if randomized_delay_seconds else ""
    return f"""# {MANAGED}
[Unit]
Description=Schedule of backup job {plan['name']}

[Timer]
OnCalendar={plan['on_calendar']}
Persistent=true
{delay}Unit={plan['unit']}.service

[Install]
WantedBy=timers.target
"""


def render_cron(plan, settings):
    return f"""# {MANAGED}
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
{plan['cron']} {settings['user']} {plan['wrapper_path']}
"""


def plan_jobs(jobs, settings, method, validate_calendar=None):
    if not isinstance(jobs, list):
        raise ScheduleError("backup_schedule_jobs must be a list")
    check_settings(settings)
    plans = [plan_job(job, settings, method, validate_calendar) for job in jobs]
    names = [plan["name"] for plan in plans]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ScheduleError(f"job names must be unique: {', '.join(duplicates)}")
    return plans


def systemd_analyze_validator(run, binary):
    """A validate_calendar using `systemd-analyze calendar`; run(argv) -> (rc, stdout, stderr)."""
    def validate(expression):
        rc, out, err = run([binary, "calendar", expression])
        if rc != 0:
            raise ScheduleError(f"systemd-analyze calendar refuses it: {(err or out).strip()}")
        return out
    return validate
