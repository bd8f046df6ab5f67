"""The thin Typer layer: parse, call one library function, render."""
