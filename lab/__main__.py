"""`python -m lab` / `keepwarm-lab`: the local systemd-nspawn fleet.

up [N] [--json] [--runtime systemd|docker]
                    boot hosts kw-lab-1 … kw-lab-N (default 3); running hosts are kept; the hosts this call
                    creates run Ollama as ollama.service (systemd, default) or as the `ollama` container of a
                    compose project (docker); `up 3` then `up 4 --runtime docker` is a mixed fleet
down                remove every process, namespace, interface, mount, overlay and cgroup of the lab
status [--json]     what really runs (nspawn processes, PID 1, units, SSH); exit 0 all running, 1 some
                    host unhealthy or leftovers found, 3 nothing up
ssh HOST [CMD...]   root SSH to a host (kw-lab-2, 2 or 198.18.0.12) with the lab key and known_hosts
inventory           print the path of the Ansible inventory of the running lab
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lab import dockerhost, errors, fleet


def _print_status(st: dict) -> None:
    hosts = st["hosts"]
    if not hosts:
        print("lab is down: no hosts")
    for h in hosts:
        units = h["units"]
        print(
            f"{h['name']:<10} {h['address']:<13} {h['state']:<8} nspawn={h['nspawn_pid'] or '-'} "
            f"pid1={h['pid1'] or '-'}({h['pid1_comm'] or '-'}) multi-user={units.get('multi-user.target', '-')} "
            + (
                f"docker={units.get('docker.service', '-')} compose={units.get(dockerhost.COMPOSE_UNIT, '-')} "
                if h.get("runtime") == dockerhost.RUNTIME
                else f"ollama={units.get('ollama.service', '-')} "
            )
            + f"ssh={'yes' if h['ssh'] else 'no'} "
            f"disk={(h['disk_bytes'] or 0) / 1e6:.1f}MB"
        )
    stray = {k: v for k, v in st["leftovers"].items() if v and k not in ("processes", "host_dirs")}
    if not hosts and any(stray.values()):
        print(f"leftovers (run `python -m lab down`): {json.dumps(stray)}")
    if st["inventory"]:
        print(f"inventory: {st['inventory']}")


def _exit_code(st: dict) -> int:
    hosts = st["hosts"]
    if not hosts:
        left = {k: v for k, v in st["leftovers"].items() if v}
        return 1 if left else 3
    return 0 if all(h["running"] for h in hosts) else 1


def _resolve_host(arg: str) -> str:
    if arg.isdigit():
        return fleet.host_addr(int(arg))
    if arg.startswith(fleet.NETWORK + "."):
        return arg
    return fleet.host_addr(fleet.host_index(arg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keepwarm-lab", description="keepwarm's local systemd-nspawn fleet")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="boot N hosts (default 3); idempotent")
    p_up.add_argument("count", nargs="?", type=int, default=3)
    p_up.add_argument("--json", action="store_true", help="print hosts for Molecule's create.yml as JSON")
    p_up.add_argument(
        "--runtime",
        choices=fleet.RUNTIMES,
        default="systemd",
        help="how new hosts run Ollama: ollama.service (systemd) or the ollama/ollama container (docker)",
    )
    sub.add_parser("down", help="remove everything the lab made")
    p_st = sub.add_parser("status", help="show what really runs")
    p_st.add_argument("--json", action="store_true")
    p_ssh = sub.add_parser("ssh", help="SSH to a host as root")
    p_ssh.add_argument("host")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("inventory", help="print the inventory path")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
            result = fleet.up(args.count, say=say, runtime=args.runtime)
            if args.json:
                print(json.dumps(result, indent=2))
            return 0
        if args.command == "down":
            fleet.down()
            return 0
        if args.command == "status":
            errors.require_root()
            st = fleet.status(with_disk=True)
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                _print_status(st)
            return _exit_code(st)
        if args.command == "inventory":
            inventory = fleet.Paths().inventory
            print(inventory)
            if not inventory.exists():
                print("lab: the lab is down, so there is no inventory yet: run `python -m lab up`", file=sys.stderr)
                return 1
            return 0
        if args.command == "ssh":
            paths = fleet.Paths()
            addr = _resolve_host(args.host)
            cmd = [*fleet.ssh_base_args(paths)]
            if not args.cmd:
                cmd.append("-t")
            cmd += [f"root@{addr}", *args.cmd]
            os.execvp(cmd[0], cmd)  # noqa: S606 - replaces this process with ssh
    except errors.LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
