from mpigd.cli import console

console()
