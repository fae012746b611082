"""Writes a table `make bench` measured into docs/benchmarks.md, between the markers
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, stamped with the command, the machine, the
date and the commit: the document's numbers come from the last run, never from hand edits.
The prose around the markers says what the numbers mean."""
import datetime, os, platform, subprocess

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        gib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 2 ** 20
        return f"{os.cpu_count()} cores of {cpu}, {gib:.0f} GiB"
    except (OSError, StopIteration):
        return f"{os.cpu_count()} cores of {cpu}"


def commit():
    """HEAD, and whether the binary's sources differ from it (documents and scripts aside)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "crates", "proto",
                            "build-support", "Cargo.toml", "Cargo.lock"], capture_output=True, text=True).stdout.strip()
    return (head or "unknown") + (" with uncommitted changes to the code" if dirty else "")


def write(name, table, command):
    """Replaces region `name` of docs/benchmarks.md with `table` (Markdown) and its stamp."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = open(DOC).read()
    if text.count(start) != 1 or text.count(end) != 1:
        raise SystemExit(f"{DOC}: expected one `{start}` … `{end}` region for this table")
    before, rest = text.split(start)
    _, after = rest.split(end)
    stamp = f"`{command}` on {machine()}, {datetime.date.today()}, commit {commit()}:"
    tmp = DOC + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{before}{start}\n{stamp}\n\n{table.rstrip()}\n{end}{after}")
    os.replace(tmp, DOC)
    print(f"wrote the `{name}` table of {os.path.relpath(DOC)}", flush=True)
