"""Wire formats: the one place a ``ClaudeRequest`` and its plan are rendered for the network."""
