"""Build-time copies of the files gateway/_rules.py loads: the collection's module_utils rules and the config format
it shares with the agent (heartbeat_agent/_configfile.py). Empty in a checkout."""
