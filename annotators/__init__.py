"""Task and subtask instruction proposers (VLM through vLLM, and rule-based). Filled by issue 4."""
