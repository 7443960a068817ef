#!/usr/bin/env python3
"""Man pages and bash completion for snapvm, generated from the built
binary's own --help, so that they never go stale (nothing here is checked in).

  gen_docs.py SNAPVM --man-dir DIR --completion FILE

Asks `SNAPVM --help`, then `SNAPVM CMD... --help` for every command the
output lists (CLI11's help: a description, a Usage: line, Positionals:,
Options: and Subcommands: sections, then a footer), and writes

  DIR/snapvm.1.gz          the commands, the exit statuses
  DIR/snapvm-CMD.1.gz      one per command; nested commands (pool serve,
                           image import, ...) as subsections of their parent
  FILE                     bash completion: commands and each command's flags

Fails (exit 1, one line) when the help output does not parse: a page with no
Usage: line or a command list that names nothing, rather than installing
empty pages.
"""

import argparse
import gzip
import os
import re
import subprocess
import sys

SECTION = re.compile(r"^(Positionals|Options|Subcommands|POSITIONALS|OPTIONS|SUBCOMMANDS):$")
NAME_COLUMN = 30  # CLI11 starts a description here, or on the next line when the name is longer


class Entry:
    def __init__(self, spec, text):
        self.spec = spec  # "-m,--mem TEXT=512M", "SNAPSHOT TEXT REQUIRED", "serve"
        self.text = text

    def names(self):
        return self.spec.split(" ", 1)[0].split(",")

    def argument(self):  # what follows the names: "TEXT=512M", "" for a flag
        parts = self.spec.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""

    def values(self):  # an enumeration's values: TEXT:{enforce,log,off}
        m = re.search(r":\{([^}]*)\}", self.argument())
        return m.group(1).split(",") if m else []


class Command:
    def __init__(self, path, text):
        self.path = path  # [] for snapvm itself, ["pool", "serve"]
        self.description, self.usage, self.footer = [], "", []
        self.sections = {"positionals": [], "options": [], "subcommands": []}
        self.children = []
        self._parse(text)

    def _parse(self, text):
        lines = text.rstrip("\n").split("\n")
        i = 0
        while i < len(lines) and not lines[i].startswith("Usage: "):
            self.description.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"'{' '.join(['snapvm'] + self.path)} --help' has no Usage: line")
        self.usage = lines[i][len("Usage: "):]
        i += 1
        section = None
        while i < len(lines):
            line = lines[i]
            m = SECTION.match(line)
            if m:
                section = m.group(1).lower()
            elif section and line.startswith("  ") and not line.startswith(" " * NAME_COLUMN):
                spec, _, text = line.strip().partition("  ")
                text = text.strip()
                if not text and i + 1 < len(lines) and lines[i + 1].startswith(" " * NAME_COLUMN):
                    i += 1
                    text = lines[i].strip()
                self.sections[section].append(Entry(spec.strip(), text))
            elif section and line.strip() == "":
                pass
            elif line.strip() or self.footer:
                section = None
                self.footer.append(line)
            i += 1

    def name(self):
        return "-".join(["snapvm"] + self.path)


