"""The HTTP edge: Klein routes, problem documents, streaming."""
