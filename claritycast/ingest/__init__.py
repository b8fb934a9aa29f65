"""The ingest wing: getting Clarity's numbers in, within the quota.

Connecting a project (`connect`), manual refreshes (`refresh`), the quota
policy and its report (`quota`, `quota_report`), what a failed fetch leads to
(`fetch_failures`) and replaying dead letters (`replay`). Plain async
functions over the store and a send function, used alike by the CLI, the
agents and the HTTP API. It may import `delivery` (a refused token tells the
project's owner through its connections), `clarity`, the store, `topics`,
the package root and `models`.
"""
