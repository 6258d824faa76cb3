"""One module per stack, split by lifecycle: stateful storage apart from stateless compute."""
