# -*- coding: utf-8 -*-
# Copyright (c) keepwarm maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of keepwarm.ollama: systemd drop-ins for ollama.service and what systemd reads back.
# Import as ansible_collections.keepwarm.ollama.plugins.module_utils._systemd

"""Render ``Environment=`` drop-ins with systemd's quoting, parse unit files and ``systemctl show`` output.

Rules followed (systemd 252, Debian 12):

* ``Environment=`` values are split with ``extract_first_word(EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE)`` and
  then specifier-expanded (src/core/load-fragment.c ``config_parse_environ``). Inside double quotes a
  backslash starts a C escape (``\\\\`` is a backslash, ``\\"`` a quote, ``\\n`` a newline); ``%%`` is a
  literal ``%``. keepwarm writes ``Environment="NAME=value"`` with ``\\``, ``"`` and ``%`` escaped and
  refuses newlines and other control characters, which could end the line and inject unit directives.
* An empty ``Environment=`` resets the list; a later assignment of the same variable wins;
  ``EnvironmentFile=`` is applied after ``Environment=`` and wins over it (src/core/execute.c).
* The unit file is read first, then every drop-in ``*.conf`` from ``<unit>.d/`` (and ``service.d/``) of
  all search directories, sorted by file name; the same file name in a higher-priority directory masks
  the lower one (systemd.unit(5) "drop-in").
* ``systemctl show`` prints string lists space-separated, quoting an item that needs it with
  ``shell_maybe_quote`` (double quotes, backslash before ``"\\`$``) (src/shared/bus-print-properties.c).

Ollama's own reading of the variables is in ``_duration.py`` and the table below (envconfig/config.go).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import os
import re

from ansible_collections.keepwarm.ollama.plugins.module_utils._duration import (
    DurationError,
    validate_env_keep_alive,
    validate_env_uint,
)

# Every OLLAMA_* variable upstream HEAD reads through envconfig/config.go (ollama/ollama fb30760, August 2026), with
# the accessor's type: "duration" (KeepAlive, LoadTimeout), "uint" (Uint, Uint64: strconv.ParseUint), "bool" (Bool,
# BoolWithDefault: strconv.ParseBool, anything else is true), "host" (Host), "origins" (AllowedOrigins), "loglevel"
# (LogLevel: ParseBool, then ParseInt), "string" (String, Var, Models, Remotes). Nothing test-only belongs here:
# names such as the emulator's OLLAMA_EMULATOR_* get the "not a variable Ollama reads" warning like any other.
# Not read any more (removed upstream): OLLAMA_INTEL_GPU, OLLAMA_MULTIUSER_CACHE, OLLAMA_NEW_ENGINE, OLLAMA_TMPDIR.
KNOWN_VARIABLES = {
    "OLLAMA_AUTH": "bool",  # UseAuth
    "OLLAMA_CONTEXT_LENGTH": "uint",
    "OLLAMA_DEBUG": "loglevel",
    "OLLAMA_DEBUG_LOG_REQUESTS": "bool",
    "OLLAMA_EDITOR": "string",
    "OLLAMA_FLASH_ATTENTION": "bool",
    "OLLAMA_GO_TEMPLATE": "bool",
    "OLLAMA_GPU_OVERHEAD": "uint",  # Uint64
    "OLLAMA_HOST": "host",
    "OLLAMA_IGPU_ENABLE": "bool",  # EnableIntegratedGPU (BoolWithDefault)
    "OLLAMA_KEEP_ALIVE": "duration",
    "OLLAMA_KV_CACHE_TYPE": "string",
    "OLLAMA_LLM_LIBRARY": "string",
    "OLLAMA_LOAD_TIMEOUT": "duration",
    "OLLAMA_MAX_LOADED_MODELS": "uint",
    "OLLAMA_MAX_QUEUE": "uint",
    "OLLAMA_MAX_TRANSFER_STREAMS": "uint",
    "OLLAMA_MODELS": "string",
    "OLLAMA_NO_CLOUD": "bool",  # NoCloudEnv
    "OLLAMA_NOHISTORY": "bool",
    "OLLAMA_NOPRUNE": "bool",
    "OLLAMA_NUM_PARALLEL": "uint",
    "OLLAMA_ORIGINS": "origins",
    "OLLAMA_REMOTES": "string",
    "OLLAMA_SCHED_SPREAD": "bool",
    "OLLAMA_VULKAN": "bool",  # EnableVulkan (BoolWithDefault)
}

# strconv.ParseBool: anything else is read as true by envconfig Bool (config.go)
_GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would also match before a trailing newline
_CONTROL = re.compile("[\x00-\x1f\x7f]")

DEFAULT_SYSTEMD_DIR = "/etc/systemd/system"
# systemd's system unit search path, highest priority first (systemd.unit(5) "Unit File Load Path").
SYSTEM_UNIT_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)


class UnitValueError(ValueError):
    """A variable name or value keepwarm refuses to write; the message names it and why."""


def closest_known(name):
    """The known OLLAMA_* name closest to ``name`` (difflib), or None."""
    matches = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_variable_warning(name):
    """A warning for an OLLAMA_* name Ollama does not read, or None when the name is known or not OLLAMA_*."""
    if not name.startswith("OLLAMA_") or name in KNOWN_VARIABLES:
        return None
    near = closest_known(name)
    hint = "; did you mean %s?" % near if near else ""
    return "%s is not a variable Ollama reads (envconfig/config.go), so it has no effect%s" % (name, hint)


def _as_text(name, value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value
    raise UnitValueError("%s=%r refused: expected a string or a number" % (name, value))


def validate_variable(name, value):
    """Validate one environment variable for the drop-in; return the exact text systemd must read back.

    Refuses invalid names, control characters (a newline would end the ``Environment=`` line and could
    inject directives), and values that Ollama would ignore or misread where its rule is known.
    """
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise UnitValueError("environment variable name %r refused: use letters, digits and _" % (name,))
    kind = KNOWN_VARIABLES.get(name, "any")
    if kind == "duration":
        try:
            text = validate_env_keep_alive(value, name=name)
        except DurationError as exc:
            raise UnitValueError(str(exc)) from None
    elif kind == "uint":
        try:
            text = validate_env_uint(value, name)
        except DurationError as exc:
            raise UnitValueError(str(exc)) from None
    elif kind == "bool":
        text = _as_text(name, value)
        if text not in _GO_BOOLS:
            raise UnitValueError(
                "%s=%r refused: Ollama parses it with strconv.ParseBool and reads anything else as true "
                "(envconfig/config.go Bool); use true or false" % (name, value)
            )
    elif kind == "origins":
        text = _as_text(name, value)
        for entry in text.split(","):
            if entry != entry.strip() or not ("*" in entry or re.match(r"^[a-z][a-z0-9+.-]*://", entry)):
                raise UnitValueError(
                    "%s=%r refused: entry %r has no scheme (http://, https://, app://...) and no '*', or has "
                    "spaces around it; such an entry makes cors.New panic and ollama serve dies at startup "
                    "(envconfig/config.go AllowedOrigins; server/routes.go GenerateRoutes)" % (name, value, entry)
                )
    else:
        text = _as_text(name, value)
    bad = _CONTROL.search(text)
    if bad:
        raise UnitValueError(
            "%s=%r refused: it contains the control character %r; a newline could end the Environment= line and "
            "inject unit directives, so keepwarm never writes one" % (name, value, bad.group(0))
        )
    return text


def desired_environment(keep_alive=None, max_loaded_models=None, extra=None):
    """Validate keepwarm's options with the drop-in's rules (ollama_override, and the compose override through
    _container); return ``(list of (name, text), warnings)`` or raise UnitValueError, naming the bad value."""
    env, warnings = [], []
    extra = extra or {}
    first_class = (
        ("keep_alive", "OLLAMA_KEEP_ALIVE", keep_alive),
        ("max_loaded_models", "OLLAMA_MAX_LOADED_MODELS", max_loaded_models),
    )
    for option, var, value in first_class:
        if var in extra and value is not None:
            raise UnitValueError("%s is set twice: use either %s or environment.%s" % (var, option, var))
    for _option, var, value in first_class:
        if value is not None:
            env.append((var, validate_variable(var, value)))
    for name in sorted(extra):
        env.append((name, validate_variable(name, extra[name])))
        warning = unknown_variable_warning(name)
        if warning:
            warnings.append(warning)
    return env, warnings


def escape_value(text):
    """Escape one ``NAME=value`` for a double-quoted ``Environment=`` word: ``\\``, ``"`` then ``%``."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def render_environment_line(name, text):
    """``Environment="NAME=value"`` with systemd quoting; ``text`` must come from validate_variable."""
    if _CONTROL.search(text) or _CONTROL.search(name):
        raise UnitValueError("%s: control characters are never written" % name)
    return 'Environment="%s"' % escape_value("%s=%s" % (name, text))


