"""Claude through OpenAI-compatible relays from LangChain, with prompt caching planned for you."""
