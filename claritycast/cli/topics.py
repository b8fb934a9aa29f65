"""`claritycast topics`: the topics other services read, and their JSON Schemas.

Everything comes from the declarations in ``topics/`` and the settings (topic
prefix, partition count), so it works with no broker or database running.
"""

from __future__ import annotations

import json

import click

from claritycast.settings import Settings
from topics.schema import describe_retention, json_schemas, topic_contracts


@click.command()
@click.option(
    "--json-schema",
    "as_json_schema",
    is_flag=True,
    help="Print {topic: JSON Schema of its values} as one JSON document, and nothing else.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def topics(settings: Settings, as_json_schema: bool, as_json: bool) -> None:
    """List every topic: key, value record and version, partitions, retention.

    Other services consume these topics; docs/events.md says how they may
    change.
    """
    if as_json_schema:
        schemas = json_schemas(settings.topic_prefix, settings.partitions)
        click.echo(json.dumps(schemas, indent=2, ensure_ascii=False))
        return
    contracts = topic_contracts(settings.topic_prefix, settings.partitions)
    if as_json:
        click.echo(json.dumps([c.as_json() for c in contracts], indent=2, ensure_ascii=False))
        return
    rows = [
        (
            contract.name,
            contract.key,
            f"{contract.value} v{contract.schema_version}",
            str(contract.partitions),
            f"{describe_retention(contract.retention)}, {contract.cleanup_policy}",
            contract.description,
        )
        for contract in contracts
    ]
    header = ("topic", "key", "value", "partitions", "retention", "what it means")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))
