"""Task and subtask instruction proposers: a VLM over vLLM's OpenAI-compatible API (annotators.vlm), vLLM in Ray
workers through Ray Data LLM (annotators.inproc) and robot-signal rules (annotators.rules); prompts in prompts/."""