def render_dropin(environment, header=None):
    """The drop-in text for ``environment`` (a list of ``(name, text)`` in write order)."""
    lines = []
    for line in (header or "").splitlines():
        lines.append(("# " + line).rstrip())
    lines.append("[Service]")
    for name, text in environment:
        lines.append(render_environment_line(name, text))
    return "\n".join(lines) + "\n"


# --- reading unit files -------------------------------------------------------------------------------------

_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}


def _cunescape_one(s, i):
    """src/basic/escape.c cunescape_one: decode the escape after the backslash at s[i-1]; (text, next index)."""
    c = s[i] if i < len(s) else ""
    if c in _C_ESCAPES:
        return _C_ESCAPES[c], i + 1
    if c == "x" and re.match(r"^[0-9a-fA-F]{2}", s[i + 1 : i + 3]):
        return chr(int(s[i + 1 : i + 3], 16)), i + 3
    if c == "u" and re.match(r"^[0-9a-fA-F]{4}", s[i + 1 : i + 5]):
        return chr(int(s[i + 1 : i + 5], 16)), i + 5
    if c == "U" and re.match(r"^[0-9a-fA-F]{8}", s[i + 1 : i + 9]):
        return chr(int(s[i + 1 : i + 9], 16)), i + 9
    if re.match(r"^[0-7]{3}", s[i : i + 3]):
        return chr(int(s[i : i + 3], 8)), i + 3
    # an invalid escape: systemd logs it and keeps the text as is (EXTRACT_RELAX behaviour for words)
    return "\\" + c, i + 1


