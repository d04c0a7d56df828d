"""The arq worker process: parse -> chunk -> embed. It never imports `app`."""
