"""Package data: the Llama 3 tokenizer file (see NOTICE)."""