def split_words_cunescape(value):
    """extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE) repeated: the words of an Environment= value."""
    words = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t\n\r":
            i += 1
        if i >= n:
            return words
        word, quote = [], None
        while i < n:
            c = value[i]
            if quote is None and c in " \t\n\r":
                break
            if c == "\\":
                text, i = _cunescape_one(value, i + 1)
                word.append(text)
                continue
            if quote is None and c in "\"'":
                quote = c
            elif quote is not None and c == quote:
                quote = None
            else:
                word.append(c)
            i += 1
        words.append("".join(word))


def unescape_specifiers(word):
    """``%%`` is a literal ``%``; other specifiers (``%n``, ``%h``...) are left as written."""
    return re.sub(r"%%", "%", word)


def parse_environment_value(value):
    """One ``Environment=`` value (after ``=``) as systemd reads it: a list of ``(name, value)``."""
    result = []
    for raw in split_words_cunescape(value):
        word = unescape_specifiers(raw)
        if "=" not in word:
            continue  # systemd ignores an invalid environment assignment, with a log line
        name, _sep, val = word.partition("=")
        result.append((name, val))
    return result


def parse_unit_text(text):
    """Key/value lines of a unit file: a list of ``(section, key, value, line_number)``.

    Comments start with ``#`` or ``;``; a trailing backslash continues the line (src/shared/conf-parser.c).
    """
    entries = []
    section = None
    pending, start = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw
        if pending is not None:
            if line.lstrip().startswith(("#", ";")):
                continue
            line = pending + " " + line.strip()
        else:
            start = number
            line = line.strip()
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = None
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if "=" in line:
            key, _sep, value = line.partition("=")
            entries.append((section, key.strip(), value.strip(), start))
    return entries


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def parse_environment_file(text):
    """An ``EnvironmentFile=``: ``KEY=VALUE`` lines, ``#``/``;`` comments, optional quotes (load-env-file.c)."""
    result = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _sep, val = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        result.append((key, val))
    return result


