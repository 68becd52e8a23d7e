"""``make setup``'s installers, kept out of the runtime package: the data sdists
(``setup_sdists``) and llama.cpp for the GGUF stage (``setup_llamacpp``, with the C shim it
compiles). Run from the repository root as ``python -m tools.<name>`` (see the Makefile)."""
