"""The model catalogue (what /api/tags lists) and model-name parsing (types/model ParseName)."""

import hashlib
import json
import threading

from .gotime import NS, parse_go_time

# --------------------------------------------------------------------------------------------------------------
# Model catalogue
# --------------------------------------------------------------------------------------------------------------

DAY_NS = 86400 * NS
# kv_bytes_per_token = 2 (K and V) x layers x kv_heads x head_dim x 2 bytes (f16), from each model's GGUF metadata.
DEFAULT_CATALOG = [
    {
        "name": "llama3.2:latest",
        "aliases": ["llama3.2:3b"],  # same blob: one runner (sched.go schedulerModelKey)
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "size": 2019393189,
        "family": "llama",
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
        "context_length": 131072,
        "embedding_length": 3072,
        "block_count": 28,
        "kv_bytes_per_token": 114688,
        "capabilities": ["completion", "tools"],
        "age_days": 20,
    },
    {
        "name": "llama3:latest",
        "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
        "size": 4661224676,
        "family": "llama",
        "parameter_size": "8.0B",
        "quantization_level": "Q4_0",
        "context_length": 8192,
        "embedding_length": 4096,
        "block_count": 32,
        "kv_bytes_per_token": 131072,
        "capabilities": ["completion"],
        "age_days": 90,
    },
    {
        "name": "qwen2.5:7b",
        "digest": "845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e",
        "size": 4683087332,
        "family": "qwen2",
        "parameter_size": "7.6B",
        "quantization_level": "Q4_K_M",
        "context_length": 32768,
        "embedding_length": 3584,
        "block_count": 28,
        "kv_bytes_per_token": 57344,
        "capabilities": ["completion", "tools"],
        "age_days": 45,
    },
    {
        "name": "nomic-embed-text:latest",
        "digest": "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        "size": 274302450,
        "family": "nomic-bert",
        "parameter_size": "137M",
        "quantization_level": "F16",
        "context_length": 2048,
        "embedding_length": 768,
        "block_count": 12,
        "kv_bytes_per_token": 36864,
        "capabilities": ["embedding"],
        "parameters": {"num_ctx": 8192},
        "age_days": 60,
    },
    {
        "name": "llama3.1:70b",
        "digest": "711a9e8463af04a2c9b3aaa6ae4c38e0c8a4d86e0e6e0d3d0d7c7e2b5b6f1a9c",
        "size": 42520413916,
        "family": "llama",
        "parameter_size": "70.6B",
        "quantization_level": "Q4_K_M",
        "context_length": 131072,
        "embedding_length": 8192,
        "block_count": 80,
        "kv_bytes_per_token": 327680,
        "capabilities": ["completion", "tools"],
        "age_days": 10,
    },
]

_PART_EXTRA = {"host": "-_.:", "namespace": "-_", "model": "-_.", "tag": "-_."}
_MISSING = "!MISSING!"  # types/model MissingPart: a part promised by its separator but empty (never valid)


def _valid_part(kind, s):
    """types/model isValidPart: 1-80 characters (host 1-350), ASCII letters/digits/`_` first, then also the kind's
    extra characters (host `-_.:`, namespace `-_`, model and tag `-_.`)."""
    if not 1 <= len(s) <= (350 if kind == "host" else 80):
        return False
    ok = [c.isascii() and (c.isalnum() or c in _PART_EXTRA[kind]) for c in s]
    return all(ok) and (s[0] == "_" or (s[0].isascii() and s[0].isalnum()))


def _cut_promised(s, sep):
    """types/model cutPromised: split at the last `sep`; an empty side of a present separator is MissingPart."""
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i] or _MISSING, s[i + len(sep) :] or _MISSING, True


def parse_name(s):
    """types/model ParseName (ParseNameBare merged with the defaults registry.ollama.ai/library/...:latest) and
    IsValid, then DisplayShortest: `llama3.2` -> `llama3.2:latest`, the default host/namespace dropped
    (case-insensitively). Returns None for an invalid name. A `@digest` suffix is dropped first (keepwarm's
    clients split and check digests themselves)."""
    if not isinstance(s, str):
        return None
    s = s.split("@", 1)[0]
    tag = ""
    if s.rfind(":") > s.rfind("/"):
        s, tag, _ = _cut_promised(s, ":")
    host = namespace = ""
    s, model, promised = _cut_promised(s, "/")
    if not promised:
        model = s
    else:
        s, namespace, promised = _cut_promised(s, "/")
        if not promised:
            namespace = s
        else:
            host = s.split("://", 1)[1] if "://" in s else s
    host, namespace, tag = host or "registry.ollama.ai", namespace or "library", tag or "latest"
    if not all(
        _valid_part(k, v) for k, v in (("host", host), ("namespace", namespace), ("model", model), ("tag", tag))
    ):
        return None
    if host.lower() != "registry.ollama.ai":
        return "%s/%s/%s:%s" % (host, namespace, model, tag)
    if namespace.lower() != "library":
        return "%s/%s:%s" % (namespace, model, tag)
    return "%s:%s" % (model, tag)


