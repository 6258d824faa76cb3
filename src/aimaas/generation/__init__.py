"""Text generation: the fixed chat templates and the ONNX Runtime GenAI runner."""
