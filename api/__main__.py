"""`python -m tffexec` runs the command-line interface."""
from tffexec.cli.main import main

if __name__ == "__main__":
    main()
