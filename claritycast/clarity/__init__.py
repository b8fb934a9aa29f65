"""The clarity wing: everything that knows Clarity's Data Export API.

The HTTP client and its error map (`client`), parsing every spelling Clarity
answers in (`parse`), the local token check (`token`), and cutting a very
large answer down for reading (`big_answers`). It may import the package
root and `models`; nothing here knows Kafka, MongoDB or the other wings.
"""
