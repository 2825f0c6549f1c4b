"""Published and measured results the engines are checked against (copied from their sources)."""
