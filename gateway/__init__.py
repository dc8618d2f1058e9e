"""keepwarm-gateway: a reverse proxy in front of Ollama that keeps clients from unpinning, reloading or evicting a
pinned model (keep_alive, unload, runner options, eviction policies), and passes everything else through."""

__version__ = "0.1.0"
