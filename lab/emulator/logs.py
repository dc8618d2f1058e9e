"""Log lines in the upstream server's text format, written without ever blocking a request thread."""

import fcntl
import os
import stat
import time

from .gotime import go_time

# --------------------------------------------------------------------------------------------------------------
# Logging that never blocks: tests pipe our output and may never read it (a full pipe would hang the server).
# --------------------------------------------------------------------------------------------------------------


def _make_nonblocking(fd):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    except OSError:
        pass


def log(msg, level="INFO"):
    line = "time=%s level=%s source=lab.emulator msg=%s\n" % (
        go_time(time.time_ns(), utc=False),
        level,
        msg,
    )
    try:
        os.write(2, line.encode("utf-8", "backslashreplace"))
    except OSError:
        pass  # pipe full or closed: drop the line rather than block a request thread