def unit_sources(unit, systemd_dir=DEFAULT_SYSTEMD_DIR, search_dirs=None):
    """The unit file and its drop-ins in the order systemd applies them: a list of paths.

    With the default ``systemd_dir`` all of systemd's search directories are scanned; with another
    directory (tests, chroots) only that one.
    """
    if search_dirs is None:
        search_dirs = SYSTEM_UNIT_DIRS if systemd_dir == DEFAULT_SYSTEMD_DIR else (systemd_dir,)
    sources = []
    for d in search_dirs:
        path = os.path.join(d, unit)
        if os.path.isfile(path):
            sources.append(path)
            break
    kind = unit.rsplit(".", 1)[-1]
    by_name = {}
    for d in search_dirs:
        for sub in (unit + ".d", kind + ".d"):
            folder = os.path.join(d, sub)
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                if name.endswith(".conf") and name not in by_name:
                    by_name[name] = os.path.join(folder, name)
    for name in sorted(by_name):
        sources.append(by_name[name])
    return sources


def effective_assignments(sources, override=None):
    """Replay Environment=/EnvironmentFile=/UnsetEnvironment= of ``sources`` in order.

    ``override`` maps a path to replacement text (the drop-in as it will be; ``None`` = absent). Returns
    ``(assignments, resets, final)``: every assignment ``{variable, path, value, line}`` in order, the
    ``(path, line)`` of every empty ``Environment=`` reset, and the winning assignment per variable.
    ``UnsetEnvironment=NAME`` (or ``NAME=VALUE``, which unsets only that value) removes a variable from the final
    environment wherever it appears, since systemd applies it last (src/core/execute.c build_environment, then
    ``strv_env_delete`` of the unset list); it is recorded as an assignment with ``unset: True`` and ``value: None``.
    An empty ``UnsetEnvironment=`` resets the list.
    """
    override = override or {}
    paths = list(sources)
    for path in override:
        if path not in paths:
            paths.append(path)
    # keep systemd's order: unit file first, then drop-ins sorted by file name
    unit_files = [p for p in paths if not os.path.dirname(p).endswith(".d")]
    dropins = sorted((p for p in paths if os.path.dirname(p).endswith(".d")), key=os.path.basename)
    assignments, resets, env_files, unsets = [], [], [], []
    final = {}
    for path in unit_files[:1] + dropins:
        text = override[path] if path in override else _read(path)
        if text is None:
            continue
        for section, key, value, line in parse_unit_text(text):
            if section != "Service":
                continue
            if key == "Environment":
                if value == "":
                    resets.append((path, line))
                    final = {}
                    continue
                for name, val in parse_environment_value(value):
                    entry = {"variable": name, "path": path, "value": val, "line": line}
                    assignments.append(entry)
                    final[name] = entry
            elif key == "EnvironmentFile":
                if value == "":
                    env_files = []
                else:
                    env_files.append((path, line, value))
            elif key == "UnsetEnvironment":
                if value == "":
                    unsets = []
                else:
                    unsets.extend((path, line, word) for word in split_words_cunescape(value))
    # EnvironmentFile= is read after Environment= and wins over it (src/core/execute.c build_environment)
    for path, line, value in env_files:
        target = value[1:] if value.startswith("-") else value
        for name, val in parse_environment_file(_read(target)):
            entry = {"variable": name, "path": target, "value": val, "line": line, "via": path}
            assignments.append(entry)
            final[name] = entry
    for path, line, word in unsets:
        name, has_value, val = word.partition("=")
        current = final.get(name)
        if current is None or (has_value and current["value"] != val):
            continue
        entry = {"variable": name, "path": path, "value": None, "line": line, "unset": True}
        assignments.append(entry)
        del final[name]
    return assignments, resets, final


