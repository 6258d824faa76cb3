"""``python -m aimaas_admin``."""

from aimaas_admin.cli import app

if __name__ == "__main__":
    app(prog_name="python -m aimaas_admin")