def help_of(snapvm, path):
    r = subprocess.run([snapvm] + path + ["--help"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ValueError(f"'snapvm {' '.join(path + ['--help'])}' exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def load(snapvm, path):
    cmd = Command(path, help_of(snapvm, path))
    for sub in cmd.sections["subcommands"]:
        cmd.children.append(load(snapvm, path + [sub.spec]))
    return cmd


# --- man pages ---------------------------------------------------------------

def roff(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def bold(text):
    return "\\fB" + roff(text) + "\\fR"


def entries(out, items):
    for e in items:
        names = ", ".join(bold(n) for n in e.names())
        arg = e.argument()
        out.append(".TP")
        out.append(names + (" " + "\\fI" + roff(arg) + "\\fR" if arg else ""))
        out.append(roff(e.text) if e.text else "")


def prose(out, lines):
    """Footer text: paragraphs filled, indented lines (examples) kept as they are."""
    block = None
    for line in lines:
        if not line.strip():
            if block == "nf":
                out.append(".fi")
            block = None
            continue
        indented = line.startswith(" ")
        if indented and block != "nf":
            if block is None:
                out.append(".PP")
            out.append(".nf")
            block = "nf"
        elif not indented and block == "nf":
            out.append(".fi")
            block = None
        if block is None:
            out.append(".PP")
            block = "p"
        out.append(roff(line))
    if block == "nf":
        out.append(".fi")


def body(out, cmd, heading):
    """The SYNOPSIS, DESCRIPTION and OPTIONS of one command (heading: .SH or .SS)."""
    if heading == ".SH":
        out += [".SH SYNOPSIS", bold(cmd.usage.split(" ", 1)[0]) + " " + roff(cmd.usage.split(" ", 1)[1])
                if " " in cmd.usage else bold(cmd.usage)]
        out.append(".SH DESCRIPTION")
    else:
        out += [".SS " + roff(" ".join(cmd.path)), ".PP", bold(cmd.usage)]
    out += [".PP", roff(" ".join(l.strip() for l in cmd.description if l.strip()))]
    prose(out, cmd.footer)
    if cmd.sections["positionals"]:
        out.append(".PP" if heading == ".SS" else ".SH ARGUMENTS")
        entries(out, cmd.sections["positionals"])
    if cmd.sections["options"]:
        out.append(".PP" if heading == ".SS" else ".SH OPTIONS")
        entries(out, cmd.sections["options"])


def page(cmd, root, version):
    title = cmd.name()
    summary = " ".join(l.strip() for l in cmd.description if l.strip())
    if summary.startswith("snapvm: "):  # the program's own line, "snapvm: a snapshotting ..."
        summary = summary[len("snapvm: "):]
    out = [f'.\\" Generated by packaging/gen_docs.py from `{" ".join(["snapvm"] + cmd.path + ["--help"])}`.',
           f'.TH {roff(title.upper())} 1 "" "{roff(version)}" "User Commands"',
           ".SH NAME", roff(title) + " \\- " + roff(summary)]
    if not cmd.path:  # snapvm(1): the commands and the exit statuses
        out += [".SH SYNOPSIS", bold("snapvm") + " \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]"]
        out += [".SH DESCRIPTION", ".PP", roff(summary[:1].upper() + summary[1:]) + ".",
                ".PP", "Each command has its own page, " + bold("snapvm-COMMAND") + "(1), and its own",
                bold("--help") + "; " + bold("snapvm help COMMAND") + " prints the same."]
        out.append(".SH COMMANDS")
        for sub, child in zip(cmd.sections["subcommands"], cmd.children):
            out += [".TP", bold(sub.spec) + " (" + bold(child.name()) + "(1))", roff(sub.text)]
        out.append(".SH OPTIONS")
        entries(out, cmd.sections["options"])
        status, rest = split_exit_status(cmd.footer)
        if status:
            out.append(".SH EXIT STATUS")
            for code, text in status:
                out += [".TP", bold(code), roff(text)]
        prose(out, rest)
    else:
        body(out, cmd, ".SH")
        if cmd.children:
            out.append(".SH COMMANDS")
            for child in cmd.children:
                body(out, child, ".SS")
    out += [".SH SEE ALSO", ",\n".join(bold(n) + "(1)" for n in
                                       (["snapvm"] if cmd.path else []) +
                                       ([c.name() for c in root.children if c is not cmd] if not cmd.path else []))]
    return "\n".join(out) + "\n"


def split_exit_status(footer):
    """The top-level footer's 'Exit status:' list as (code, text) pairs, and the rest."""
    status, rest, inside = [], [], False
    for line in footer:
        if line.strip() == "Exit status:":
            inside = True
            continue
        if inside and not line.strip():
            inside = False
            continue
        if inside:
            m = re.match(r"^  (\S+(?:, \S+)*)\s{2,}(.*)$", line)
            if m and re.match(r"^[0-9]", m.group(1)):
                status.append([m.group(1), m.group(2)])
            elif status and status[-1][0] == "other":  # the "other" entry goes on
                status[-1][1] += " " + line.strip()
            else:  # each numbered entry is one line; what follows them is every other status
                status.append(["other", line.strip()])
            continue
        rest.append(line)
    return status, rest


def write_gz(path, text):
    # mtime 0 and no file name: the same help gives the same bytes.
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(text.encode())


# --- bash completion ---------------------------------------------------------

def walk(cmd):
    yield cmd
    for c in cmd.children:
        yield from walk(c)


def shell_words(words):
    for w in words:
        if not re.fullmatch(r"[A-Za-z0-9_.,:/=+-]+", w):
            raise ValueError(f"'{w}' is not a word the completion can hold")
    return " ".join(words)


def completion(root):
    subs, flags, valued, values = [], [], [], []
    for cmd in walk(root):
        key = " ".join(["snapvm"] + cmd.path)  # bash has no empty keys
        subs.append(f"  [{key!r}]={shell_words([s.spec for s in cmd.sections['subcommands']])!r}")
        names, takes = [], []
        for e in cmd.sections["options"]:
            names += e.names()
            if e.argument():
                takes += e.names()
            for n in e.names():
                if e.values():
                    values.append(f"  [{key + ' ' + n!r}]={shell_words(e.values())!r}")
        flags.append(f"  [{key!r}]={shell_words(names)!r}")
        valued.append(f"  [{key!r}]={shell_words(takes)!r}")
    return f"""# bash completion for snapvm: its commands and each command's flags.
# Generated by packaging/gen_docs.py from `snapvm --help` of the same build.
declare -gA _snapvm_subcommands=(
{chr(10).join(subs)}
)
declare -gA _snapvm_flags=(
{chr(10).join(flags)}
)
declare -gA _snapvm_valued=(
{chr(10).join(valued)}
)
declare -gA _snapvm_values=(
{chr(10).join(values)}
)

_snapvm() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} path=snapvm word i skip=0
  COMPREPLY=()
  # The command path so far (pool serve, ...), skipping flags' values; after
  # `jail ... --` a snapvm command starts again, after `exec ... --` the
  # guest's command, which is not ours to complete.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${{COMP_WORDS[i]}}
    if ((skip)); then skip=0; continue; fi
    if [[ $word == -- ]]; then
      [[ $path == "snapvm jail" ]] && {{ path=snapvm; continue; }}
      return 0
    fi
    if [[ $word == -* ]]; then
      [[ $word != *=* && " ${{_snapvm_valued[$path]}} " == *" $word "* ]] && skip=1
      continue
    fi
    if [[ " ${{_snapvm_subcommands[$path]}} " == *" $word "* ]]; then
      path="$path $word"
    fi
  done
  if ((skip)); then  # the value of the flag before: its choices, else files (-o default)
    local choices=${{_snapvm_values["$path ${{COMP_WORDS[COMP_CWORD-1]}}"]}}
    [[ -n $choices ]] && mapfile -t COMPREPLY < <(compgen -W "$choices" -- "$cur")
    return 0
  fi
  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${{_snapvm_flags[$path]}}" -- "$cur")
  elif [[ -n ${{_snapvm_subcommands[$path]}} ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${{_snapvm_subcommands[$path]}}" -- "$cur")
  fi
  return 0
}}
complete -o bashdefault -o default -F _snapvm snapvm
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("snapvm")
    ap.add_argument("--man-dir", required=True)
    ap.add_argument("--completion", required=True)
    a = ap.parse_args()
    try:
        version = subprocess.run([a.snapvm, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        root = load(a.snapvm, [])
        if not root.children:
            raise ValueError("'snapvm --help' lists no commands")
        os.makedirs(a.man_dir, exist_ok=True)
        for old in os.listdir(a.man_dir):  # a command that went away takes its page along
            if old.endswith(".1.gz"):
                os.unlink(os.path.join(a.man_dir, old))
        for cmd in [root] + root.children:
            write_gz(os.path.join(a.man_dir, cmd.name() + ".1.gz"), page(cmd, root, version))
        with open(a.completion, "w") as f:
            f.write(completion(root))
    except (ValueError, OSError, subprocess.CalledProcessError) as e:
        print(f"gen_docs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
