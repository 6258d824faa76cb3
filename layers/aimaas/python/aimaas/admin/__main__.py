"""``python -m aimaas.admin``."""

from aimaas.admin.cli import app

if __name__ == "__main__":
    app(prog_name="python -m aimaas.admin")
