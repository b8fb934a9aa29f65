"""The reports wing: stored snapshots turned into what people read.

Series and breakdowns (`series`), plain and AI summaries (`summary`,
`summariser`), charts (`charts`, with their words in `chart_labels`, their
fonts in `chart_text` and their PNG in `chart_png`), and the report a
connection sends (`builder`). Reads history from the store, never from
Clarity. It may import `clarity`, the store, the package root and `models`.
"""
