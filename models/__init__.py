"""Message records (the public event contract), stored documents and, later, the metric catalogue."""
