"""Web dashboard over the catalog and shards. Filled by issue 7."""
