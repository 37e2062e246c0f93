"""docs/mqtt.md is generated from the code: it must match what the code publishes."""

import pathlib

from octolux.device.commands import COMMANDS
from octolux.device.settings import SETTINGS
from octolux.lxp.inputs import FIELDS
from octolux.service import mqtt_docs

DOCS = pathlib.Path(__file__).parent.parent / "docs" / "mqtt.md"


def test_docs_mqtt_md_is_up_to_date():
    assert DOCS.read_text() == mqtt_docs.render(), (
        "docs/mqtt.md is out of date: run"
        " `.venv/bin/python -m octolux.service.mqtt_docs > docs/mqtt.md`"
    )


def test_every_key_and_command_is_documented():
    text = mqtt_docs.render()
    for field in FIELDS:
        assert f"| `{field.key}` | {field.unit} |" in text
    for name, command in COMMANDS.items():
        shown = name + (f"/<{command.argument}>" if command.argument else "")
        assert f"| `{shown}` |" in text
    for name in SETTINGS:
        assert f"| `{name}` |" in text.split("## Settings")[1]
