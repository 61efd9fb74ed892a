#!/usr/bin/env python3
"""Prints the id of the newest target of targets.json with the given line and flavour (and
toolchain suite, if given): which kernel of a line the boot tests use, as the archive moves on.
Usage: pick.py LINE FLAVOUR [TOOLCHAIN]"""
import json
import re
import sys
from pathlib import Path


def vkey(v):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]


line, flavour = sys.argv[1], sys.argv[2]
toolchain = sys.argv[3] if len(sys.argv) > 3 else None
doc = json.loads((Path(__file__).resolve().parent / "targets.json").read_text())
found = [t for t in doc["targets"] if t["line"] == line and t["flavour"] == flavour and toolchain in (None, t["toolchain"])]
if not found:
    sys.exit(f"pick.py: no target for line {line}, flavour {flavour}" + (f", toolchain {toolchain}" if toolchain else ""))
print(max(found, key=lambda t: vkey(t["image"].split("=")[1]))["id"])
