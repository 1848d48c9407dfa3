"""The shared OpenAI-compatible backend that serves every local model and adapter."""
