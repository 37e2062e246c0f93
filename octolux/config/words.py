"""The words config.ini and MQTT payloads both read as true or false (case-insensitive)."""

# MQ.md: "true for any of 1, t, true, y, yes, on (case-insensitive); anything else is false".
TRUE_WORDS = frozenset({"1", "t", "true", "y", "yes", "on"})
# Their opposites, for config.ini, where anything else is a mistake rather than false.
FALSE_WORDS = frozenset({"0", "f", "false", "n", "no", "off"})