def masked_by(own_path, sources):
    """The drop-in of the same file name that systemd reads instead of ``own_path`` (a higher-priority directory such
    as ``/etc/systemd/system.control`` or ``/run/systemd/system``: systemd.unit(5) "drop-in"), or None.
    ``sources`` comes from ``unit_sources``, which keeps only the highest-priority file of each name."""
    name = os.path.basename(own_path)
    for path in sources:
        if os.path.dirname(path).endswith(".d") and os.path.basename(path) == name and path != own_path:
            return path
    return None


def find_conflicts(own_path, variables, sources, own_text):
    """Every other unit line or drop-in that sets, unsets or masks one of ``variables``, with ``wins`` = it beats
    ours. ``unset`` marks an ``UnsetEnvironment=`` entry; ``masked`` a same-named drop-in that hides ours."""
    masking = masked_by(own_path, sources)
    assignments, resets, final = effective_assignments(sources, {} if masking else {own_path: own_text})
    conflicts = []
    if masking and own_text is not None:
        for name in sorted(variables):
            conflicts.append(
                {"variable": name, "path": masking, "line": None, "value": None, "wins": True, "masked": True}
            )
    for entry in assignments:
        if entry["variable"] not in variables or entry["path"] == own_path:
            continue
        conflict = {
            "variable": entry["variable"],
            "path": entry["path"],
            "line": entry["line"],
            "value": entry["value"],
            "wins": entry.get("unset", False) or final.get(entry["variable"]) is entry,
        }
        if entry.get("unset"):
            conflict["unset"] = True
        conflicts.append(conflict)
    if own_text is not None:
        for path, line in resets:
            if path == own_path:
                continue
            for name in variables:
                if name not in final:
                    conflicts.append({"variable": name, "path": path, "line": line, "value": None, "wins": True})
    return conflicts


# --- systemctl show ----------------------------------------------------------------------------------------


def parse_show(text):
    """``systemctl show -p A -p B`` output: ``Key=value`` lines as a dict (first ``=`` splits)."""
    result = {}
    for line in text.splitlines():
        if "=" in line:
            key, _sep, value = line.partition("=")
            result[key] = value
    return result


def split_shell_quoted(value):
    """Split a property printed with shell_maybe_quote (src/basic/escape.c): double or single quotes, and
    inside double quotes a backslash before ``"\\`$`` escapes it, as in a POSIX shell."""
    words = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] == " ":
            i += 1
        if i >= n:
            return words
        word, quote = [], None
        while i < n:
            c = value[i]
            if quote is None:
                if c == " ":
                    break
                if c in "\"'":
                    quote = c
                elif c == "\\" and i + 1 < n:
                    i += 1
                    word.append(value[i])
                else:
                    word.append(c)
            elif quote == '"':
                if c == '"':
                    quote = None
                elif c == "\\" and i + 1 < n and value[i + 1] in '"\\`$\n':
                    i += 1
                    word.append(value[i])
                else:
                    word.append(c)
            elif c == "'":
                quote = None
            else:
                word.append(c)
            i += 1
        words.append("".join(word))


def parse_show_environment(value):
    """The ``Environment=`` property of ``systemctl show`` as an ordered dict-like list of (name, value)."""
    env = []
    for word in split_shell_quoted(value or ""):
        if "=" in word:
            name, _sep, val = word.partition("=")
            env.append((name, val))
    return env


def parse_proc_environ(data):
    """``/proc/<pid>/environ`` bytes (NUL-separated ``NAME=value``) as a dict."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogateescape")
    env = {}
    for item in data.split("\0"):
        if "=" in item:
            name, _sep, val = item.partition("=")
            env[name] = val
    return env
