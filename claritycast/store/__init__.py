"""The store wing: claritycast's MongoDB, one module per group of collections.

`Store` (in `core`) joins them: projects and organisations (`projects`), the
call log and refusals (`calls`), snapshots, pulls and answers' blocks
(`snapshots`, `claim_check`), connections, deliveries and charts
(`deliveries`), dead letters (`dead_letters`), projects' sealed tokens
(`tokens`) and the append-only audit trail (`audit`). PyMongo stays inside
this wing (`base.translated` maps its errors to ours). It may import the
package root and `models`, nothing above.
"""
