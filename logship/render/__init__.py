"""From a delivery's body to rendered lines: decoding into records, the sandboxed formats, their limits and filters."""
