"""One module per ``qkdnet`` sub-command; ``qkdnet.cli`` assembles them into one typer app."""
