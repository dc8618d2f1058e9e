"""Build-time copies of the collection's module_utils rules (see gateway/_rules.py); empty in a checkout."""
