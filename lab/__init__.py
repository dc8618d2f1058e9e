"""keepwarm's local test fleet: systemd-nspawn Debian 12 hosts running the Ollama emulator."""
