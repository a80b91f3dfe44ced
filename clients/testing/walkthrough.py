#!/usr/bin/env python3
"""Runs every grpcurl command of clients/README.md's walkthrough against a live gateway, in order,
as a reader would paste them (test tool for clients/test.sh, not an example).

The placeholders a reader fills in are filled from earlier answers: `cus_…`, `pa_…` and `key_…`
with the first id of that kind an answer showed (the one the walkthrough created), and
`<nextPageToken>` with the last page token. Server-streaming
commands run with -max-time and pass when they delivered at least one message. Prints one line
per service: `ok <service> <n> commands` or `FAIL <service>: <command>: <output>`, and exits
non-zero on any failure.

    GW=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… walkthrough.py clients/README.md
"""
import os
import re
import subprocess
import sys

STREAMING = ("/StreamCharges", "/StreamCreditEvents")
PLACEHOLDERS = {"cus_…": "cus_", "pa_…": "pa_", "key_…": "key_"}


def commands(readme: str) -> list[str]:
    """The grpcurl commands of the walkthrough's shell block, continuation lines joined."""
    text = readme.split("## grpcurl walkthrough", 1)[1]
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    out: list[str] = []
    for line in block.splitlines():
        if line.startswith("grpcurl "):
            out.append(line)
        elif out and line.strip() and not line.startswith("#") and "=" not in line.split(" ", 1)[0]:
            out[-1] += "\n" + line  # a continuation (after `\` or inside a quoted JSON body)
    return out


def service_of(command: str) -> str:
    """The service a command calls (`msp.gateway.v1.ChargeService`), or "reflection"."""
    match = re.search(r"\$GW (?:(?:list|describe) )?([\w.]+)(/\w+)?", command)
    return match.group(1) if match and match.group(2) else "reflection"


def main() -> int:
    readme = open(sys.argv[1], encoding="utf-8").read()
    env = dict(os.environ, AUTH=f"authorization: Bearer {os.environ['MSP_GATEWAY_API_KEY']}")
    seen: dict[str, str] = {}
    results: dict[str, list[str]] = {}
    failed = False
    for command in commands(readme):
        service = service_of(command)
        run = command
        for placeholder, prefix in PLACEHOLDERS.items():
            if placeholder in run:
                if prefix not in seen:
                    results.setdefault(service, []).append(f"FAIL {service}: no {prefix}… id seen before: {command}")
                    break
                run = run.replace(placeholder, seen[prefix])
        else:
            if "<nextPageToken>" in run:
                run = run.replace("<nextPageToken>", seen.get("token", ""))
            streaming = run.rstrip().endswith(STREAMING)
            if streaming:
                run = run.replace("grpcurl ", "grpcurl -max-time 3 ", 1)
            proc = subprocess.run(["bash", "-c", run], env=env, capture_output=True, text=True, timeout=60)
            output = proc.stdout + proc.stderr
            ok = proc.returncode == 0 or (streaming and proc.stdout.lstrip().startswith("{"))
            if not ok:
                results.setdefault(service, []).append(f"FAIL {service}: {command}: {output.strip()}")
            else:
                results.setdefault(service, []).append("ok")
                for prefix in PLACEHOLDERS.values():
                    ids = re.findall(rf'"id": "({prefix}[^"]+)"', proc.stdout)
                    if ids and prefix not in seen:  # the first one: the walkthrough's own
                        seen[prefix] = ids[0]
                token = re.search(r'"nextPageToken": "([^"]+)"', proc.stdout)
                if token:
                    seen["token"] = token.group(1)
    for service, outcomes in results.items():
        failures = [o for o in outcomes if o != "ok"]
        if failures:
            failed = True
            print("\n".join(failures))
        else:
            print(f"ok {service} {len(outcomes)} commands")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
