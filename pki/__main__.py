"""`python -m pki` runs the pki command."""

from pki.cli import main

if __name__ == "__main__":
    main()
