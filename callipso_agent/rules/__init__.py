"""Rules: the YAML rule files, their schema, and the engine turning measurements and events into signals.

Import from the modules (``rules.engine``, ``rules.loader``, ``rules.signal``, ``rules.ranges``): this package
stays free of imports so the Nagios plugin can use ``rules.ranges`` with the standard library alone.
"""
