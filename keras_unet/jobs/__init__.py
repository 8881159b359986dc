"""The jobs on files behind the command line: predict a folder, predict an
image larger than memory, evaluate a folder, and the demo."""
