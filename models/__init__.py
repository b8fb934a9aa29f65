"""Message records (the public event contract), stored documents, the metric catalogue."""
