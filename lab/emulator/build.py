"""Build the lab's /usr/local/bin/ollama: this package as one stdlib-only zipapp run by the host's python3 (3.9+).

`python -m lab.emulator.build OUT` writes the file (mode 0755); `zipapp_bytes()` returns it for lab/fleet.py.
Reproducible: the same sources give the same bytes (sorted entries, fixed timestamps and modes, stored
uncompressed so no zlib version can change the output). Inside the zip the package is `emulator/` (its modules
import each other relatively) and `__main__.py` runs `emulator.cli.main`.
"""

import stat
import sys
import zipfile
from io import BytesIO
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
INTERPRETER = b"#!/usr/bin/env python3\n"
DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
MAIN = (
    "import sys\n\n"
    "if sys.version_info < (3, 9):\n"
    '    sys.exit("ollama (keepwarm emulator) needs Python 3.9+, this is %s" % sys.version.split()[0])\n\n'
    "from emulator.cli import main\n\n"
    "sys.exit(main())\n"
)


def sources():
    """(name inside the zip, bytes) for every module of the package, sorted."""
    files = [("__main__.py", MAIN.encode())]
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        files.append(("emulator/" + path.name, path.read_bytes()))
    return files


def zipapp_bytes():
    buf = BytesIO()
    buf.write(INTERPRETER)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in sources():
            info = zipfile.ZipInfo(name, date_time=DATE_TIME)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3  # Unix, whatever OS builds it
            zf.writestr(info, data)
    return buf.getvalue()


def build(out):
    out = Path(out)
    out.write_bytes(zipapp_bytes())
    out.chmod(0o755)
    return out


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.emulator.build OUTPUT", file=sys.stderr)
        return 2
    print(build(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
