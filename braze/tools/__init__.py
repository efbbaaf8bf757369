"""Command-line tools and what backs them."""