class ModelRefError(ValueError):
    """kind: "required" (modelref ErrModelRequired), "conflict" (ErrConflictingSourceSuffix) or "invalid"
    (model.ErrUnqualifiedName); message: the error's text."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _source_suffix(raw):
    """internal/modelref parseSourceSuffix: (base, source) where source is "local", "cloud" or None."""
    idx = raw.rfind(":")
    if idx >= 0:
        suffix_raw = raw[idx + 1 :].strip()
        suffix = suffix_raw.lower()
        if suffix in ("cloud", "local"):
            return raw[:idx], suffix
        if "/" not in suffix_raw and suffix.endswith("-cloud"):
            return raw[: idx + 1] + suffix_raw[: -len("-cloud")], "cloud"
    return raw, None


def parse_model_ref(raw):
    """server/model_resolver.go parseAndValidateModelRef (internal/modelref ParseRef): surrounding spaces are
    trimmed, empty is `model is required`, one `:local` or `:cloud` source suffix is split off (both is
    `use either :local or :cloud, not both: "<raw>"`), and the rest must be a valid name (else `invalid model
    name`). Returns (base, source)."""
    raw = (raw or "").strip()
    if not raw:
        raise ModelRefError("required", "model is required")
    base, source = _source_suffix(raw)
    if source is not None and _source_suffix(base)[1] is not None:
        raise ModelRefError("conflict", "use either :local or :cloud, not both: %s" % json.dumps(raw))
    if parse_name(base) is None:
        raise ModelRefError("invalid", "invalid model name")
    return base, source


BLOBS = "/usr/share/ollama/.ollama/models/blobs/"


class Model:
    def __init__(self, d, now_ns):
        self.name = d["name"]
        self.digest = d.get("digest") or hashlib.sha256(self.name.encode()).hexdigest()
        self.size = int(d.get("size", 1_000_000_000))
        self.family = d.get("family", "llama")
        self.families = d.get("families", [self.family])
        self.format = d.get("format", "gguf")
        self.parameter_size = d.get("parameter_size", "1B")
        self.quantization_level = d.get("quantization_level", "Q4_K_M")
        self.context_length = int(d.get("context_length", 8192))
        self.embedding_length = int(d.get("embedding_length", 2048))
        self.block_count = int(d.get("block_count", 32))
        self.kv_bytes_per_token = int(d.get("kv_bytes_per_token", 131072))
        self.overhead = int(d.get("graph_overhead", 300_000_000))
        self.capabilities = list(d.get("capabilities", ["completion"]))
        self.parameters = dict(d.get("parameters", {}))
        if "modified_at" in d:
            self.modified_ns = parse_go_time(d["modified_at"])
        else:
            self.modified_ns = now_ns - int(float(d.get("age_days", 1)) * DAY_NS)
        # The digest is the manifest's (what /api/tags and /api/ps show); the blob is the GGUF model layer. Runners
        # are keyed by the blob path (sched.go schedulerModelKey: ModelPath), so two tags of one manifest, or a
        # model created FROM another (catalogue field "from"), share one runner.
        self.blob = d.get("blob") or self.digest
        self.path = BLOBS + "sha256-" + self.blob  # runner key (blob path)
        self.parent_model = d.get("from", "")
        # Modelfile ADAPTER / projector layers: needsReload compares them (sched.go runnerRef.needsReload)
        self.adapters = [BLOBS + "sha256-" + x for x in d.get("adapters", [])]
        self.projectors = [BLOBS + "sha256-" + x for x in d.get("projectors", [])]

    def details(self):
        return {
            "parent_model": "",  # /api/ps and /api/tags leave it empty; /api/show has it (routes.go ShowHandler)
            "format": self.format,
            "family": self.family,
            "families": self.families,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def _digest(d):
    return d.get("digest") or hashlib.sha256(d["name"].encode()).hexdigest()


def _expand_from(d, by_name, seen=()):
    """A catalogue entry with `"from": NAME` is a model created FROM another (`ollama create` with `FROM NAME`): it
    has its own manifest digest but the base's model blob (so the same runner key), the base's metadata and
    adapters unless it names its own, and the base's Modelfile parameters overlaid with its own."""
    src = d.get("from")
    if not src:
        return d
    key = (parse_name(src) or "").lower()
    base = by_name.get(key)
    if base is None or key in seen:
        raise ValueError("catalogue entry %r: from %r is not another entry of the catalogue" % (d["name"], src))
    base = _expand_from(base, by_name, (*seen, key))
    out = {k: v for k, v in base.items() if k not in ("name", "aliases", "digest", "modified_at", "age_days", "from")}
    out["blob"] = base.get("blob") or _digest(base)
    out.update({k: v for k, v in d.items() if k != "parameters"})
    out["parameters"] = dict(base.get("parameters", {}), **d.get("parameters", {}))
    return out


class Catalog:
    def __init__(self, entries, now_ns):
        self.models = {}
        by_name = {}
        for d in entries:
            for n in [d["name"], *d.get("aliases", [])]:
                by_name[(parse_name(n) or n).lower()] = d
        entries = [_expand_from(d, by_name) for d in entries]
        for d in entries:
            m = Model(d, now_ns)
            key = parse_name(m.name)
            if key is None:
                raise ValueError("invalid model name in catalogue: %r" % m.name)
            m.name = key
            self.models[key.lower()] = (key, m)
            for alias in d.get("aliases", []):
                akey = parse_name(alias)
                if akey:
                    self.models[akey.lower()] = (akey, m)
        self.lock = threading.Lock()

    def get(self, name):
        """Returns (display_name, Model) or (None, None)."""
        key = parse_name(name)
        if key is None:
            return None, None
        with self.lock:
            hit = self.models.get(key.lower())
        return hit if hit else (key, None)

    def entries(self):
        with self.lock:
            return list(self.models.values())

    def delete(self, name):
        key = parse_name(name)
        with self.lock:
            return key is not None and self.models.pop(key.lower(), None) is not None
