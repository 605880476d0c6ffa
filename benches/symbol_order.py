#!/usr/bin/env python3
"""The functions of one binary that ran, from callgrind dumps made with --demangle=no:
one linker symbol per line, the most instructions (self cost) first.

    python3 benches/symbol_order.py <object name> <dump>... > symbol-order.txt

Used by benches/symbol-order.sh; the format is callgrind's ("fn=(id) name" defines a
compressed name, "fn=(id)" refers to it, ids are per dump; the line after "calls=" is
the callee's inclusive cost, not the caller's own)."""
import collections
import re
import sys

NAME = re.compile(r"(c?)(ob|fn)=(?:\((\d+)\))?\s*(.*)")


def self_costs(paths, obj):
    cost = collections.Counter()
    for path in paths:
        names = {"ob": {}, "fn": {}}
        current = {"ob": None, "fn": None}
        skip_next = False
        for line in open(path, errors="replace"):
            if line.startswith(("version:", "# callgrind format")):
                names = {"ob": {}, "fn": {}}
                current = {"ob": None, "fn": None}
                continue
            if skip_next:
                skip_next = False
                continue
            m = NAME.match(line.rstrip("\n"))
            if m:
                callee, kind, ident, name = m.groups()
                if name:
                    if ident:
                        names[kind][ident] = name
                else:
                    name = names[kind].get(ident, "?")
                if not callee:
                    current[kind] = name
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            ob, fn = current["ob"], current["fn"]
            if (line[:1].isdigit() or line[:1] in "+-*") and fn and ob and obj in ob:
                parts = line.split()
                if len(parts) >= 2:
                    cost[fn] += int(parts[1])
    return cost


def main():
    obj, paths = sys.argv[1], sys.argv[2:]
    listed = 0
    for name, _ in self_costs(paths, obj).most_common():
        # callgrind's own entries ("(below main)") and code without a symbol ("0x…")
        # are nothing a linker could place.
        if name.startswith(("(", "0x")) or any(ch.isspace() for ch in name):
            continue
        print(name)
        listed += 1
    print(f"{listed} functions", file=sys.stderr)


main()
