"""`logship init --from-mailerq`: a logship.toml that takes exactly what one MailerQ publishes, once."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..config.mailerq import MAX_LENGTH, MAX_LENGTH_BYTES, Plan, Tap


def broker_toml(plan: Plan, mq_file: str, password: Path) -> str:
    """The [broker] table: MailerQ's nodes, logship's own user, the password in a file of its own."""
    url = _string(plan.urls[0]) if len(plan.urls) == 1 else "[" + ",\n       ".join(map(_string, plan.urls)) + "]"
    lines = ["[broker]",
             f"# MailerQ's nodes (rabbitmq-address in {mq_file}) with logship's own RabbitMQ user:",
             "# MailerQ's password is not copied; logship's is in password_file (one line).",
             f"url = {url}",
             f"password_file = {_string(str(password))}",
             "prefetch = 1000"]
    if not plan.tls_verify and any(u.startswith("amqps://") for u in plan.urls):
        lines += ["# MailerQ's rabbitmq-verify is false; better: tls_ca = the CA that signed the nodes' certificates",
                  "tls_verify = false"]
    return "\n".join(lines) + "\n"


def queues_toml(plan: Plan) -> str:
    """The [[queues]] tables: copies bound to MailerQ's exchange and capped, or MailerQ's queues themselves."""
    return "\n".join(_queue(plan, tap) for tap in plan.taps)


def _queue(plan: Plan, tap: Tap) -> str:
    """One [[queues]] table, its comment saying what it holds."""
    origin = f"a copy from exchange {plan.exchange!r}" if tap.keys else "MailerQ's own queue, consumed directly"
    lines = ["[[queues]]", f"# {tap.why}; {origin}", f"name = {_string(tap.name)}", f"role = {_string(tap.role)}"]
    if tap.scope:
        lines.append(f"scope = {_string(tap.scope)}")
    if tap.keys:
        bindings = ", ".join(f"{{ exchange = {_string(plan.exchange)}, routing_key = {_string(key)} }}"
                             for key in tap.keys)
        lines += [f"bind = [{bindings}]",
                  "# caps: a stopped logship loses its oldest records, never stops the broker (docs/mailerq.md)",
                  f"max_length = {MAX_LENGTH}", f"max_length_bytes = {MAX_LENGTH_BYTES}"]
    return "\n".join(lines) + "\n"


def config_text(base: str, plan: Plan, mq_file: str, password: Path) -> str:
    """The shipped config `base` with its [broker] table and [[queues]] replaced by the plan's."""
    head, found, rest = base.partition("[broker]")
    tail = rest[rest.index("[formats]"):] if found else base
    # password_file stays set, as plain `init` leaves it: `check` names the file until it is there
    return head + broker_toml(plan, mq_file, password) + "\n" + queues_toml(plan) + "\n" + tail


def permissions(plan: Plan) -> list[str]:
    """The rabbitmqctl lines for logship's user: configure, write and read on what it needs, nothing else."""
    vhost = plan.vhost
    own = [tap.name for tap in plan.taps if tap.keys]
    consumed = "|".join(re.escape(tap.name) for tap in plan.taps)
    if own:  # declare: configure; queue.bind: write on the queue and read on the exchange; consume: read
        mine = "|".join(re.escape(name) for name in own)
        configure = write = f"^({mine})$"
        read = f"^({consumed}|{re.escape(plan.exchange)})$"
    else:
        configure = write = "^$"
        read = f"^({consumed})$"
    return ["rabbitmqctl add_user logship            # asks for logship's own password",
            f"rabbitmqctl set_permissions -p {_shell(vhost)} logship "
            f"{_shell(configure)} {_shell(write)} {_shell(read)}"]


def report(plan: Plan, mq_file: str) -> list[str]:
    """What `init --from-mailerq` says it chose, and why."""
    where = f"exchange {plan.exchange!r}" if plan.exchange else "the default exchange"
    lines = [f"read {mq_file}: {plan.layout}, publishing to {where}, vhost {plan.vhost!r}, "
             f"{len(plan.urls)} node{'s' if len(plan.urls) > 1 else ''}"]
    for tap in plan.taps:
        how = f"bound with routing key{'s' if len(tap.keys) > 1 else ''} {', '.join(tap.keys)}, capped" \
            if tap.keys else "consumed directly"
        lines.append(f"queue {tap.name}: role {tap.role}{', scope ' + tap.scope if tap.scope else ''}, {how}")
    return lines + [f"note: {note}" for note in plan.notes]


def todo(plan: Plan, config: Path, password: Path) -> list[str]:
    """What is left to do before `logship run`."""
    steps = ["create logship's RabbitMQ user with the rabbitmqctl lines above (on one node of the cluster)"]
    if not password.exists():
        steps.append(f"put logship's password in {password} (one line, mode 0640, group logship)")
    steps.append(f"logship check --broker --config {config}: connects and says what each queue holds")
    if any(tap.keys for tap in plan.taps):
        steps.append("size the caps (max_length, max_length_bytes) from your result rate and the longest "
                     "outage to ride out (docs/mailerq.md)")
    return steps


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _shell(text: str) -> str:
    """A word quoted for a POSIX shell."""
    return "'" + text.replace("'", "'\\''") + "'"


def version(text: str) -> tuple[int, int]:
    """`--mailerq-version 5.15` as (5, 15)."""
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)*", text.strip())
    if not match:
        raise ValueError(f"not a MailerQ version such as 5.15: {text!r}")
    return int(match[1]), int(match[2])

