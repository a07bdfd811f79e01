"""Bundled FSDP2 flow-matching VLA trainer over our LeRobot shards. Filled by issue 6."""
