#!/usr/bin/env python3
"""Prints the id of the newest target of targets.json with the given line and flavour (and
toolchain suite, if given): which kernel of a line the boot tests use, as the archive moves on.
With --representative, the ids CI builds instead of the whole matrix: the newest generic
kernel (amd64, arm64) of each toolchain, line and architecture, and the newest 6.1 rt-amd64
(booted): one build per compiler, kernel line and architecture catches the drift a new kernel
brings; the flavours of one line share its sources. The full mode builds every target.
Usage: pick.py LINE FLAVOUR [TOOLCHAIN] | pick.py --representative"""
import json
import re
import sys
from pathlib import Path


def vkey(v):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]


doc = json.loads((Path(__file__).resolve().parent / "targets.json").read_text())


def newest(targets):
    return max(targets, key=lambda t: vkey(t["image"].split("=")[1]))


if sys.argv[1:] == ["--representative"]:
    groups = {}
    for t in doc["targets"]:
        if t["flavour"] in ("amd64", "arm64"):
            groups.setdefault((t["toolchain"], t["line"], t["arch"]), []).append(t)
    ids = [newest(g)["id"] for g in groups.values()]
    rt = [t for t in doc["targets"] if t["line"] == "6.1" and t["flavour"] == "rt-amd64"]
    ids += [newest(rt)["id"]] if rt else []
    print(" ".join(sorted(set(ids))))
    sys.exit(0)

line, flavour = sys.argv[1], sys.argv[2]
toolchain = sys.argv[3] if len(sys.argv) > 3 else None
found = [t for t in doc["targets"] if t["line"] == line and t["flavour"] == flavour and toolchain in (None, t["toolchain"])]
if not found:
    sys.exit(f"pick.py: no target for line {line}, flavour {flavour}" + (f", toolchain {toolchain}" if toolchain else ""))
print(newest(found)["id"])
