"""The delivery wing: reports to Slack channels and inboxes, on schedules, once each.

Connections (`connections`), schedules (`schedule`), the delivery log's
rules, the render and send steps (`log`), the destinations (`destinations`)
with Slack (`slack`) and email (`email`, the message in `email_message`).
Library exceptions of slack-sdk and aiosmtplib are translated here. It may
import `reports`, `clarity`, the store, `topics`, the package root and `models`.
"""
