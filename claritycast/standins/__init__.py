"""The standins wing: everything that exists so claritycast can run against nothing outside.

The Clarity simulator (`clarity`, its answers in `clarity_answers` and its
numbers in `clarity_data`), a Slack Web API stand-in (`slack`), an SMTP
server (`smtp`), an OpenAI-compatible stand-in (`ai`), simulated history
(`history`) and the demo (`demo`). It may import anything; nothing imports
it but the `demo` and `simulate` commands, the benchmarks and the tests.
"""
